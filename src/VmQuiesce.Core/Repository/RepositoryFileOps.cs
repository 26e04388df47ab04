using System.IO;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// The file operations whose order makes the repository crash safe. Tests replace it to "crash"
    /// at any step and then prove that the repository is still valid.
    /// </summary>
    internal class RepositoryFileOps
    {
        public static readonly RepositoryFileOps Real = new RepositoryFileOps();

        /// <summary>Creates a new file that must not exist yet (temp names are unique).</summary>
        public virtual Stream CreateNew(string path) => OpenNew(path);

        /// <summary>
        /// Creates a new write-once file of bulk data (a chunk): past the page cache where the platform and
        /// file system allow (see <see cref="DirectFileStream"/>), else like <see cref="CreateNew"/>.
        /// </summary>
        public virtual Stream CreateNewBulk(string path) => DirectFileStream.TryCreateNew(path) ?? OpenNew(path);

        /// <summary>Makes the written bytes durable before the rename publishes them.</summary>
        public virtual void FlushToDisk(Stream stream)
        {
            if (stream is FileStream file)
            {
                file.Flush(flushToDisk: true);
            }
            else
            {
                stream.Flush();
            }
        }

        /// <summary>Renames <paramref name="from"/> to <paramref name="to"/>; false (and nothing changed) when <paramref name="to"/> exists.</summary>
        public virtual bool MoveNew(string from, string to)
        {
            bool? linked = UnixFiles.TryLinkNew(from, to);
            if (linked == true)
            {
                File.Delete(from);
            }

            if (linked.HasValue)
            {
                return linked.Value;
            }

            if (File.Exists(to))
            {
                return false;
            }

            try
            {
                File.Move(from, to);
                return true;
            }
            catch (IOException) when (File.Exists(to))
            {
                // Another writer published the same content first.
                return false;
            }
        }

        /// <summary>Renames <paramref name="from"/> to <paramref name="to"/> in one step, replacing what <paramref name="to"/> was.</summary>
        public virtual void Replace(string from, string to)
        {
            if (!HostPlatform.IsLinux)
            {
                if (File.Exists(to))
                {
                    File.Replace(from, to, null);
                }
                else
                {
                    File.Move(from, to);
                }
            }
            else if (Libc.renameat(Libc.AtFdCwd, from, Libc.AtFdCwd, to) != 0)
            {
                throw RegularFile.Failure("rename", from, System.Runtime.InteropServices.Marshal.GetLastWin32Error());
            }
        }

        public virtual void Delete(string path) => File.Delete(path);

        /// <summary>
        /// Where Windows' reparse tags are read, which tell a link in the repository from a file or folder kept by a filter (a
        /// deduplicated chunk, a OneDrive placeholder): this host's handle layer, null on Linux and macOS. Tests give Windows'
        /// tags in memory.
        /// </summary>
        public virtual IFolderHandles? ReparseTags => ReparsePoints.ThisHostsTags;

        /// <summary>The text of a small file of the repository (a lock file): a regular file, not a link, of bounded size.</summary>
        public virtual string ReadSmallText(string path) => RegularFile.ReadAllText(path, BackupRepository.MaxSmallFileBytes, ReparseTags);

        /// <summary>Readable by its owner only, never created through a link.</summary>
        private static Stream OpenNew(string path) => RegularFile.CreateNew(path);

        public virtual void SyncDirectory(string directory) => UnixFiles.SyncDirectory(directory);
    }
}
