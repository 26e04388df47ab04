using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Native
{
    /// <summary>netapi32.dll: local group membership.</summary>
    [SupportedOSPlatform("windows")]
    internal static class Netapi32
    {
        private const string Library = "netapi32.dll";

        public const int LgIncludeIndirect = 1;
        public const int NerrUserNotFound = 2221;

        [DllImport(Library, CharSet = CharSet.Unicode)]
        public static extern int NetUserGetLocalGroups(string? serverName, string userName, int level, int flags,
            out IntPtr buffer, int preferredMaximumLength, out int entriesRead, out int totalEntries);

        [DllImport(Library)]
        public static extern int NetApiBufferFree(IntPtr buffer);
    }
}
