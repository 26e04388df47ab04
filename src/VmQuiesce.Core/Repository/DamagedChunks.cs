using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// The chunks a verification found damaged: one empty file per chunk in damaged/ (named by its hash). A
    /// backup that meets such a chunk stores it anew from its own data instead of deduplicating against it,
    /// which repairs every restore point that uses it, and removes the record. A chunk whose damage cannot be
    /// seen from its header and length (a flipped bit) is thus rewritten once a Test-VmBackup has found it.
    /// </summary>
    internal sealed class DamagedChunks
    {
        internal const string FolderName = "damaged";

        private readonly string _repositoryPath;
        private readonly string _folder;
        private HashSet<string>? _known;

        public DamagedChunks(string repositoryPath)
        {
            _repositoryPath = repositoryPath;
            _folder = Path.Combine(repositoryPath, FolderName);
        }

        /// <summary>True when a verification recorded the chunk damaged (read once per repository object).</summary>
        public bool Contains(string hash)
        {
            if (_known == null)
            {
                var known = new HashSet<string>(All(), StringComparer.Ordinal);
                _known = known;
            }

            lock (_known)
            {
                return _known.Contains(hash);
            }
        }

        /// <summary>Every recorded hash.</summary>
        public IEnumerable<string> All()
        {
            using TrustedFolder? folder = OpenFolder();
            return folder == null ? Enumerable.Empty<string>() : folder.Names().Where(ChunkStore.IsChunkName).ToList();
        }

        /// <summary>Records <paramref name="hash"/> damaged; true when it was not recorded before.</summary>
        public bool Record(string hash)
        {
            // Made (0700) and opened through the repository folder without following a link: a mkdir and chmod by
            // name would follow one whoever may write the repository put there meanwhile.
            using TrustedFolder repository = TrustedFolder.OpenNoFollow(_repositoryPath);
            using TrustedFolder folder = repository.OpenBelow(FolderName, owner: null, create: true);
            try
            {
                folder.CreateNew(hash, direct: false).Dispose();
                return true;
            }
            catch (IOException) when (folder.Exists(hash))
            {
                return false;
            }
        }

        /// <summary>Forgets <paramref name="hash"/>: it was stored anew, or no restore point uses it any more.</summary>
        public void Clear(string hash)
        {
            using (TrustedFolder? folder = OpenFolder())
            {
                folder?.Delete(hash);
            }

            if (_known != null)
            {
                lock (_known)
                {
                    _known.Remove(hash);
                }
            }
        }

        /// <summary>
        /// The folder, opened without following a link (whoever can write the repository could swap it for one that
        /// leads elsewhere, where Clear would delete); null when there is none.
        /// </summary>
        private TrustedFolder? OpenFolder() => Directory.Exists(_folder) ? TrustedFolder.OpenNoFollow(_folder) : null;
    }
}
