using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>
    /// The Windows handle layer in memory: a path where a real file is on disk is a plain file, every other path a plain folder,
    /// unless told otherwise; a file's data is read from the real file. Keeps which entries were
    /// opened, which were held (could not be renamed) when a DACL was written, and whether each was let go; a folder with no
    /// DACL listed cannot be read, as GetSecurityInfo failing. As Windows: a handle reads and writes the DACL only with
    /// READ_CONTROL and WRITE_DAC, the owner only with WRITE_OWNER, and its share mode (never FILE_SHARE_DELETE) keeps the entry from being renamed only when
    /// it was opened with a right IoCheckShareAccess counts (data or delete), not with attribute or security rights alone.
    /// Each entry has a 64-bit file index and a 128-bit file id of its own, on one volume. A file is read again only through a
    /// handle still open.
    /// </summary>
    internal sealed class FolderHandlesInMemory : IFolderHandles
    {
        public const uint DirectoryAttribute = 0x10;
        public const uint ReparsePointAttribute = 0x400;
        private const uint ArchiveAttribute = 0x20;
        private const uint ReadControl = 0x00020000;
        private const uint WriteDac = 0x00040000;
        private const uint WriteOwner = 0x00080000;

        /// <summary>FILE_READ_DATA, FILE_WRITE_DATA, FILE_APPEND_DATA, FILE_EXECUTE, DELETE: the rights share modes are checked against.</summary>
        private const uint ShareCheckedRights = 0x1 | 0x2 | 0x4 | 0x20 | 0x00010000;

        private const ulong Volume = 0x00000000C0FFEE42;

        private readonly Dictionary<string, (uint Attributes, uint ReparseTag)?> _entries = new Dictionary<string, (uint, uint)?>();
        private readonly Dictionary<string, (ulong Index, ulong IdHigh, ulong IdLow)> _ids = new Dictionary<string, (ulong, ulong, ulong)>();
        private readonly List<Handle> _open = new List<Handle>();
        private ulong _lastId;

        public Dictionary<string, byte[]> Dacls { get; } = new Dictionary<string, byte[]>();

        /// <summary>The owners written, as binary SIDs.</summary>
        public Dictionary<string, byte[]> Owners { get; } = new Dictionary<string, byte[]>();

        /// <summary>The paths whose DACL was written protected, inheriting nothing from the folder above.</summary>
        public HashSet<string> Protected { get; } = new HashSet<string>();

        /// <summary>Each open as "path" or "path (DACL)", in order.</summary>
        public List<string> Opened { get; } = new List<string>();

        /// <summary>The paths that could not be renamed when the last DACL was written, in the order they were opened.</summary>
        public List<string> HeldWhenWritten { get; } = new List<string>();

        public List<string> OpenNow => _open.Select(handle => handle.Path).ToList();

        private List<string> HeldNow => _open.Where(handle => (handle.Access & ShareCheckedRights) != 0).Select(handle => handle.Path).ToList();

        public int Writes { get; private set; }

        /// <summary>The files whose data was read, in order.</summary>
        public List<string> Read { get; } = new List<string>();

        /// <summary>Whether the file system answers FileIdInfo (NTFS, ReFS); FAT and some network shares give the 64-bit file index only.</summary>
        public bool AnswersFileId { get; set; } = true;

        /// <summary>Paths whose open fails, as when another program holds them with the right to delete.</summary>
        public HashSet<string> Unopenable { get; } = new HashSet<string>();

        /// <summary>A reparse point with <paramref name="tag"/> at <paramref name="path"/>: a file where a real file is when it is opened, else a folder.</summary>
        public void ReparsePoint(string path, uint tag) => _entries[path] = (ReparsePointAttribute, tag);

        public void File(string path) => _entries[path] = (ArchiveAttribute, 0);

        public void Missing(string path) => _entries[path] = null;

        /// <summary>
        /// Another folder at <paramref name="path"/> from now on, its DACL <paramref name="dacl"/>: the one there was moved away.
        /// With <paramref name="sameIndex"/> it has the moved one's 64-bit file index, as two folders on ReFS can, and another
        /// 128-bit file id.
        /// </summary>
        public void Replace(string path, byte[] dacl, bool sameIndex = false)
        {
            (ulong Index, ulong IdHigh, ulong IdLow) moved = IdOf(path);
            (ulong Index, ulong IdHigh, ulong IdLow) other = NewId();
            _ids[path] = sameIndex ? (moved.Index, other.IdHigh, other.IdLow) : other;
            Dacls[path] = dacl;
        }

        public IFolderHandle? Open(string path, uint access)
        {
            if (Unopenable.Contains(path))
            {
                throw new IOException($"'{path}' is held open by another program with the right to rename or delete it.");
            }

            (uint Attributes, uint ReparseTag)? entry = _entries.TryGetValue(path, out (uint, uint)? listed) ? listed : (0, 0);
            if (entry == null)
            {
                return null;
            }

            uint attributes = entry.Value.Attributes;
            if ((attributes & (DirectoryAttribute | ArchiveAttribute)) == 0)
            {
                attributes |= System.IO.File.Exists(path) ? ArchiveAttribute : DirectoryAttribute;
            }

            Opened.Add((access & WriteDac) != 0 ? path + " (DACL)" : path);
            var handle = new Handle(this, path, access, attributes, entry.Value.ReparseTag, IdOf(path));
            _open.Add(handle);
            return handle;
        }

        private (ulong Index, ulong IdHigh, ulong IdLow) IdOf(string path)
        {
            if (!_ids.TryGetValue(path, out (ulong, ulong, ulong) id))
            {
                _ids[path] = id = NewId();
            }

            return id;
        }

        private (ulong Index, ulong IdHigh, ulong IdLow) NewId()
        {
            ulong next = ++_lastId;
            return (next, 0x0000000100000000 + next, next);
        }

        private sealed class Handle : IFolderHandle
        {
            private readonly FolderHandlesInMemory _layer;
            private readonly (ulong Index, ulong IdHigh, ulong IdLow) _id;

            public Handle(FolderHandlesInMemory layer, string path, uint access, uint attributes, uint reparseTag, (ulong Index, ulong IdHigh, ulong IdLow) id)
            {
                _id = id;
                _layer = layer;
                Path = path;
                Access = access;
                Attributes = attributes;
                ReparseTag = reparseTag;
            }

            public string Path { get; }

            public uint Access { get; }

            public uint Attributes { get; }

            public uint ReparseTag { get; }

            public (ulong Volume, ulong IdHigh, ulong IdLow)? ReadFileId() => _layer.AnswersFileId ? (Volume, _id.IdHigh, _id.IdLow) : null;

            public (uint Volume, ulong Index) ReadFileIndex() => ((uint)Volume, _id.Index);

            public FileStream OpenForReading()
            {
                if (!_layer._open.Contains(this))
                {
                    throw new IOException($"'{Path}' is read through a handle that was closed.");
                }

                _layer.Read.Add(Path);
                return new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            }

            public byte[] ReadDacl()
            {
                if ((Access & ReadControl) == 0 || !_layer._open.Contains(this) || !_layer.Dacls.TryGetValue(Path, out byte[]? dacl))
                {
                    throw new IOException($"Cannot read the permissions of '{Path}': access denied");
                }

                return (byte[])dacl.Clone();
            }

            public void WriteDacl(byte[] dacl)
            {
                if ((Access & WriteDac) == 0 || !_layer._open.Contains(this))
                {
                    throw new IOException($"Cannot write the permissions of '{Path}': access denied");
                }

                _layer.Writes++;
                _layer.HeldWhenWritten.Clear();
                _layer.HeldWhenWritten.AddRange(_layer.HeldNow);
                _layer.Dacls[Path] = (byte[])dacl.Clone();
            }

            public void WriteOwnerAndProtectedDacl(byte[] owner, byte[] dacl)
            {
                if ((Access & WriteOwner) == 0)
                {
                    throw new IOException($"Cannot write the owner of '{Path}': access denied");
                }

                WriteDacl(dacl);
                _layer.Owners[Path] = (byte[])owner.Clone();
                _layer.Protected.Add(Path);
            }

            public void Dispose() => _layer._open.Remove(this);
        }
    }
}
