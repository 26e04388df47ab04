using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// A restore-point repository in a folder (layout in about_VmQuiesce_Repository):
    /// vmquiesce-repository.json (format version, chunk size), chunks/ab/&lt;sha256&gt;,
    /// points/&lt;id&gt;.json and locks/. A restore point exists exactly when its manifest does.
    /// </summary>
    public sealed class BackupRepository : IRestorePointSource
    {
        public const int FormatVersion = 1;
        public const int DefaultChunkSize = 4 * 1024 * 1024;
        internal const string MarkerName = "vmquiesce-repository.json";
        internal const string MarkerFormat = "VmQuiesceRepository";
        internal const string PointsFolderName = "points";
        public const int MinChunkSize = 64 * 1024;
        public const int MaxChunkSize = 64 * 1024 * 1024;

        /// <summary>New repositories' chunks are whole 4 KiB blocks, so restores write them past the page cache and stay sparse.</summary>
        public const int ChunkSizeStep = DirectFileStream.Alignment;
        private static readonly Regex IdPattern = new Regex("^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$", RegexOptions.CultureInvariant);

        private readonly RepositoryFileOps _ops;

        private BackupRepository(string path, int chunkSize, RepositoryFileOps ops)
        {
            Path = path;
            ChunkSize = chunkSize;
            _ops = ops;
            Chunks = new ChunkStore(path, chunkSize, ops);
        }

        public string Path { get; }

        public string Location => Path;

        public int ChunkSize { get; }

        internal ChunkStore Chunks { get; }

        internal string PointsFolder => System.IO.Path.Combine(Path, PointsFolderName);

        /// <summary>Opens an existing repository.</summary>
        public static BackupRepository Open(string path) => Open(path, RepositoryFileOps.Real);

        /// <summary>Opens the repository at <paramref name="path"/>, creating it when the folder is missing or empty.</summary>
        public static BackupRepository OpenOrCreate(string path, int chunkSize = DefaultChunkSize) => OpenOrCreate(path, chunkSize, RepositoryFileOps.Real);

        internal static BackupRepository Open(string path, RepositoryFileOps ops)
        {
            string full = FullPath(path);
            if (!Directory.Exists(full))
            {
                throw new VmQuiesceException("RepositoryNotFound", FailureKind.ObjectNotFound, $"The repository folder '{full}' does not exist.", path)
                {
                    Remedy = "Check the path, or make a repository with Invoke-VmQuiescedBackup -Repository <new folder>.",
                };
            }

            string marker = System.IO.Path.Combine(full, MarkerName);
            if (!File.Exists(marker))
            {
                throw new VmQuiesceException("RepositoryNotRecognized", FailureKind.InvalidArgument, $"The folder '{full}' is not a VmQuiesce repository: it has no {MarkerName}.", path);
            }

            JsonObject config;
            try
            {
                config = JsonText.ParseObject(File.ReadAllText(marker));
                if (config.GetString("format") != MarkerFormat)
                {
                    throw new JsonFormatException($"The member 'format' is not '{MarkerFormat}'.");
                }
            }
            catch (JsonFormatException e)
            {
                throw new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{marker}' is not valid: {e.Message}", path, e);
            }

            long version = config.GetInt64("formatVersion");
            if (version > FormatVersion)
            {
                throw new VmQuiesceException("RepositoryFormatUnsupported", FailureKind.NotSupported, $"The repository '{full}' has format version {version}; this VmQuiesce reads up to version {FormatVersion}.", path)
                {
                    Remedy = "Update VmQuiesce.",
                };
            }

            long chunkSize = config.GetInt64("chunkSize");
            if (chunkSize < MinChunkSize || chunkSize > MaxChunkSize)
            {
                throw new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{marker}' has chunkSize {chunkSize}; expected {MinChunkSize} to {MaxChunkSize} bytes.", path);
            }

            return new BackupRepository(full, (int)chunkSize, ops);
        }

        internal static BackupRepository OpenOrCreate(string path, int chunkSize, RepositoryFileOps ops)
        {
            string full = FullPath(path);
            if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            {
                return Open(full, ops);
            }

            if (chunkSize < MinChunkSize || chunkSize > MaxChunkSize || chunkSize % ChunkSizeStep != 0)
            {
                throw new VmQuiesceException("InvalidChunkSize", FailureKind.InvalidArgument, $"The chunk size {chunkSize} is out of range; expected a multiple of {ChunkSizeStep} from {MinChunkSize} to {MaxChunkSize} bytes.", chunkSize);
            }

            Directory.CreateDirectory(full);
            var repository = new BackupRepository(full, chunkSize, ops);
            repository.Chunks.CreateFolders();
            Directory.CreateDirectory(repository.PointsFolder);
            Directory.CreateDirectory(System.IO.Path.Combine(full, RepositoryLock.FolderName));
            string config = JsonText.Serialize(new JsonObject()
                .With("format", MarkerFormat)
                .With("formatVersion", FormatVersion)
                .With("chunkSize", chunkSize)
                .With("chunkHash", "SHA-256")
                .With("created", DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture)), indented: true);

            // The marker comes last, so a folder with a marker always has the rest of the layout.
            repository.WriteAtomically(System.IO.Path.Combine(full, MarkerName), config);
            return repository;
        }

        /// <summary>A new restore point id: the UTC start time plus 8 random hex digits, sortable by time.</summary>
        public static string NewId(DateTime startUtc) =>
            startUtc.ToUniversalTime().ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N").Substring(0, 8);

        public static bool IsValidId(string id) => IdPattern.IsMatch(id);

        public RepositoryLock LockShared(string purpose, bool removeStale = false) => RepositoryLock.AcquireShared(Path, purpose, removeStale);

        public RepositoryLock LockExclusive(string purpose, bool removeStale = false) => RepositoryLock.AcquireExclusive(Path, purpose, removeStale);

        /// <summary>
        /// Every restore point, oldest first. A manifest that cannot be read is passed to
        /// <paramref name="unreadable"/> (or thrown when it is null); temp files are ignored.
        /// </summary>
        public IReadOnlyList<RestorePoint> ListRestorePoints(Action<VmQuiesceException>? unreadable = null)
        {
            var points = new List<RestorePoint>();
            if (!Directory.Exists(PointsFolder))
            {
                return points;
            }

            foreach (string file in Directory.EnumerateFiles(PointsFolder, "*.json"))
            {
                if (System.IO.Path.GetFileName(file).StartsWith(".", StringComparison.Ordinal))
                {
                    continue;
                }

                try
                {
                    points.Add(ReadManifest(file));
                }
                catch (VmQuiesceException e) when (unreadable != null)
                {
                    unreadable(e);
                }
            }

            return points.OrderBy(point => point.StartTime).ThenBy(point => point.Id, StringComparer.Ordinal).ToList();
        }

        /// <inheritdoc/>
        public RestorePoint GetRestorePoint(string id)
        {
            if (!IsValidId(id))
            {
                throw new VmQuiesceException("InvalidRestorePointId", FailureKind.InvalidArgument, $"'{id}' is not a restore point id; expected letters, digits, '.', '_' or '-' such as 20261124T184418Z-1a2b3c4d.", id);
            }

            string file = ManifestPath(id);
            if (!File.Exists(file))
            {
                throw new VmQuiesceException("RestorePointNotFound", FailureKind.ObjectNotFound, $"The repository '{Path}' has no restore point '{id}'.", id)
                {
                    Remedy = $"List the restore points with Get-VmBackup -Repository '{Path}'.",
                };
            }

            return ReadManifest(file);
        }

        /// <summary>
        /// Publishes a restore point: its chunks must already be stored. Manifest to a temp name, flushed
        /// to disk, renamed; until the rename the point does not exist.
        /// </summary>
        internal void Publish(RestorePoint point)
        {
            Chunks.SyncStoredFolders();
            string target = ManifestPath(point.Id);
            if (File.Exists(target))
            {
                throw new VmQuiesceException("RestorePointExists", FailureKind.InvalidOperation, $"The repository '{Path}' already has a restore point '{point.Id}'.", point.Id);
            }

            WriteAtomically(target, JsonText.Serialize(point.ToJson(), indented: true));
            point.Repository = Path;
        }

        /// <summary>
        /// Re-reads and re-hashes every chunk of <paramref name="point"/> and checks each whole-file digest
        /// (see <see cref="RestorePointVerifier"/>).
        /// </summary>
        public RestorePointVerification Verify(RestorePoint point, CancellationToken cancel, IOperationHost? host = null) => RestorePointVerifier.Verify(this, point, cancel, host);

        /// <summary>Which points a removal by id removes (unknown ids are reported through <paramref name="notFound"/>).</summary>
        public PrunePlan PlanRemoval(IEnumerable<string> ids, Action<VmQuiesceException> notFound)
        {
            var all = ListRestorePoints(IgnoreUnreadable);
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (string id in ids)
            {
                if (all.Any(point => point.Id == id))
                {
                    wanted.Add(id);
                }
                else
                {
                    notFound(new VmQuiesceException("RestorePointNotFound", FailureKind.ObjectNotFound, $"The repository '{Path}' has no restore point '{id}'.", id));
                }
            }

            return new PrunePlan(Path, all.Where(point => wanted.Contains(point.Id)).ToList(), all.Where(point => !wanted.Contains(point.Id)).ToList());
        }

        /// <summary>Which points <paramref name="policy"/> removes, per VM; VMs not matching <paramref name="appliesTo"/> are untouched.</summary>
        public PrunePlan PlanRetention(RetentionPolicy policy, Func<string, bool> appliesTo)
        {
            if (policy.IsEmpty)
            {
                throw new VmQuiesceException("RetentionPolicyEmpty", FailureKind.InvalidArgument, "The retention policy keeps nothing; give at least one of KeepLast, KeepDaily, KeepWeekly, KeepMonthly above 0.", policy);
            }

            var all = ListRestorePoints(IgnoreUnreadable);
            var remove = new List<RestorePoint>();
            foreach (var vm in all.Where(point => appliesTo(point.VmName)).GroupBy(point => point.VmName, StringComparer.OrdinalIgnoreCase))
            {
                ISet<RestorePoint> kept = policy.SelectKept(vm);
                remove.AddRange(vm.Where(point => !kept.Contains(point)));
            }

            return new PrunePlan(Path, remove, all.Except(remove).ToList());
        }

        /// <summary>What garbage collection would free if the plan's points were gone: (chunks, bytes).</summary>
        public (long Chunks, long Bytes) EstimateGarbage(PrunePlan plan)
        {
            var referenced = ReferencedChunks(plan.Keep);
            long chunks = 0;
            long bytes = 0;
            foreach (string path in Chunks.EnumerateChunkPaths())
            {
                string name = System.IO.Path.GetFileName(path);
                if (ChunkStore.IsChunkName(name) && !referenced.Contains(name))
                {
                    chunks++;
                    bytes += new FileInfo(path).Length;
                }
            }

            return (chunks, bytes);
        }

        /// <summary>
        /// Removes the plan's restore points, then every chunk no remaining point references and the temp
        /// files of interrupted backups. Holds the exclusive lock; manifests go first, so a crash midway
        /// leaves only unreferenced chunks, which the next prune removes.
        /// </summary>
        /// <param name="collectGarbage">False removes only the manifests; their chunks go at the next prune.</param>
        public PruneResult Prune(PrunePlan plan, bool collectGarbage, bool removeStaleLock, CancellationToken cancel)
        {
            using RepositoryLock exclusive = LockExclusive("Remove-VmBackup (prune)", removeStaleLock);

            // Read every manifest before deleting anything: a chunk may be removed only when every
            // remaining point is known. Points added since the plan was made are kept.
            var all = ListRestorePoints(unreadable: e => throw new VmQuiesceException(
                "RepositoryManifestUnreadable", FailureKind.InvalidData, $"Prune stopped before removing anything: {e.Message}", Path, e)
            {
                Remedy = "Move the unreadable manifest out of the points folder (its chunks then become removable), or restore it, and run Remove-VmBackup again.",
            });
            var removeIds = new HashSet<string>(plan.Remove.Select(point => point.Id), StringComparer.Ordinal);
            var keep = all.Where(point => !removeIds.Contains(point.Id)).ToList();
            var removed = new List<string>();
            foreach (RestorePoint point in all.Where(point => removeIds.Contains(point.Id)))
            {
                cancel.ThrowIfCancellationRequested();
                _ops.Delete(ManifestPath(point.Id));
                removed.Add(point.Id);
            }

            _ops.SyncDirectory(PointsFolder);
            if (!collectGarbage)
            {
                return new PruneResult(Path, removed, keep.Count, 0, 0, 0);
            }

            var referenced = ReferencedChunks(keep);
            long chunks = 0;
            long bytes = 0;
            int temps = 0;
            foreach (string path in Chunks.EnumerateChunkPaths())
            {
                cancel.ThrowIfCancellationRequested();
                string name = System.IO.Path.GetFileName(path);
                bool temp = name.StartsWith(ChunkStore.TempPrefix, StringComparison.Ordinal);
                if (temp || (ChunkStore.IsChunkName(name) && !referenced.Contains(name)))
                {
                    long length = new FileInfo(path).Length;
                    _ops.Delete(path);
                    if (temp)
                    {
                        temps++;
                    }
                    else
                    {
                        chunks++;
                        bytes += length;
                    }
                }
            }

            foreach (string path in Directory.EnumerateFiles(PointsFolder, ChunkStore.TempPrefix + "*"))
            {
                _ops.Delete(path);
                temps++;
            }

            return new PruneResult(Path, removed, keep.Count, chunks, bytes, temps);
        }

        /// <summary>Plans skip unreadable manifests; Prune itself refuses to run while one exists.</summary>
        private static void IgnoreUnreadable(VmQuiesceException unreadable)
        {
        }

        private static HashSet<string> ReferencedChunks(IEnumerable<RestorePoint> points)
        {
            var referenced = new HashSet<string>(StringComparer.Ordinal);
            foreach (RestorePointFile file in points.SelectMany(point => point.Files))
            {
                foreach (string? hash in file.Chunks)
                {
                    if (hash != null)
                    {
                        referenced.Add(hash);
                    }
                }
            }

            return referenced;
        }

        /// <inheritdoc/>
        public string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ConcurrentDictionary<string, bool>? good, out bool missing)
        {
            missing = false;
            if (!ChunkStore.IsChunkName(hash))
            {
                return "the manifest names an invalid chunk hash";
            }

            int length;
            try
            {
                length = Chunks.Read(hash, buffer);
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                missing = true;
                return $"'{Chunks.PathOf(hash)}' does not exist";
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
            {
                return $"'{Chunks.PathOf(hash)}' cannot be read: {e.Message}";
            }

            if (length != expectedLength)
            {
                return $"'{Chunks.PathOf(hash)}' holds {length} bytes; expected {expectedLength}";
            }

            if (good == null || !good.ContainsKey(hash))
            {
                using SHA256 sha = SHA256.Create();
                string actual = ChunkStore.Hash(sha, buffer, length);
                if (actual != hash)
                {
                    return $"'{Chunks.PathOf(hash)}' hashes to {actual}";
                }

                good?.TryAdd(hash, true);
            }

            return null;
        }

        private RestorePoint ReadManifest(string file)
        {
            try
            {
                RestorePoint point = RestorePoint.FromJson(JsonText.ParseObject(File.ReadAllText(file, Encoding.UTF8)));
                point.Repository = Path;
                return point;
            }
            catch (Exception e) when (e is JsonFormatException || e is OverflowException || e is FormatException || e is IOException)
            {
                throw new VmQuiesceException("RestorePointUnreadable", FailureKind.InvalidData, $"The restore point manifest '{file}' cannot be read: {e.Message}", file, e);
            }
        }

        private string ManifestPath(string id) => System.IO.Path.Combine(PointsFolder, id + ".json");

        private void WriteAtomically(string target, string text)
        {
            string folder = System.IO.Path.GetDirectoryName(target)!;
            string temp = System.IO.Path.Combine(folder, ChunkStore.TempPrefix + System.IO.Path.GetFileName(target) + "." + Guid.NewGuid().ToString("N"));
            byte[] bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
            using (Stream stream = _ops.CreateNew(temp))
            {
                stream.Write(bytes, 0, bytes.Length);
                _ops.FlushToDisk(stream);
            }

            if (!_ops.MoveNew(temp, target))
            {
                _ops.Delete(temp);
                throw new VmQuiesceException("RestorePointExists", FailureKind.InvalidOperation, $"'{target}' already exists.", target);
            }

            _ops.SyncDirectory(folder);
        }

        private static string FullPath(string path)
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                throw new VmQuiesceException("InvalidRepositoryPath", FailureKind.InvalidArgument, "The repository path is empty; expected a folder path.", path);
            }

            return System.IO.Path.GetFullPath(path);
        }
    }
}
