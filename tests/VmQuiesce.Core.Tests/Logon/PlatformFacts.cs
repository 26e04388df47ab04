using System;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>A fact that runs on Windows only and is reported as skipped, with the reason, elsewhere.</summary>
    public sealed class WindowsFactAttribute : FactAttribute
    {
        public WindowsFactAttribute()
        {
            if (!OperatingSystem.IsWindows())
            {
                Skip = "needs Windows (Service Control Manager, LSA, Authz)";
            }
        }
    }

    /// <summary>A fact that runs on Linux only and is reported as skipped, with the reason, elsewhere.</summary>
    public sealed class LinuxFactAttribute : FactAttribute
    {
        public LinuxFactAttribute()
        {
            if (!OperatingSystem.IsLinux())
            {
                Skip = "needs Linux (POSIX ACLs in extended attributes, libc account database)";
            }
        }
    }
}
