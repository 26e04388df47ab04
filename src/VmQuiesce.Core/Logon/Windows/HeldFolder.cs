using System;
using System.Collections.Generic;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>
    /// A folder (a VM folder, a state folder, a repository) held open with every folder above it below the root, each opened
    /// without following a reparse point and checked on its own handle: a folder, and no junction, symbolic link, volume mount
    /// point or other name surrogate. Held, none can be renamed or deleted, so none can be swapped for a junction while the
    /// folder's owner and DACL are read and written through <see cref="Folder"/>. A check of the path and a write by path
    /// would follow a junction planted in between, and an inheritable entry would land, written as SYSTEM, on wherever it
    /// leads (C:\Windows, say).
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

        /// <summary>WRITE_OWNER: the owner written through the handle.</summary>
        public const uint OwnerAccess = 0x00080000;

        private readonly List<IFolderHandle> _held;

        private HeldFolder(List<IFolderHandle> held) => _held = held;

        /// <summary>The folder's own handle.</summary>
        public IFolderHandle Folder => _held[_held.Count - 1];

        /// <summary>
        /// Which folder <see cref="Folder"/> is, whatever its name: the volume's serial number and the 128-bit file id, or, where
        /// the file system does not answer that, the 64-bit file index. ReFS does not keep the 64-bit index unique: two of its
        /// folders can share one, which only the 128-bit id tells apart. Throws IOException.
        /// </summary>
        public string FolderId
        {
            get
            {
                if (Folder.ReadFileId() is (ulong volume, ulong high, ulong low))
                {
                    return $"{volume:X16}:{high:X16}{low:X16}";
                }

                (uint indexVolume, ulong index) = Folder.ReadFileIndex();
                return $"{indexVolume:X8}:{index:X16}";
            }
        }

        /// <summary>
        /// Opens and checks <paramref name="path"/> (a <see cref="VmFolders.FullPath"/>) and the folders above it, from the
        /// top down, the folder itself with <paramref name="folderAccess"/> too (<see cref="DaclAccess"/>, <see cref="OwnerAccess"/>).
        /// Throws <see cref="FolderTrustException"/> (missing, not a folder, or a name surrogate, with its tag) before anything is read.
        /// </summary>
        public static HeldFolder Open(IFolderHandles handles, string path, uint folderAccess)
        {
            var held = new List<IFolderHandle>();
            try
            {
                foreach (string part in VmFolders.LeadingParts(path))
                {
                    IFolderHandle opened = handles.Open(part, part.Length == path.Length ? HoldAccess | folderAccess : HoldAccess)
                        ?? throw new FolderTrustException(FolderProblem.Missing, part, $"The folder '{part}' does not exist.");
                    held.Add(opened);
                    if (ReparsePoints.RedirectsName(opened.Attributes, opened.ReparseTag))
                    {
                        throw new FolderTrustException(FolderProblem.Link, part, $"'{part}' is {ReparsePoints.Describe(opened.ReparseTag)}; nothing is changed through it.")
                        {
                            ReparseTag = opened.ReparseTag,
                        };
                    }

                    if ((opened.Attributes & ReparsePoints.DirectoryAttribute) == 0)
                    {
                        throw new FolderTrustException(FolderProblem.NotAFolder, part, $"'{part}' is a file, not a folder.");
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

        public void Dispose()
        {
            for (int i = _held.Count - 1; i >= 0; i--)
            {
                _held[i].Dispose();
            }
        }
    }
}
