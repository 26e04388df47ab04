using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>What a host tool printed and returned.</summary>
    public sealed record HostCommandResult(int ExitCode, string StandardOutput, string StandardError);

    /// <summary>Runs the host tools the test guest needs (qemu-img, mkfs.ext4, debugfs, ...).</summary>
    public static class HostCommand
    {
        public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(120);

        /// <summary>Runs a tool and returns its result whatever the exit code; throws only on a timeout.</summary>
        public static HostCommandResult Run(string fileName, IEnumerable<string> arguments, TimeSpan? timeout = null)
        {
            var startInfo = new ProcessStartInfo(fileName)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            foreach (string argument in arguments)
            {
                startInfo.ArgumentList.Add(argument);
            }
            using Process process = Process.Start(startInfo) ?? throw new InvalidOperationException($"Could not start '{fileName}'.");
            process.StandardInput.Close();
            Task<string> output = process.StandardOutput.ReadToEndAsync();
            Task<string> error = process.StandardError.ReadToEndAsync();
            TimeSpan limit = timeout ?? DefaultTimeout;
            if (!process.WaitForExit(limit))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"'{Describe(fileName, startInfo.ArgumentList)}' did not finish within {limit.TotalSeconds:0} s.");
            }
            process.WaitForExit();
            return new HostCommandResult(process.ExitCode, output.Result, error.Result);
        }

        /// <summary>Runs a tool that must succeed; a non-zero exit throws with what it printed.</summary>
        public static HostCommandResult RunChecked(string fileName, IEnumerable<string> arguments, TimeSpan? timeout = null)
        {
            var argumentList = new List<string>(arguments);
            HostCommandResult result = Run(fileName, argumentList, timeout);
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException(
                    $"'{Describe(fileName, argumentList)}' failed with exit code {result.ExitCode}: {result.StandardError.Trim()} {result.StandardOutput.Trim()}");
            }
            return result;
        }

        private static string Describe(string fileName, IEnumerable<string> arguments) => fileName + " " + string.Join(" ", arguments);
    }
}
