using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>Folders and files opened as Windows opens them, without following a reparse point.</summary>
    [SupportedOSPlatform("windows")]
    internal sealed class WindowsFolderHandles : IFolderHandles
    {
        /// <summary>
        /// The file <paramref name="held"/> holds (opened on a reparse point that keeps its name: a deduplicated file, a cloud
        /// placeholder, a WOF-compressed file), opened again by its <paramref name="path"/> as any program opens it, so that
        /// its data is read through the filter that keeps it, which the held handle bypasses; read only when that open reaches
        /// this same file (its file id). Shared with <paramref name="share"/>. Throws IOException (UnauthorizedAccessException
        /// when access is denied).
        /// </summary>
        public static FileStream OpenThroughFilter(SafeFileHandle held, string path, int share = Kernel32.FileShareRead) => OpenedFolder.OpenThroughFilter(held, path, share);

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

            public (ulong Volume, ulong IdHigh, ulong IdLow)? ReadFileId() => ReadFileId(_handle, _path);

            public (uint Volume, ulong Index) ReadFileIndex() => ReadFileIndex(_handle, _path);

            public FileStream OpenForReading()
            {
                // No reparse point: this very file, reopened through its handle. A reparse point that keeps its name: opened by
                // its path as any program opens it (a reopen through this handle might keep bypassing its filter), and read
                // only when that open reached this same file.
                return (Attributes & ReparsePoints.ReparsePointAttribute) == 0
                    ? ReadableIfSame(_handle, _path, Kernel32.ReOpenFile(_handle, Kernel32.GenericRead, Kernel32.FileShareRead, 0))
                    : OpenThroughFilter(_handle, _path);
            }

            /// <summary>See <see cref="WindowsFolderHandles.OpenThroughFilter"/>.</summary>
            internal static FileStream OpenThroughFilter(SafeFileHandle held, string path, int share = Kernel32.FileShareRead) =>
                ReadableIfSame(held, path, Kernel32.CreateFileW(path, Kernel32.GenericRead, share, IntPtr.Zero, Kernel32.OpenExisting, 0, IntPtr.Zero));

            /// <summary><paramref name="opened"/> as a stream, when it opened and is the file <paramref name="held"/> holds; else it is closed and an IOException thrown.</summary>
            private static FileStream ReadableIfSame(SafeFileHandle held, string path, SafeFileHandle opened)
            {
                if (opened.IsInvalid)
                {
                    int error = Marshal.GetLastWin32Error();
                    opened.Dispose();
                    string message = $"Could not open '{path}' for reading: {Win32Error.Describe(error)}";
                    throw error == Win32Error.AccessDenied ? new UnauthorizedAccessException(message) : new IOException(message, unchecked((int)0x80070000) | error);
                }

                try
                {
                    bool same = ReadFileId(opened, path) is { } id ? id == ReadFileId(held, path) : ReadFileIndex(opened, path) == ReadFileIndex(held, path);
                    if (!same)
                    {
                        throw new IOException($"'{path}' was replaced while it was opened for reading; it was not read.");
                    }

                    return new FileStream(opened, FileAccess.Read, bufferSize: 1);
                }
                catch
                {
                    opened.Dispose();
                    throw;
                }
            }

            /// <summary>The DACL through the handle (GetSecurityInfo). A NULL DACL, which lets everyone in, is an error: it is never edited.</summary>
            public byte[] ReadDacl()
            {
                uint status = Advapi32.GetSecurityInfo(_handle, Advapi32.SeFileObject, Advapi32.DaclSecurityInformation,
                    out _, out _, out IntPtr dacl, out _, out IntPtr descriptor);
                if (status != 0)
                {
                    throw new IOException($"Cannot read the permissions of '{_path}': {Win32Error.Describe((int)status)}");
                }

                try
                {
                    if (dacl == IntPtr.Zero)
                    {
                        throw new IOException($"'{_path}' has no permission list (a NULL DACL lets everyone in); no entry is added to it.");
                    }

                    byte[] bytes = new byte[(ushort)Marshal.ReadInt16(dacl, 2)]; // ACL.AclSize
                    Marshal.Copy(dacl, bytes, 0, bytes.Length);
                    return bytes;
                }
                finally
                {
                    Kernel32.LocalFree(descriptor);
                }
            }

            /// <summary>Writes the DACL through the handle (SetSecurityInfo), which also carries its inheritable entries to the files and folders inside.</summary>
            public void WriteDacl(byte[] dacl) => WriteSecurity(Advapi32.DaclSecurityInformation, null, dacl);

            public void WriteOwnerAndProtectedDacl(byte[] owner, byte[] dacl) =>
                WriteSecurity(Advapi32.OwnerSecurityInformation | Advapi32.DaclSecurityInformation | Advapi32.ProtectedDaclSecurityInformation, owner, dacl);

            public void Dispose() => _handle.Dispose();

            /// <summary>FILE_ID_INFO of <paramref name="handle"/>; null when the file system does not answer it.</summary>
            private static (ulong Volume, ulong IdHigh, ulong IdLow)? ReadFileId(SafeFileHandle handle, string path)
            {
                if (Kernel32.GetFileInformationByHandleEx(handle, Kernel32.FileIdInfo, out Kernel32.FileIdInformation information, Marshal.SizeOf<Kernel32.FileIdInformation>()))
                {
                    return (information.VolumeSerialNumber, information.FileIdHigh, information.FileIdLow);
                }

                int error = Marshal.GetLastWin32Error();
                return error == Win32Error.InvalidParameter || error == Win32Error.NotSupported || error == Win32Error.InvalidFunction
                    ? null
                    : throw new IOException($"Cannot read which file '{path}' is: {Win32Error.Describe(error)}");
            }

            private static (uint Volume, ulong Index) ReadFileIndex(SafeFileHandle handle, string path)
            {
                if (!Kernel32.GetFileInformationByHandle(handle, out Kernel32.ByHandleFileInformation information))
                {
                    throw new IOException($"Cannot read which file '{path}' is: {Win32Error.Describe(Marshal.GetLastWin32Error())}");
                }

                return (information.VolumeSerialNumber, ((ulong)information.FileIndexHigh << 32) | information.FileIndexLow);
            }

            /// <summary>SetSecurityInfo through the handle: <paramref name="parts"/> (SECURITY_INFORMATION) of the owner, when not null, and DACL.</summary>
            private unsafe void WriteSecurity(uint parts, byte[]? owner, byte[] dacl)
            {
                fixed (byte* ownerSid = owner)
                fixed (byte* acl = dacl)
                {
                    uint status = Advapi32.SetSecurityInfo(_handle, Advapi32.SeFileObject, parts, (IntPtr)ownerSid, IntPtr.Zero, (IntPtr)acl, IntPtr.Zero);
                    if (status != 0)
                    {
                        throw new IOException($"Cannot write the {(owner == null ? "permissions" : "owner and permissions")} of '{_path}': {Win32Error.Describe((int)status)}");
                    }
                }
            }
        }
    }
}
