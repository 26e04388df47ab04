using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>
    /// Where the test guest built by tests/guest/Build-TestGuest.ps1 lives, and why it is unavailable when
    /// it is. build.ps1 -Task Test builds it and points VMQUIESCE_TEST_GUEST at its folder.
    /// </summary>
    public static class TestGuestEnvironment
    {
        public const string VariableName = "VMQUIESCE_TEST_GUEST";
        public const string QemuExecutable = "qemu-system-x86_64";

        private static readonly Lazy<string?> s_unavailableReason = new(FindUnavailableReason);

        public static string GuestFolder =>
            Environment.GetEnvironmentVariable(VariableName) ?? throw new InvalidOperationException($"{VariableName} is not set.");

        public static string KernelPath => Path.Combine(GuestFolder, "vmlinuz");

        public static string InitramfsPath => Path.Combine(GuestFolder, "initramfs.cpio.gz");

        /// <summary>
        /// Set to 1 (CI does, in .ci/run) to make an unavailable guest fail the guest tests instead of skipping them;
        /// tests/guest/TestGuest.psm1 reads it too.
        /// </summary>
        public const string RequireVariableName = "VMQUIESCE_REQUIRE_GUEST";

        /// <summary>Null when guests can boot here; otherwise the reason.</summary>
        public static string? UnavailableReason => s_unavailableReason.Value;

        /// <summary>What guest tests skip with: the reason the guest is unavailable, unless the guest is required.</summary>
        public static string? SkipReason => IsRequired ? null : UnavailableReason;

        private static bool IsRequired => Environment.GetEnvironmentVariable(RequireVariableName) == "1";

        /// <summary>Called before a guest boots: where the guest is required and unavailable, the test fails with the reason.</summary>
        public static void ThrowIfUnavailable()
        {
            if (UnavailableReason is string reason)
            {
                throw new InvalidOperationException($"{RequireVariableName}=1 requires the real test guest, and it is unavailable: {reason}");
            }
        }

        private static string? FindUnavailableReason()
        {
            string? folder = Environment.GetEnvironmentVariable(VariableName);
            if (string.IsNullOrEmpty(folder))
            {
                return $"{VariableName} is not set: run through build.ps1 -Task Test";
            }
            if (!HostPlatform.IsLinux)
            {
                return "The test guest runs under QEMU on a Linux host only.";
            }
            string unavailable = Path.Combine(folder, "unavailable.txt");
            if (File.Exists(unavailable))
            {
                return File.ReadAllText(unavailable).Trim();
            }
            if (!File.Exists(Path.Combine(folder, "manifest.json")))
            {
                return $"No test guest was built in {folder} (no manifest.json): run through build.ps1 -Task Test";
            }
            if (!IsOnPath(QemuExecutable))
            {
                return $"{QemuExecutable} is not on PATH (Debian: apt-get install qemu-system-x86).";
            }
            return null;
        }

        private static bool IsOnPath(string executable) =>
            (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
                .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
                .Any(directory => File.Exists(Path.Combine(directory, executable)));
    }
}
