using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Opens files for reading by path, including Windows device paths such as a shadow copy's
    /// (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN\...): .NET Framework's FileStream path checks
    /// (Windows PowerShell 5.1) reject those, so they are opened with CreateFileW and a SafeFileHandle.
    /// </summary>
    public static class DevicePathFile
    {
        /// <summary>A read-only, sequential stream over <paramref name="path"/>, which other processes may go on writing.</summary>
        public static Stream OpenRead(string path) =>
            HostPlatform.IsWindows && path.StartsWith(@"\\?\", StringComparison.Ordinal)
                ? OpenDevicePath(path)
                : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, FileOptions.SequentialScan);

        private const uint GenericRead = 0x80000000;
        private const int FileShareAll = 0x1 | 0x2 | 0x4;
        private const int OpenExisting = 3;
        private const int FileFlagSequentialScan = 0x08000000;

        // Lets a holder of SeBackupPrivilege read files whose ACL would refuse it, as a backup should.
        private const int FileFlagBackupSemantics = 0x02000000;

        [SupportedOSPlatform("windows")]
        private static Stream OpenDevicePath(string path)
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
