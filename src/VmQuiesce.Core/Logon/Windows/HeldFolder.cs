using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>
    /// The handle layer under a VM folder's check and grant on Windows (CreateFileW, GetFileInformationByHandleEx,
    /// GetSecurityInfo, SetSecurityInfo): a seam, so that what <see cref="HeldFolder"/> refuses, and which handle the DACL
    /// is read and written through, is proven on any OS.
    /// </summary>
    internal interface IFolderHandles
    {
        /// <summary>
        /// The entry at <paramref name="path"/>, opened with <paramref name="access"/> (<see cref="HeldFolder.HoldAccess"/>, with
        /// <see cref="HeldFolder.DaclAccess"/> to read and write its DACL) without following a reparse point there, and shared for
        /// reading and writing, not deleting, so that it cannot be renamed or deleted while open; null when nothing is there.
        /// Throws IOException when it cannot be opened.
        /// </summary>
        IFolderHandle? Open(string path, uint access);
    }

    /// <summary>One entry held open: what it is, as its handle says, and its DACL through that same handle.</summary>
    internal interface IFolderHandle : IDisposable
    {
        /// <summary>FILE_ATTRIBUTE_* (FILE_ATTRIBUTE_TAG_INFO.FileAttributes).</summary>
        uint Attributes { get; }

        /// <summary>The reparse tag, when <see cref="Attributes"/> holds FILE_ATTRIBUTE_REPARSE_POINT.</summary>
        uint ReparseTag { get; }

        /// <summary>Which folder this is, whatever its name: the volume's serial number and the file index. Throws IOException.</summary>
        string Id { get; }

        /// <summary>The DACL's bytes; throws IOException, also for a NULL DACL (which is never edited).</summary>
        byte[] ReadDacl();

        void WriteDacl(byte[] dacl);
    }

    /// <summary>
    /// A VM folder held open with every folder above it below the root, each opened without following a reparse point and
    /// checked on its own handle: a folder, and no junction, symbolic link, volume mount point or other name surrogate. Held,
    /// none can be renamed or deleted, so none can be swapped for a junction while the folder's DACL is read and written
    /// through <see cref="Folder"/>. A check of the path and a write by path would follow a junction planted in between,
    /// and the inheritable Modify entry would land, written as SYSTEM, on wherever it leads (C:\Windows, say).
    /// </summary>
    internal sealed class HeldFolder : IDisposable
    {
        /// <summary>
        /// FILE_LIST_DIRECTORY and FILE_READ_ATTRIBUTES (what FileAttributeTagInfo needs). A share mode binds others only
        /// through an open that reads, writes or deletes data (IoCheckShareAccess leaves attribute and security rights out):
        /// without FILE_LIST_DIRECTORY, the missing FILE_SHARE_DELETE would not keep anyone from renaming the folder.
        /// </summary>
        public const uint HoldAccess = 0x0001 | 0x0080;

        /// <summary>READ_CONTROL and WRITE_DAC: the DACL read and written through the handle.</summary>
        public const uint DaclAccess = 0x00020000 | 0x00040000;

        private const uint DirectoryAttribute = 0x10;
        private const uint ReparsePointAttribute = 0x400;

        /// <summary>The name surrogate bit of a reparse tag (IsReparseTagNameSurrogate).</summary>
        private const uint NameSurrogateBit = 0x20000000;

        private readonly List<IFolderHandle> _held;

        private HeldFolder(List<IFolderHandle> held) => _held = held;

        /// <summary>The VM folder's own handle.</summary>
        public IFolderHandle Folder => _held[_held.Count - 1];

        /// <summary>
        /// Opens and checks <paramref name="path"/> (a <see cref="VmFolders.FullPath"/>) and the folders above it, from the
        /// top down. Throws FolderNotFound or FolderIsLink (naming <paramref name="folder"/>, as given) before anything is read.
        /// </summary>
        public static HeldFolder Open(IFolderHandles handles, string path, string folder, bool forDacl)
        {
            var held = new List<IFolderHandle>();
            try
            {
                foreach (string part in VmFolders.LeadingParts(path))
                {
                    bool isTheFolder = part.Length == path.Length;
                    IFolderHandle opened = handles.Open(part, forDacl && isTheFolder ? HoldAccess | DaclAccess : HoldAccess) ?? throw VmFolders.NotFound(folder);
                    held.Add(opened);
                    if ((opened.Attributes & ReparsePointAttribute) != 0 && RedirectsName(opened.ReparseTag))
                    {
                        throw VmFolders.IsLink(folder, part, isTheFolder, $"a junction, symbolic link, volume mount point or other name surrogate (reparse tag 0x{opened.ReparseTag:X8})");
                    }

                    if ((opened.Attributes & DirectoryAttribute) == 0)
                    {
                        throw VmFolders.NotFound(folder);
                    }
                }

                return new HeldFolder(held);
            }
            catch
            {
                held.ForEach(handle => handle.Dispose());
                throw;
            }
        }

        /// <summary>
        /// Whether an entry with this reparse tag stands for another named entity, so that a path through it leads
        /// elsewhere: junctions and volume mount points (IO_REPARSE_TAG_MOUNT_POINT), symbolic links, WSL and container
        /// links. Other tags keep the folder where it is, its contents stored or fetched otherwise: OneDrive and other cloud
        /// placeholders (IO_REPARSE_TAG_CLOUD_*), deduplication, projected file systems. Those folders are granted as any other.
        /// </summary>
        private static bool RedirectsName(uint reparseTag) => (reparseTag & NameSurrogateBit) != 0;

        public void Dispose()
        {
            for (int i = _held.Count - 1; i >= 0; i--)
            {
                _held[i].Dispose();
            }
        }
    }
}
