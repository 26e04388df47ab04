using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Logon.Windows;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// The Windows handle layer in memory: every path is a plain folder unless told otherwise. Keeps which entries were
    /// opened, which were open when a DACL was written, and whether each was let go; a folder with no DACL listed cannot be
    /// read, as GetSecurityInfo failing.
    /// </summary>
    internal sealed class FolderHandlesInMemory : IFolderHandles
    {
        public const uint DirectoryAttribute = 0x10;
        public const uint ReparsePointAttribute = 0x400;
        private const uint ArchiveAttribute = 0x20;

        private readonly Dictionary<string, (uint Attributes, uint ReparseTag)?> _entries = new Dictionary<string, (uint, uint)?>();
        private readonly List<Handle> _open = new List<Handle>();

        public Dictionary<string, byte[]> Dacls { get; } = new Dictionary<string, byte[]>();

        /// <summary>Each open as "path" or "path (DACL)", in order.</summary>
        public List<string> Opened { get; } = new List<string>();

        /// <summary>The paths open when the last DACL was written, in the order they were opened.</summary>
        public List<string> OpenWhenWritten { get; } = new List<string>();

        public List<string> OpenNow => _open.Select(handle => handle.Path).ToList();

        public int Writes { get; private set; }

        /// <summary>Paths whose open fails, as when another program holds them with the right to delete.</summary>
        public HashSet<string> Unopenable { get; } = new HashSet<string>();

        public void ReparsePoint(string path, uint tag) => _entries[path] = (DirectoryAttribute | ReparsePointAttribute, tag);

        public void File(string path) => _entries[path] = (ArchiveAttribute, 0);

        public void Missing(string path) => _entries[path] = null;

        public IFolderHandle? Open(string path, bool forDacl)
        {
            if (Unopenable.Contains(path))
            {
                throw new IOException($"'{path}' is held open by another program with the right to rename or delete it.");
            }

            (uint Attributes, uint ReparseTag)? entry = _entries.TryGetValue(path, out (uint, uint)? listed) ? listed : (DirectoryAttribute, 0);
            if (entry == null)
            {
                return null;
            }

            Opened.Add(forDacl ? path + " (DACL)" : path);
            var handle = new Handle(this, path, forDacl, entry.Value.Attributes, entry.Value.ReparseTag);
            _open.Add(handle);
            return handle;
        }

        private sealed class Handle : IFolderHandle
        {
            private readonly FolderHandlesInMemory _layer;
            private readonly bool _forDacl;

            public Handle(FolderHandlesInMemory layer, string path, bool forDacl, uint attributes, uint reparseTag)
            {
                _layer = layer;
                Path = path;
                _forDacl = forDacl;
                Attributes = attributes;
                ReparseTag = reparseTag;
            }

            public string Path { get; }

            public uint Attributes { get; }

            public uint ReparseTag { get; }

            public byte[] ReadDacl()
            {
                // As Windows: without READ_CONTROL the handle cannot read the DACL.
                if (!_forDacl || !_layer._open.Contains(this) || !_layer.Dacls.TryGetValue(Path, out byte[]? dacl))
                {
                    throw new IOException($"Cannot read the permissions of '{Path}': access denied");
                }

                return (byte[])dacl.Clone();
            }

            public void WriteDacl(byte[] dacl)
            {
                if (!_forDacl || !_layer._open.Contains(this))
                {
                    throw new IOException($"Cannot write the permissions of '{Path}': access denied");
                }

                _layer.Writes++;
                _layer.OpenWhenWritten.Clear();
                _layer.OpenWhenWritten.AddRange(_layer.OpenNow);
                _layer.Dacls[Path] = (byte[])dacl.Clone();
            }

            public void Dispose() => _layer._open.Remove(this);
        }
    }
}
