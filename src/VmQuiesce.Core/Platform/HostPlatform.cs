using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Platform
{
    /// <summary>The one place that answers "which OS is this"; the analyzer trusts these guards.</summary>
    public static class HostPlatform
    {
        [SupportedOSPlatformGuard("windows")]
        public static bool IsWindows => RuntimeInformation.IsOSPlatform(OSPlatform.Windows);

        [SupportedOSPlatformGuard("linux")]
        public static bool IsLinux => RuntimeInformation.IsOSPlatform(OSPlatform.Linux);

        [SupportedOSPlatformGuard("macos")]
        public static bool IsMacOS => RuntimeInformation.IsOSPlatform(OSPlatform.OSX);

        /// <summary>This process's id (Environment.ProcessId is .NET 5+; the Process object is read once and let go).</summary>
        public static int ProcessId { get; } = CurrentProcessId();

        public static string Name => IsWindows ? "Windows" : IsLinux ? "Linux" : IsMacOS ? "macOS" : RuntimeInformation.OSDescription;

        private static int CurrentProcessId()
        {
            using var current = System.Diagnostics.Process.GetCurrentProcess();
            return current.Id;
        }
    }
}
