using System;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Opens files for reading by path, including Windows device paths such as a shadow copy's
    /// (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN\...): .NET Framework's FileStream path checks
    /// (Windows PowerShell 5.1) reject those, so they are opened with CreateFileW and a SafeFileHandle.
    /// </summary>
    public static class DevicePathFile
    {
        /// <summary>
        /// A read-only, sequential stream over <paramref name="path"/>, which other processes may go on writing. On Linux
        /// only a regular file (links followed): whoever can write a VM's folder could put a FIFO in an image's place
        /// after it was looked at, and opening that would wait for a writer for good.
        /// </summary>
        public static Stream OpenRead(string path)
        {
            if (HostPlatform.IsWindows && path.StartsWith(@"\\?\", StringComparison.Ordinal))
            {
                return OpenDevicePath(path);
            }

            if (!HostPlatform.IsLinux)
            {
                return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, FileOptions.SequentialScan);
            }

            FileStream stream = RegularFile.OpenReadFollowingLinks(path, long.MaxValue);
            // What FileOptions.SequentialScan asks for: a larger read-ahead.
            _ = Libc.posix_fadvise((int)stream.SafeFileHandle.DangerousGetHandle(), 0, 0, Libc.FadviseSequential);
            return stream;
        }

        [SupportedOSPlatform("windows")]
        private static Stream OpenDevicePath(string path)
        {
            // Backup semantics let a holder of SeBackupPrivilege read files whose ACL would refuse it, as a backup should.
            SafeFileHandle handle = Kernel32.CreateFileW(path, Kernel32.GenericRead, Kernel32.FileShareAll, IntPtr.Zero, Kernel32.OpenExisting,
                Kernel32.FileFlagSequentialScan | Kernel32.FileFlagBackupSemantics, IntPtr.Zero);
            if (handle.IsInvalid)
            {
                int error = Marshal.GetLastWin32Error();
                handle.Dispose();
                throw new VmQuiesceException("ShadowCopyReadFailed", FailureKind.ReadError,
                    $"Could not open '{path}' in the shadow copy: Windows error {error} ({new Win32Exception(error).Message}).", path);
            }

            return new FileStream(handle, FileAccess.Read, 1 << 20);
        }
    }
}
