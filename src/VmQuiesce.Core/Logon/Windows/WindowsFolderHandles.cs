using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>Folders opened as Windows opens them, for <see cref="HeldFolder"/>.</summary>
    [SupportedOSPlatform("windows")]
    internal sealed class WindowsFolderHandles : IFolderHandles
    {
        public IFolderHandle? Open(string path, uint access)
        {
            // Backup semantics open a folder. Shared for reading and writing, not for deleting: while held, the folder cannot be
            // renamed or deleted, nor so replaced by a junction.
            SafeFileHandle handle = Kernel32.CreateFileW(path, access, Kernel32.FileShareReadWrite, IntPtr.Zero, Kernel32.OpenExisting,
                Kernel32.FileFlagBackupSemantics | Kernel32.FileFlagOpenReparsePoint, IntPtr.Zero);
            if (handle.IsInvalid)
            {
                int error = Marshal.GetLastWin32Error();
                handle.Dispose();
                if (error == Win32Error.FileNotFound || error == Win32Error.PathNotFound)
                {
                    return null;
                }

                throw new IOException(error == Win32Error.SharingViolation
                    ? $"'{path}' is held open by another program with the right to rename or delete it, so it cannot be held in place; try again when that program is done with it."
                    : $"Cannot open '{path}': {Win32Error.Describe(error)}");
            }

            if (!Kernel32.GetFileInformationByHandleEx(handle, Kernel32.FileAttributeTagInfo, out Kernel32.FileAttributeTagInformation information,
                Marshal.SizeOf<Kernel32.FileAttributeTagInformation>()))
            {
                int error = Marshal.GetLastWin32Error();
                handle.Dispose();
                throw new IOException($"Cannot read the attributes of '{path}': {Win32Error.Describe(error)}");
            }

            return new OpenedFolder(handle, path, information);
        }

        private sealed class OpenedFolder : IFolderHandle
        {
            private readonly SafeFileHandle _handle;
            private readonly string _path;

            public OpenedFolder(SafeFileHandle handle, string path, Kernel32.FileAttributeTagInformation information)
            {
                _handle = handle;
                _path = path;
                Attributes = information.FileAttributes;
                ReparseTag = information.ReparseTag;
            }

            public uint Attributes { get; }

            public uint ReparseTag { get; }

            public string Id
            {
                get
                {
                    if (!Kernel32.GetFileInformationByHandle(_handle, out Kernel32.ByHandleFileInformation information))
                    {
                        throw new IOException($"Cannot read which folder '{_path}' is: {Win32Error.Describe(Marshal.GetLastWin32Error())}");
                    }

                    return $"{information.VolumeSerialNumber:X8}:{information.FileIndexHigh:X8}{information.FileIndexLow:X8}";
                }
            }

            public byte[] ReadDacl() => WindowsSecurity.ReadDacl(_handle, _path);

            public void WriteDacl(byte[] dacl) => WindowsSecurity.WriteDacl(_handle, _path, dacl);

            public void Dispose() => _handle.Dispose();
        }
    }
}
