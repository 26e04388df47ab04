using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Threading;

namespace VmQuiesce.Core.Platform
{
    /// <summary>What an external tool printed and how it ended.</summary>
    public sealed class ToolResult
    {
        public ToolResult(string commandLine, int exitCode, string standardOutput, string standardError)
        {
            CommandLine = commandLine;
            ExitCode = exitCode;
            StandardOutput = standardOutput;
            StandardError = standardError;
        }

        public string CommandLine { get; }

        public int ExitCode { get; }

        public string StandardOutput { get; }

        public string StandardError { get; }

        /// <summary>Standard error, or standard output when the tool wrote nothing there: the text an error message quotes.</summary>
        public string Message => (StandardError.Trim().Length > 0 ? StandardError : StandardOutput).Trim();
    }

    /// <summary>
    /// Runs a host tool (qemu-img, e2fsck) without a shell: the arguments are quoted the way the runtime
    /// splits them again, so paths with spaces or quotes arrive whole. Never pass secrets: command lines are visible.
    /// </summary>
    internal static class ExternalTool
    {
        public static ToolResult Run(string fileName, IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancel)
        {
            string argumentText = string.Join(" ", arguments.Select(Quote));
            string commandLine = fileName + " " + argumentText;
            var start = new ProcessStartInfo(fileName, argumentText)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                CreateNoWindow = true,
                StandardOutputEncoding = Encoding.UTF8,
                StandardErrorEncoding = Encoding.UTF8,
            };
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new Win32Exception($"{fileName} did not start");
            }
            catch (Win32Exception e)
            {
                throw new VmQuiesceException("ToolNotFound", FailureKind.ResourceUnavailable, $"The tool '{fileName}' cannot be started: {e.Message}.", fileName, e)
                {
                    Remedy = fileName.StartsWith("qemu", StringComparison.Ordinal)
                        ? "Install QEMU's tools (Debian: apt-get install qemu-utils) and make sure they are on PATH."
                        : $"Install {fileName} and make sure it is on PATH.",
                };
            }

            using (process)
            {
                var output = process.StandardOutput.ReadToEndAsync();
                var error = process.StandardError.ReadToEndAsync();
                var deadline = DateTime.UtcNow + timeout;
                while (!process.WaitForExit(100))
                {
                    if (cancel.IsCancellationRequested || DateTime.UtcNow > deadline)
                    {
                        try
                        {
                            process.Kill();
                        }
                        catch (InvalidOperationException)
                        {
                            // It exited meanwhile.
                        }

                        process.WaitForExit();
                        cancel.ThrowIfCancellationRequested();
                        throw new VmQuiesceException("ToolTimedOut", FailureKind.OperationTimeout, $"'{commandLine}' did not finish within {timeout.TotalSeconds:0} s and was stopped.", fileName);
                    }
                }

                process.WaitForExit();
                return new ToolResult(commandLine, process.ExitCode, output.Result, error.Result);
            }
        }

        /// <summary>Quotes one argument for the runtime's command-line splitting (MSVC rules, also used on Unix).</summary>
        internal static string Quote(string argument)
        {
            if (argument.Length > 0 && argument.IndexOfAny(new[] { ' ', '\t', '\n', '"', '\\' }) < 0)
            {
                return argument;
            }

            var text = new StringBuilder("\"");
            int backslashes = 0;
            foreach (char c in argument)
            {
                if (c == '\\')
                {
                    backslashes++;
                    continue;
                }

                text.Append('\\', c == '"' ? (backslashes * 2) + 1 : backslashes);
                backslashes = 0;
                text.Append(c);
            }

            text.Append('\\', backslashes * 2);
            return text.Append('"').ToString();
        }
    }
}
