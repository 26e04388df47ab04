using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>
    /// The real NBD peers the tests run against, from Debian: qemu-utils (qemu-img, qemu-io, qemu-nbd),
    /// qemu-system-common (qemu-storage-daemon), libnbd-bin (nbdinfo, nbdcopy). build.ps1 -Task Test
    /// installs them as root on Debian; elsewhere the tests that need them say which is missing.
    /// </summary>
    public static class NbdTools
    {
        private static readonly Dictionary<string, string> s_packages = new()
        {
            ["qemu-img"] = "qemu-utils",
            ["qemu-io"] = "qemu-utils",
            ["qemu-nbd"] = "qemu-utils",
            ["qemu-storage-daemon"] = "qemu-system-common",
            ["nbdinfo"] = "libnbd-bin",
            ["nbdcopy"] = "libnbd-bin",
        };

        /// <summary>Null when every tool is here; otherwise why the test cannot run.</summary>
        public static string? MissingReason(IEnumerable<string> tools)
        {
            if (!HostPlatform.IsLinux)
            {
                return $"The NBD interoperability tests run QEMU's and libnbd's tools on Linux (this is {HostPlatform.Name}).";
            }

            string[] missing = tools.Where(tool => Find(tool) == null).ToArray();
            if (missing.Length == 0)
            {
                return null;
            }

            string packages = string.Join(" ", missing.Select(tool => s_packages[tool]).Distinct());
            return $"{string.Join(", ", missing)} not on PATH (Debian: apt-get install {packages}; build.ps1 -Task Test installs them when run as root).";
        }

        public static string? Find(string tool) =>
            (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
                .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
                .Select(directory => Path.Combine(directory, tool))
                .FirstOrDefault(File.Exists);

        public static string Require(string tool) => Find(tool) ?? throw new InvalidOperationException($"{tool} is not on PATH.");

        /// <summary>Runs a tool that must succeed; returns its standard output.</summary>
        public static string Run(string tool, params string[] arguments) => HostCommand.RunChecked(Require(tool), arguments).StandardOutput;

        public static HostCommandResult TryRun(string tool, params string[] arguments) => HostCommand.Run(Require(tool), arguments);
    }

    /// <summary>Compares bytes fast (xunit's sequence comparison takes seconds on megabytes) and names the first difference.</summary>
    public static class AssertBytes
    {
        public static void Equal(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
        {
            if (expected.SequenceEqual(actual))
            {
                return;
            }

            int common = Math.Min(expected.Length, actual.Length);
            int first = 0;
            while (first < common && expected[first] == actual[first])
            {
                first++;
            }

            Assert.Fail(first < common
                ? $"The bytes differ first at index {first}: expected 0x{expected[first]:x2}, got 0x{actual[first]:x2}."
                : $"Expected {expected.Length} bytes, got {actual.Length}; the first {common} are equal.");
        }
    }

    /// <summary>A fact that needs some of the NBD tools; skipped, naming what is missing, where they are not.</summary>
    public sealed class NbdToolFactAttribute : FactAttribute
    {
        public NbdToolFactAttribute(params string[] tools)
        {
            if (NbdTools.MissingReason(tools) is string reason)
            {
                Skip = reason;
            }
        }
    }

    /// <summary>
    /// A daemon started with its own "fork once ready" option (qemu-nbd --fork, qemu-storage-daemon
    /// --daemonize), so the test continues exactly when its sockets exist; killed by the pid it wrote.
    /// </summary>
    public sealed class NbdDaemon : IDisposable
    {
        private readonly string _pidFile;

        private NbdDaemon(string pidFile)
        {
            _pidFile = pidFile;
        }

        public static NbdDaemon Start(string tool, string pidFile, params string[] arguments)
        {
            NbdTools.Run(tool, arguments);
            return new NbdDaemon(pidFile);
        }

        public void Dispose()
        {
            string text;
            try
            {
                text = File.ReadAllText(_pidFile);
            }
            catch (FileNotFoundException)
            {
                // Never written, or removed by the daemon as it exited (a test that ends it with QMP 'quit').
                return;
            }

            if (!int.TryParse(text.Trim(), out int pid))
            {
                return;
            }

            try
            {
                using Process process = Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(10_000);
            }
            catch (ArgumentException)
            {
                // Already gone.
            }
        }
    }
}
