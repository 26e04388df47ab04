using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    /// <summary>A fact that runs only on Windows and is reported as skipped, with the reason, elsewhere.</summary>
    public sealed class WindowsFactAttribute : FactAttribute
    {
        public WindowsFactAttribute()
        {
            if (!HostPlatform.IsWindows)
            {
                Skip = $"Windows only (this is {HostPlatform.Name}).";
            }
        }
    }

    /// <summary>A fact about Unix behaviour (file modes, signals), reported as skipped on Windows.</summary>
    public sealed class UnixFactAttribute : FactAttribute
    {
        public UnixFactAttribute()
        {
            if (HostPlatform.IsWindows)
            {
                Skip = "Linux and macOS only (this is Windows).";
            }
        }
    }

    /// <summary>A fact about Linux only (POSIX ACL extended attributes, the libc account database).</summary>
    public sealed class LinuxFactAttribute : FactAttribute
    {
        public LinuxFactAttribute()
        {
            if (!HostPlatform.IsLinux)
            {
                Skip = $"Linux only (this is {HostPlatform.Name}).";
            }
        }
    }

    /// <summary>A theory about Linux only (O_DIRECT), reported as skipped elsewhere.</summary>
    public sealed class LinuxTheoryAttribute : TheoryAttribute
    {
        public LinuxTheoryAttribute()
        {
            if (!HostPlatform.IsLinux)
            {
                Skip = $"Linux only (this is {HostPlatform.Name}).";
            }
        }
    }

    /// <summary>
    /// A fact that needs Linux and root: it mounts small file systems (tmpfs), or makes throwaway users and files
    /// they own. Reported as skipped, with the reason, elsewhere.
    /// </summary>
    public sealed class LinuxRootFactAttribute : FactAttribute
    {
        public LinuxRootFactAttribute() => Skip = SkipReason;

        /// <summary>Why a test that needs Linux and root cannot run here; null when it can.</summary>
        internal static string? SkipReason =>
            !HostPlatform.IsLinux ? $"Linux only (this is {HostPlatform.Name})."
            : Libc.geteuid() != 0 ? "Needs root: it mounts (a small tmpfs, a file over another) or makes throwaway users (run the tests as root)."
            : null;
    }

    /// <summary>A theory that needs Linux and root, as <see cref="LinuxRootFactAttribute"/> says; reported as skipped, with the reason, elsewhere.</summary>
    public sealed class LinuxRootTheoryAttribute : TheoryAttribute
    {
        public LinuxRootTheoryAttribute() => Skip = LinuxRootFactAttribute.SkipReason;
    }
}
