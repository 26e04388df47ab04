using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// Opens a file inside a shadow copy (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN\...) with CreateFileW:
    /// .NET Framework's FileStream path checks reject such device paths, a SafeFileHandle does not.
    /// </summary>
    [SupportedOSPlatform("windows")]
    public static class ShadowCopyFile
    {
        private const uint GenericRead = 0x80000000;
        private const int FileShareAll = 0x1 | 0x2 | 0x4;
        private const int OpenExisting = 3;
        private const int FileFlagSequentialScan = 0x08000000;

        // Lets a holder of SeBackupPrivilege read files whose ACL would refuse it, as a backup should.
        private const int FileFlagBackupSemantics = 0x02000000;

        public static Stream OpenRead(string path)
        {
            SafeFileHandle handle = CreateFileW(path, GenericRead, FileShareAll, IntPtr.Zero, OpenExisting, FileFlagSequentialScan | FileFlagBackupSemantics, IntPtr.Zero);
            if (handle.IsInvalid)
            {
                int error = Marshal.GetLastWin32Error();
                handle.Dispose();
                throw new VmQuiesceException("ShadowCopyReadFailed", FailureKind.ReadError,
                    $"Could not open '{path}' in the shadow copy: Windows error {error} ({new Win32Exception(error).Message}).", path);
            }

            return new FileStream(handle, FileAccess.Read, 1 << 20);
        }

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        private static extern SafeFileHandle CreateFileW(string fileName, uint desiredAccess, int shareMode, IntPtr securityAttributes,
            int creationDisposition, int flagsAndAttributes, IntPtr templateFile);
    }
}
