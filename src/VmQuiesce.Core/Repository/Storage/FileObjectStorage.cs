using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// Objects as files under a folder, key "a/b" at &lt;root&gt;/a/b. Every object is written under a temp name
    /// (".tmp-" prefix, never listed), flushed, then linked or renamed to its name, so a name always holds a whole
    /// object; <see cref="Flush"/> syncs the folders that gained names. Reads open regular files only, never
    /// through a link, and a listing goes into no folder that is a link (on Windows a reparse point that redirects the name: a
    /// deduplicated or OneDrive file or folder is read and listed as any other). The steps go through
    /// <see cref="RepositoryFileOps"/>, which tests replace to crash between any two of them.
    /// </summary>
    public sealed class FileObjectStorage : IObjectStorage
    {
        private readonly RepositoryFileOps _ops;
        private readonly ConcurrentDictionary<string, bool> _touchedFolders = new ConcurrentDictionary<string, bool>(StringComparer.Ordinal);

        public FileObjectStorage(string root)
            : this(root, RepositoryFileOps.Real)
        {
        }

        internal FileObjectStorage(string root, RepositoryFileOps ops)
        {
            Root = Path.GetFullPath(root);
            _ops = ops;
        }

        public string Root { get; }

        public string Location => Root;

        public string? Endpoint => null;

        /// <summary>The file that holds <paramref name="key"/>.</summary>
        public string PathOf(string key) => Path.Combine(Root, ObjectKeys.Check(key).Replace('/', Path.DirectorySeparatorChar));

        public int Read(string key, byte[] buffer) => Read(key, buffer.Length, length => buffer);

        public byte[] ReadAll(string key, int maxLength)
        {
            byte[]? content = null;
            Read(key, maxLength, length => content = new byte[length]);
            return content!;
        }

        public bool CreateIfAbsent(string key, IReadOnlyList<ArraySegment<byte>> parts)
        {
            string target = PathOf(key);
            if (File.Exists(target))
            {
                return false;
            }

            string temp = WriteTemp(target, parts);
            if (!_ops.MoveNew(temp, target))
            {
                _ops.Delete(temp);
                return false;
            }

            _touchedFolders.TryAdd(Path.GetDirectoryName(target)!, true);
            return true;
        }

        public void Replace(string key, IReadOnlyList<ArraySegment<byte>> parts)
        {
            string target = PathOf(key);
            string temp = WriteTemp(target, parts);
#if NETFRAMEWORK
            if (File.Exists(target))
            {
                File.Replace(temp, target, destinationBackupFileName: null);
            }
            else
            {
                File.Move(temp, target);
            }
#else
            File.Move(temp, target, overwrite: true);
#endif
            _ops.SyncDirectory(Path.GetDirectoryName(target)!);
        }

        public bool Exists(string key) => File.Exists(PathOf(key));

        public IEnumerable<StoredObject> List(string prefix)
        {
            ObjectKeys.CheckPrefix(prefix);
            int cut = prefix.LastIndexOf('/');
            string folderKey = cut < 0 ? string.Empty : prefix.Substring(0, cut);
            string folder = folderKey.Length == 0 ? Root : PathOf(folderKey);
            if (!Directory.Exists(folder) || IsThroughLink(folderKey))
            {
                yield break;
            }

            foreach (string file in FilesUnder(folder))
            {
                string key = file.Substring(Root.Length + 1).Replace(Path.DirectorySeparatorChar, '/');
                if (!key.StartsWith(prefix, StringComparison.Ordinal) || Path.GetFileName(file).StartsWith(TempPrefix, StringComparison.Ordinal) || !ObjectKeys.IsValid(key))
                {
                    continue;
                }

                if (ReparsePoints.RedirectionByPath(file, _ops.ReparseTags) != null)
                {
                    // A link someone else put there is not an object of ours.
                    continue;
                }

                var info = new FileInfo(file);
                yield return new StoredObject(key, info.Length, info.LastWriteTimeUtc);
            }
        }

        /// <summary>Whether a folder on the way from <see cref="Root"/> to the folder of <paramref name="folderKey"/>, or that folder, is a link (see <see cref="FilesUnder"/>).</summary>
        private bool IsThroughLink(string folderKey)
        {
            string folder = Root;
            foreach (string name in folderKey.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries))
            {
                folder = Path.Combine(folder, name);
                if (ReparsePoints.RedirectionByPath(folder, _ops.ReparseTags) != null)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>
        /// The files in <paramref name="folder"/> and the folders below it, never going into a folder that is a link (on
        /// Windows a reparse point that redirects the name: a junction or symbolic link; a deduplicated or OneDrive folder is
        /// gone into as any other), whose files are someone else's, not objects of this storage.
        /// </summary>
        private IEnumerable<string> FilesUnder(string folder)
        {
            var folders = new Stack<string>();
            folders.Push(folder);
            while (folders.Count > 0)
            {
                string current = folders.Pop();
                foreach (string file in Directory.EnumerateFiles(current))
                {
                    yield return file;
                }

                foreach (string below in Directory.EnumerateDirectories(current))
                {
                    if (ReparsePoints.RedirectionByPath(below, _ops.ReparseTags) == null)
                    {
                        folders.Push(below);
                    }
                }
            }
        }

        public void Delete(string key)
        {
            try
            {
                _ops.Delete(PathOf(key));
            }
            catch (DirectoryNotFoundException)
            {
                // Nothing to delete.
            }
        }

        public void Flush()
        {
            foreach (string folder in _touchedFolders.Keys)
            {
                _ops.SyncDirectory(folder);
            }
        }

        public void Dispose()
        {
        }

        /// <summary>Temp files start with this: never listed, removed by prune once their writer is gone.</summary>
        public const string TempPrefix = ChunkStore.TempPrefix;

        private int Read(string key, int maxLength, Func<int, byte[]> bufferFor)
        {
            string path = PathOf(key);
            FileStream file;
            try
            {
                // Never through a link, a FIFO or a device someone put in the repository, and never more than asked for.
                file = RegularFile.OpenRead(path, maxLength, _ops.ReparseTags);
            }
            catch (UnexpectedFileException e)
            {
                throw new InvalidDataException(e.Message, e);
            }

            using var owned = file;

            int length = (int)file.Length;
            if (file.ReadFully(bufferFor(length), length) != length)
            {
                throw new InvalidDataException($"'{path}' was cut short while it was read.");
            }

            return length;
        }

        private string WriteTemp(string target, IReadOnlyList<ArraySegment<byte>> parts)
        {
            string folder = Path.GetDirectoryName(target)!;
            Directory.CreateDirectory(folder);
            string temp = Path.Combine(folder, TempPrefix + Path.GetFileName(target) + "." + Guid.NewGuid().ToString("N"));
            using (Stream stream = _ops.CreateNew(temp))
            {
                try
                {
                    foreach (ArraySegment<byte> part in parts)
                    {
                        stream.Write(part.Array!, part.Offset, part.Count);
                    }

                    _ops.FlushToDisk(stream);
                }
                catch
                {
                    stream.Dispose();
                    _ops.Delete(temp);
                    throw;
                }
            }

            return temp;
        }
    }
}
