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
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// A restore-point repository in a folder (layout in about_VmQuiesce_Repository):
    /// vmquiesce-repository.json (format version, chunk size), chunks/ab/&lt;sha256&gt;,
    /// points/&lt;id&gt;.json and locks/. A restore point exists exactly when its manifest does.
    /// </summary>
    public sealed class BackupRepository : IRestorePointSource, IBackupTarget, IPrunableRepository
    {
        public const int FormatVersion = 1;
        public const int DefaultChunkSize = 4 * 1024 * 1024;

        /// <summary>
        /// The chunk size of a repository a change-tracked backup creates: an incremental re-reads, patches and
        /// stores each chunk a change touches, so the smaller the chunk, the less of that work a scattered write makes.
        /// Smaller than 512 KiB, the work per chunk file outweighs it (measured: 256 KiB was slower than 1 MiB).
        /// </summary>
        public const int ChangeTrackedChunkSize = 512 * 1024;
        internal const string MarkerName = "vmquiesce-repository.json";
        internal const string MarkerFormat = "VmQuiesceRepository";
        internal const string PointsFolderName = "points";
        public const int MinChunkSize = 64 * 1024;
        public const int MaxChunkSize = 64 * 1024 * 1024;

        /// <summary>New repositories' chunks are whole 4 KiB blocks, so restores write them past the page cache and stay sparse.</summary>
        public const int ChunkSizeStep = DirectFileStream.Alignment;
        private static readonly Regex IdPattern = new Regex("^[0-9A-Za-z][0-9A-Za-z_.-]{0,127}$", RegexOptions.CultureInvariant);

        /// <summary>Marker and lock files are a few hundred bytes: anything far larger is not one.</summary>
        internal const long MaxSmallFileBytes = 64 * 1024;

        /// <summary>
        /// A manifest lists about 70 bytes per chunk: 512 MiB holds 7 million chunks (28 TiB of 4 MiB chunks).
        /// Reading stops there, so a hostile manifest cannot make the host read without end.
        /// </summary>
        internal const long MaxManifestBytes = 512L * 1024 * 1024;

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

        /// <summary>What <see cref="OpenOrCreate(string, int)"/> made: nothing (it existed), the layout in an existing folder, or the folder too.</summary>
        internal RepositoryCreation Created { get; private set; }

        public int ChunkSize { get; }

        internal ChunkStore Chunks { get; }

        IChunkSink IBackupTarget.ChunkSink => Chunks;

        /// <summary>Whether chunks and manifests are encrypted and authenticated, and with which key (see <see cref="RepositoryEncryption"/>).</summary>
        public RepositoryEncryption Encryption => Chunks.Encryption;

        internal string PointsFolder => System.IO.Path.Combine(Path, PointsFolderName);

        /// <summary>Opens an existing repository.</summary>
        public static BackupRepository Open(string path) => Open(path, RepositoryFileOps.Real);

        /// <summary>Opens the repository at <paramref name="path"/>, creating it when the folder is missing or empty.</summary>
        public static BackupRepository OpenOrCreate(string path, int chunkSize = DefaultChunkSize) => OpenOrCreate(path, chunkSize, RepositoryFileOps.Real);

        /// <summary>
        /// As <see cref="OpenOrCreate(string, int)"/>; a repository it creates is encrypted with <paramref name="key"/>
        /// (null: made the old way, unencrypted) and <paramref name="cipher"/> (null: the one this CPU runs fastest), whose
        /// key file goes to this host's key folder (<see cref="HostKeyStore"/>) first.
        /// </summary>
        public static BackupRepository OpenOrCreate(string path, int chunkSize, RepositoryKey? key, RepositoryCipher? cipher = null) => OpenOrCreate(path, chunkSize, RepositoryFileOps.Real, key, cipher);

        internal static BackupRepository Open(string path, RepositoryFileOps ops)
        {
            string full = FullPath(path);
            switch (RepositoryLayout.Inspect(full, path, ops.ReparseTags))
            {
                case LayoutState.Missing:
                    throw new VmQuiesceException("RepositoryNotFound", FailureKind.ObjectNotFound, $"The repository folder '{full}' does not exist.", path)
                    {
                        Remedy = "Check the path, or make a repository with Invoke-VmQuiescedBackup -Repository <new folder>.",
                    };
                case LayoutState.Partial:
                    throw new VmQuiesceException("RepositoryCreationInterrupted", FailureKind.InvalidOperation,
                        $"The folder '{full}' holds the empty folders of a VmQuiesce repository whose creation was interrupted; it has no {MarkerName} yet, so it holds no restore point.", path)
                    {
                        Remedy = $"Run Invoke-VmQuiescedBackup -Repository '{full}': it completes the repository.",
                    };
                case LayoutState.Empty:
                case LayoutState.Foreign:
                    throw new VmQuiesceException("RepositoryNotRecognized", FailureKind.InvalidArgument, $"The folder '{full}' is not a VmQuiesce repository: it has no {MarkerName}.", path);
            }

            string marker = System.IO.Path.Combine(full, MarkerName);
            JsonObject config;
            try
            {
                config = JsonText.ParseObject(RegularFile.ReadAllText(marker, MaxSmallFileBytes, ops.ReparseTags));
                if (config.GetString("format") != MarkerFormat)
                {
                    throw new JsonFormatException($"The member 'format' is not '{MarkerFormat}'.");
                }
            }
            catch (Exception e) when (e is JsonFormatException || e is IOException)
            {
                throw new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{marker}' is not valid: {e.Message}", path, e);
            }

            long version = config.GetInt64("formatVersion");
            if (version > RepositoryEncryption.EncryptedFormatVersion)
            {
                throw new VmQuiesceException("RepositoryFormatUnsupported", FailureKind.NotSupported, $"The repository '{full}' has format version {version}; this VmQuiesce reads up to version {RepositoryEncryption.EncryptedFormatVersion}.", path)
                {
                    Remedy = "Update VmQuiesce.",
                };
            }

            long chunkSize = config.GetInt64("chunkSize");
            if (chunkSize < MinChunkSize || chunkSize > MaxChunkSize)
            {
                throw new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{marker}' has chunkSize {chunkSize}; expected {ByteText.Of(MinChunkSize)} to {ByteText.Of(MaxChunkSize)}.", path);
            }

            RepositoryLayout.CheckNoLinks(full, ChunkStore.FanOutNames, ops.ReparseTags);
            var repository = new BackupRepository(full, (int)chunkSize, ops);
            repository.Chunks.Encryption = ReadEncryption(config, version, marker, repository);
            repository.Encryption.UnlockFromHost();
            return repository;
        }

        /// <summary>The repository file of a new repository, in a folder or in object storage alike.</summary>
        internal static string NewMarker(int chunkSize, RepositoryEncryption encryption) => JsonText.Serialize(encryption.AddTo(new JsonObject()
            .With("format", MarkerFormat)
            .With("formatVersion", FormatVersion)
            .With("chunkSize", chunkSize)
            .With("chunkHash", "SHA-256")
            .With("created", DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture))), indented: true);

        private static RepositoryEncryption ReadEncryption(JsonObject config, long version, string marker, BackupRepository repository)
        {
            RepositoryEncryption encryption;
            try
            {
                encryption = RepositoryEncryption.FromMarker(config, version, repository.ChunkSize, repository.Path);
            }
            catch (Exception e) when (e is JsonFormatException || e is FormatException)
            {
                throw new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{marker}' is not valid: {e.Message}", repository.Path, e);
            }

            if (!encryption.IsEncrypted)
            {
                HostKeyStore.RefuseDowngrade(repository.Path);
            }

            return encryption;
        }

        /// <summary>
        /// Creates the repository in place, folders first and the marker last, each step skipping what exists: a
        /// creation that was killed, ran out of inodes, or runs beside another is completed by the next one. The
        /// marker is published with a link that fails when one exists, so of two concurrent creators one wins and
        /// the other opens the winner's repository. With <paramref name="key"/> it is encrypted, and the key's host
        /// key file is written before the marker.
        /// </summary>
        internal static BackupRepository OpenOrCreate(string path, int chunkSize, RepositoryFileOps ops, RepositoryKey? key = null, RepositoryCipher? cipher = null)
        {
            string full = FullPath(path);
            LayoutState state = RepositoryLayout.Inspect(full, path, ops.ReparseTags);
            if (state == LayoutState.Repository || state == LayoutState.Foreign)
            {
                return Open(full, ops);
            }

            if (chunkSize < MinChunkSize || chunkSize > MaxChunkSize || chunkSize % ChunkSizeStep != 0)
            {
                throw new VmQuiesceException("InvalidChunkSize", FailureKind.InvalidArgument, $"The chunk size {chunkSize} bytes ({ByteText.Of(chunkSize)}) is out of range; expected a whole number of {ByteText.Of(ChunkSizeStep)} blocks from {ByteText.Of(MinChunkSize)} to {ByteText.Of(MaxChunkSize)}.", chunkSize);
            }

            var repository = new BackupRepository(full, chunkSize, ops);
            if (key != null)
            {
                repository.Chunks.Encryption = RepositoryEncryption.New(key, chunkSize, full, cipher);
                HostKeyStore.Write(repository.Encryption.RepositoryId!, key, full);
            }

            string config = NewMarker(chunkSize, repository.Encryption);
            bool madeFolder;
            bool published = false;
            try
            {
                madeFolder = RepositoryLayout.Build(full, () => ChunkStore.FanOutNames);

                // Not when someone put other files into the folder while it was being made: not ours to take over.
                // The marker comes last, so a folder with a marker always has the rest of the layout.
                published = RepositoryLayout.Inspect(full, path, ops.ReparseTags) != LayoutState.Foreign && repository.TryWriteAtomically(System.IO.Path.Combine(full, MarkerName), config);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw StorageFailure(full, "create the repository", e);
            }
            finally
            {
                if (!published && repository.Encryption.IsEncrypted)
                {
                    // Another creator won (or this one failed): the key file written for ours names a repository that never existed.
                    HostKeyStore.Remove(repository.Encryption.RepositoryId!);
                }
            }

            if (!published)
            {
                return Open(full, ops);
            }

            repository.Created = madeFolder ? RepositoryCreation.Folder : RepositoryCreation.Layout;
            return repository;
        }

        /// <summary>
        /// A failed write to the repository as a typed error with a remedy: the file system is full (of bytes or
        /// of inodes), mounted read-only, not writable by this user, or failed otherwise.
        /// </summary>
        internal static VmQuiesceException StorageFailure(string repository, string doing, Exception e)
        {
            if (RegularFile.IsDiskFull(e))
            {
                return new VmQuiesceException("RepositoryDiskFull", FailureKind.LimitsExceeded,
                    $"Could not {doing} in '{repository}': its file system is full ({e.Message}).", repository, e)
                {
                    Remedy = $"Free space on the file system of '{repository}' (check both bytes and inodes: df -h, df -i), or remove old restore points with Remove-VmBackup, then run the backup again; it completes what was started.",
                };
            }

            if (RegularFile.IsReadOnlyFileSystem(e))
            {
                return new VmQuiesceException("RepositoryReadOnly", FailureKind.PermissionDenied,
                    $"Could not {doing} in '{repository}': its file system is mounted read-only.", repository, e)
                {
                    Remedy = "Remount it read-write, or back up into a repository on a writable file system. Reading (Get-VmBackup, Test-VmBackup, Restore-VmSnapshot) works on a read-only repository.",
                };
            }

            if (e is UnauthorizedAccessException || RegularFile.ErrnoOf(e) == Libc.EACCES || RegularFile.ErrnoOf(e) == Libc.EPERM)
            {
                return new VmQuiesceException("RepositoryAccessDenied", FailureKind.PermissionDenied,
                    $"Could not {doing} in '{repository}': access denied ({e.Message}).", repository, e)
                {
                    Remedy = "Run as root (or Administrator), or choose a folder this user may write.",
                };
            }

            return new VmQuiesceException("RepositoryWriteFailed", FailureKind.WriteError, $"Could not {doing} in '{repository}': {e.Message}", repository, e);
        }

        /// <summary>
        /// Removes this repository when this call created it and nothing was stored in it (the first backup failed),
        /// so a failed first backup leaves no empty repository behind, nor this host's key file for it. Under the
        /// exclusive lock, so a backup that started into it meanwhile keeps it; anything unexpected inside keeps it too.
        /// </summary>
        public bool RemoveIfUnused()
        {
            if (Created == RepositoryCreation.None)
            {
                return false;
            }

            try
            {
                using (LockExclusive("Invoke-VmQuiescedBackup (removing the repository its failed first backup made)"))
                {
                    if (Directory.EnumerateFileSystemEntries(PointsFolder).Any() || Chunks.EnumerateChunkPaths().Any())
                    {
                        return false;
                    }
                }
            }
            catch (VmQuiesceException)
            {
                return false;
            }

            if (!RepositoryLayout.RemoveEmpty(Path, Created == RepositoryCreation.Folder, ChunkStore.FanOutNames, _ops.ReparseTags))
            {
                return false;
            }

            // The key file written for it names a repository that no longer exists (as the object storage one does).
            if (Encryption.IsEncrypted)
            {
                HostKeyStore.Remove(Encryption.RepositoryId!);
            }

            Created = RepositoryCreation.None;
            return true;
        }

        /// <summary>A warning when other users can read or change this repository (see <see cref="RepositoryLayout.DescribeWideAccess"/>), else null.</summary>
        public string? AccessWarning()
        {
            string? wide = RepositoryLayout.DescribeWideAccess(Path);
            if (wide == null)
            {
                return null;
            }

            string remedy = HostPlatform.IsWindows
                ? $"allow only Administrators and SYSTEM on '{Path}'"
                : $"run chmod -R go= '{Path}' (and chown -R root '{Path}' when another user owns it)";
            return $"The repository is open to other users: {wide}. To restrict it, {remedy}.";
        }

        /// <summary>A new restore point id: the UTC start time plus 8 random hex digits, sortable by time.</summary>
        public static string NewId(DateTime startUtc) =>
            startUtc.ToUniversalTime().ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N").Substring(0, 8);

        public static bool IsValidId(string id) => IdPattern.IsMatch(id);

        /// <summary>A shared lock (backups, verifies, restores); a lock whose process is provably gone is removed and reported through <paramref name="warn"/>.</summary>
        public RepositoryLock LockShared(string purpose, bool removeStale = false, Action<string>? warn = null) => Locked(() => RepositoryLock.AcquireShared(Path, purpose, removeStale, warn, _ops));

        IDisposable IRestorePointSource.LockShared(string purpose, Action<string> warn) => LockShared(purpose, warn: warn);

        /// <summary>The exclusive lock (prune).</summary>
        public RepositoryLock LockExclusive(string purpose, bool removeStale = false, Action<string>? warn = null) => Locked(() => RepositoryLock.AcquireExclusive(Path, purpose, removeStale, warn, _ops));

        /// <summary>A shared lock for reading, or none where the repository cannot be written (said through <paramref name="warn"/>).</summary>
        public RepositoryLock LockForReading(string purpose, Action<string>? warn) => Locked(() => RepositoryLock.AcquireForReading(Path, purpose, warn, _ops));

        private RepositoryLock Locked(Func<RepositoryLock> acquire)
        {
            try
            {
                return acquire();
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw StorageFailure(Path, "take a lock", e);
            }
        }

        /// <summary>
        /// Every restore point, oldest first. A restore point is its manifest file: <c>points/&lt;id&gt;.json</c>
        /// whose "id" is that name. A manifest that cannot be read, and one whose id is not its file's name (a
        /// sync tool's conflict copy, a renamed file), is not a restore point: it is passed to
        /// <paramref name="problem"/> (an unreadable one is thrown when that is null); temp files are ignored.
        /// </summary>
        public IReadOnlyList<RestorePoint> ListRestorePoints(Action<VmQuiesceException>? problem = null) => ReadManifests(problem).Points;

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

            RestorePoint point = ReadManifest(file);
            return point.Id == id ? point : throw IdMismatch(point);
        }

        /// <summary>
        /// The restore points one manifest at a time, in the points folder's order, leaving out manifests that cannot be
        /// read or are no restore point: for a caller that may stop early, such as a completer bounded in time, which must
        /// not go on reading a repository on a slow or unreachable share after it has answered (<paramref name="cancel"/>).
        /// </summary>
        public IEnumerable<RestorePoint> ReadRestorePoints(CancellationToken cancel) =>
            Manifests(IgnoreProblem, cancel).Where(manifest => !manifest.IsStray).Select(manifest => manifest.Point);

        /// <summary>
        /// Reads every manifest: the restore points, and the strays (readable manifests that are not restore
        /// points, whose chunks prune must still keep). Problems go to <paramref name="problem"/>.
        /// </summary>
        private (List<RestorePoint> Points, List<RestorePoint> Strays) ReadManifests(Action<VmQuiesceException>? problem)
        {
            var points = new List<RestorePoint>();
            var strays = new List<RestorePoint>();
            foreach ((RestorePoint point, bool isStray) in Manifests(problem, CancellationToken.None))
            {
                (isStray ? strays : points).Add(point);
            }

            return (points.OrderBy(point => point.StartTime).ThenBy(point => point.Id, StringComparer.Ordinal).ToList(), strays);
        }

        /// <summary>Each readable manifest as it is read, and whether it is a stray; problems go to <paramref name="problem"/>.</summary>
        private IEnumerable<(RestorePoint Point, bool IsStray)> Manifests(Action<VmQuiesceException>? problem, CancellationToken cancel)
        {
            if (!Directory.Exists(PointsFolder))
            {
                yield break;
            }

            foreach (string file in Directory.EnumerateFiles(PointsFolder, "*.json"))
            {
                string name = System.IO.Path.GetFileName(file);
                if (name.StartsWith(".", StringComparison.Ordinal))
                {
                    continue;
                }

                cancel.ThrowIfCancellationRequested();
                RestorePoint point;
                try
                {
                    point = ReadManifest(file);
                }
                catch (VmQuiesceException e) when (problem != null)
                {
                    problem(e);
                    continue;
                }

                bool isStray = !(IsValidId(point.Id) && name == point.Id + ".json");
                if (isStray)
                {
                    problem?.Invoke(IdMismatch(point));
                }

                yield return (point, isStray);
            }
        }

        private VmQuiesceException IdMismatch(RestorePoint point) =>
            new VmQuiesceException("RestorePointIdMismatch", FailureKind.InvalidData,
                $"The manifest '{point.ManifestFile}' says it is restore point '{point.Id}', which is not its file name: it is not a restore point (a copy, such as a sync tool's conflict copy?). Nothing uses it, and no prune removes it or the chunks it names.", point.ManifestFile)
            {
                Remedy = $"If it is a copy of another manifest, delete it; if it is a restore point someone renamed, rename it to '{point.Id}.json' (when that name is free and the id is valid).",
            };

        /// <summary>
        /// Publishes a restore point: its chunks must already be stored and durable (<see cref="IBackupTarget.MakeChunksDurable"/>).
        /// Manifest to a temp name, flushed to disk, renamed; until the rename the point does not exist.
        /// </summary>
        void IBackupTarget.Publish(RestorePoint point) => Publish(point);

        IPreparedManifest IBackupTarget.PrepareManifest(RestorePoint point) => PrepareManifest(point);

        void IBackupTarget.MakeChunksDurable() => Chunks.SyncStoredFolders();

        IReadOnlyList<string> IBackupTarget.ListRestorePointIds() =>
            !Directory.Exists(PointsFolder) ? Array.Empty<string>()
                : Directory.EnumerateFiles(PointsFolder, "*.json").Select(file => System.IO.Path.GetFileNameWithoutExtension(file)).Where(IsValidId).ToList();

        internal void Publish(RestorePoint point)
        {
            using PreparedManifest manifest = PrepareManifest(point);
            manifest.Publish();
        }

        /// <summary>The manifest written under a temp name and flushed to disk: publishing it is then a rename.</summary>
        private PreparedManifest PrepareManifest(RestorePoint point)
        {
            string target = ManifestPath(point.Id);
            if (File.Exists(target))
            {
                throw PointExists(point.Id);
            }

            try
            {
                return new PreparedManifest(this, point, target, WriteFlushedTemp(target, Encryption.ManifestFile(point)));
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw StorageFailure(Path, $"write the manifest of restore point '{point.Id}'", e);
            }
        }

        private VmQuiesceException PointExists(string id) =>
            new VmQuiesceException("RestorePointExists", FailureKind.InvalidOperation, $"The repository '{Path}' already has a restore point '{id}'.", id);

        /// <summary>A manifest written and flushed under its temp name; disposed unpublished, the temp file goes.</summary>
        private sealed class PreparedManifest : IPreparedManifest
        {
            private readonly BackupRepository _repository;
            private readonly RestorePoint _point;
            private readonly string _target;
            private readonly string _temp;
            private bool _tempGone;

            public PreparedManifest(BackupRepository repository, RestorePoint point, string target, string temp)
            {
                _repository = repository;
                _point = point;
                _target = target;
                _temp = temp;
            }

            public void Publish()
            {
                bool published;
                try
                {
                    published = _repository.TryMoveNew(_temp, _target);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    throw StorageFailure(_repository.Path, $"write the manifest of restore point '{_point.Id}'", e);
                }

                // Moved, or deleted because the name was taken.
                _tempGone = true;
                if (!published)
                {
                    throw _repository.PointExists(_point.Id);
                }

                _point.Repository = _repository.Path;
            }

            public void Dispose()
            {
                if (_tempGone)
                {
                    return;
                }

                try
                {
                    _repository._ops.Delete(_temp);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // A temp name: nothing reads it as a restore point, and a prune removes it.
                }
            }
        }

        /// <summary>
        /// Re-reads and re-hashes every chunk of <paramref name="point"/> and checks each whole-file digest
        /// (see <see cref="RestorePointVerifier"/>).
        /// </summary>
        public RestorePointVerification Verify(RestorePoint point, CancellationToken cancel, IOperationHost? host = null)
        {
            if (point.ChunkSize != ChunkSize)
            {
                // Every chunk would look damaged; the marker (or the manifest) is what is wrong.
                throw new VmQuiesceException("RestorePointChunkSizeMismatch", FailureKind.InvalidData,
                    $"The repository marker '{System.IO.Path.Combine(Path, MarkerName)}' says chunkSize {ChunkSize}, but restore point '{point.Id}' was written with chunkSize {point.ChunkSize}; no chunk was checked.", point.Id)
                {
                    Remedy = $"If the other restore points say {point.ChunkSize} too, the marker is wrong: set \"chunkSize\" in it back to {point.ChunkSize}. Do not delete chunks over this.",
                };
            }

            return RestorePointVerifier.Verify(this, point, cancel, host);
        }

        /// <summary>
        /// Records the chunks <paramref name="verification"/> found damaged (not missing: a backup stores those anyway),
        /// so the next backup that has their data stores them anew. Returns how many were not recorded before.
        /// </summary>
        public int RecordDamage(RestorePointVerification verification)
        {
            try
            {
                return verification.Problems.Count(problem => (problem.ProblemValue == ChunkProblemKind.Damaged || problem.ProblemValue == ChunkProblemKind.NotAuthentic) && ChunkStore.IsChunkName(problem.Hash) && Chunks.Damaged.Record(problem.Hash));
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw StorageFailure(Path, "record the damaged chunks", e);
            }
        }

        /// <summary>Which points a removal by id removes (unknown ids are reported through <paramref name="notFound"/>).</summary>
        public PrunePlan PlanRemoval(IEnumerable<string> ids, Action<VmQuiesceException> notFound) => PrunePlan.ForIds(Path, ListRestorePoints(IgnoreProblem), ids, notFound);

        /// <summary>
        /// Which points <paramref name="policy"/> removes, per VM; VMs not matching <paramref name="appliesTo"/> are
        /// untouched. The plan never removes the last point of a VM, and its prune checks that again.
        /// </summary>
        public PrunePlan PlanRetention(RetentionPolicy policy, Func<string, bool> appliesTo) => PrunePlan.ForPolicy(Path, ListRestorePoints(IgnoreProblem), policy, appliesTo);

        /// <summary>What garbage collection would free if the plan's points were gone: (chunks, bytes).</summary>
        public (long Chunks, long Bytes) EstimateGarbage(PrunePlan plan)
        {
            var referenced = ReferencedChunks(plan.Keep.Concat(ReadManifests(IgnoreProblem).Strays));
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
        /// leaves only unreferenced chunks, which the next prune removes. Only the manifest files it read are
        /// removed, and only through the folders it opened (never through a link); the chunks of a manifest that
        /// is not a restore point (<see cref="IdMismatch"/>) are kept.
        /// </summary>
        /// <param name="collectGarbage">False removes only the manifests; their chunks go at the next prune.</param>
        /// <param name="warn">Told about locks of dead processes that were removed, and manifests that are not restore points.</param>
        public PruneResult Prune(PrunePlan plan, bool collectGarbage, bool removeStaleLock, CancellationToken cancel, Action<string>? warn = null)
        {
            using RepositoryLock exclusive = LockExclusive("Remove-VmBackup (prune)", removeStaleLock, warn);

            // Read every manifest before deleting anything: a chunk may be removed only when every
            // remaining point is known. Points added since the plan was made are kept.
            var (all, strays) = ReadManifests(e => ReportOrStop(e, warn));
            List<RestorePoint> remove = plan.StillToRemove(all, point => point.ManifestFile, warn);
            var keep = all.Except(remove).ToList();
            var removed = new List<string>();
            try
            {
                using (TrustedFolder points = TrustedFolder.OpenNoFollow(PointsFolder))
                {
                    foreach (RestorePoint point in remove)
                    {
                        cancel.ThrowIfCancellationRequested();
                        points.Delete(System.IO.Path.GetFileName(point.ManifestFile));
                        removed.Add(point.Id);
                    }

                    points.Sync();
                }

                if (!collectGarbage)
                {
                    return new PruneResult(Path, removed, keep.Count, 0, 0, 0);
                }

                var referenced = ReferencedChunks(keep.Concat(strays));
                (long chunks, long bytes, int temps) = CollectGarbage(referenced, cancel);
                foreach (string hash in Chunks.Damaged.All().Where(hash => !referenced.Contains(hash)))
                {
                    Chunks.Damaged.Clear(hash);
                }

                return new PruneResult(Path, removed, keep.Count, chunks, bytes, temps);
            }
            catch (FolderTrustException e)
            {
                throw new VmQuiesceException("RepositoryLayoutUnsafe", FailureKind.SecurityError, $"Prune stopped: {e.Message} VmQuiesce deletes nothing through it.", e.Folder, e)
                {
                    Remedy = $"Find out who changed the repository '{Path}', replace the link by a real folder, and restrict the repository to root (chmod 700).",
                };
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw StorageFailure(Path, "prune", e);
            }
        }

        /// <summary>
        /// Deletes unreferenced chunks and temp files. The chunks folder is opened without following a link, and each
        /// fan-out folder below it through it, following none: a folder someone swapped for a link since the repository
        /// was opened stops the prune instead of leading it into another folder.
        /// </summary>
        private (long Chunks, long Bytes, int Temps) CollectGarbage(HashSet<string> referenced, CancellationToken cancel)
        {
            long chunks = 0;
            long bytes = 0;
            int temps = 0;
            void Collect(TrustedFolder folder, bool inChunks)
            {
                foreach (string name in folder.Names().ToList())
                {
                    cancel.ThrowIfCancellationRequested();
                    bool temp = name.StartsWith(ChunkStore.TempPrefix, StringComparison.Ordinal);
                    if (!temp && !(inChunks && ChunkStore.IsChunkName(name) && !referenced.Contains(name)))
                    {
                        continue;
                    }

                    FileStatus? status = folder.Stat(name);
                    folder.Delete(name);
                    if (temp)
                    {
                        temps++;
                    }
                    else
                    {
                        chunks++;
                        bytes += status?.Size ?? 0;
                    }
                }
            }

            if (Directory.Exists(Chunks.Root))
            {
                using TrustedFolder chunkRoot = TrustedFolder.OpenNoFollow(Chunks.Root);
                foreach (string name in ChunkStore.FanOutNames.Where(chunkRoot.Exists))
                {
                    using TrustedFolder fanOut = chunkRoot.OpenBelow(name, owner: null, create: false);
                    Collect(fanOut, inChunks: true);
                }
            }

            if (Directory.Exists(PointsFolder))
            {
                using TrustedFolder points = TrustedFolder.OpenNoFollow(PointsFolder);
                Collect(points, inChunks: false);
            }

            return (chunks, bytes, temps);
        }

        /// <summary>Prune stops before removing anything while a manifest is unreadable; a stray manifest is only reported.</summary>
        private void ReportOrStop(VmQuiesceException problem, Action<string>? warn)
        {
            if (problem.ErrorId == "RestorePointIdMismatch")
            {
                warn?.Invoke(problem.Message + " " + problem.Remedy);
                return;
            }

            throw new VmQuiesceException("RepositoryManifestUnreadable", FailureKind.InvalidData, $"Prune stopped before removing anything: {problem.Message}", Path, problem)
            {
                Remedy = "Move the unreadable manifest out of the points folder (its chunks then become removable), or restore it, and run Remove-VmBackup again.",
            };
        }

        /// <summary>Plans skip unreadable and stray manifests; Prune itself reads them again and decides.</summary>
        private static void IgnoreProblem(VmQuiesceException problem)
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
        public string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ChunkCheck check, ConcurrentDictionary<string, bool>? good, out bool missing) =>
            Chunks.ReadVerified(hash, () => Chunks.PathOf(hash), () => Chunks.Read(hash, buffer), buffer, expectedLength, check, good, out missing);

        private RestorePoint ReadManifest(string file)
        {
            try
            {
                string text = Encryption.OpenManifest(file, System.IO.Path.GetFileNameWithoutExtension(file), RegularFile.ReadAllBytes(file, MaxManifestBytes, _ops.ReparseTags));
                RestorePoint point = RestorePoint.FromJson(JsonText.ParseObject(text));
                point.Repository = Path;
                point.ManifestFile = file;
                return point;
            }
            catch (Exception e) when (e is JsonFormatException || e is OverflowException || e is FormatException || e is IOException)
            {
                throw new VmQuiesceException("RestorePointUnreadable", FailureKind.InvalidData, $"The restore point manifest '{file}' cannot be read: {e.Message}", file, e);
            }
        }

        private string ManifestPath(string id) => System.IO.Path.Combine(PointsFolder, id + ".json");

        /// <summary>Temp file, flushed, then linked to <paramref name="target"/> unless that exists (false: nothing changed).</summary>
        private bool TryWriteAtomically(string target, string text) => TryMoveNew(WriteFlushedTemp(target, text), target);

        /// <summary>Writes <paramref name="text"/> to a temp file beside <paramref name="target"/> and flushes it to disk; returns its path.</summary>
        private string WriteFlushedTemp(string target, string text) => WriteFlushedTemp(target, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));

        private string WriteFlushedTemp(string target, byte[] bytes)
        {
            string temp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(target)!, ChunkStore.TempPrefix + System.IO.Path.GetFileName(target) + "." + Guid.NewGuid().ToString("N"));
            using (Stream stream = _ops.CreateNew(temp))
            {
                stream.Write(bytes, 0, bytes.Length);
                _ops.FlushToDisk(stream);
            }

            return temp;
        }

        /// <summary>Links <paramref name="temp"/> to <paramref name="target"/> and syncs the folder; when the target exists, deletes the temp file and returns false.</summary>
        private bool TryMoveNew(string temp, string target)
        {
            if (!_ops.MoveNew(temp, target))
            {
                _ops.Delete(temp);
                return false;
            }

            _ops.SyncDirectory(System.IO.Path.GetDirectoryName(target)!);
            return true;
        }

        private static string FullPath(string path) => RepositoryLayout.FullPath(path, "repository");
    }

    /// <summary>What opening a repository for a backup created.</summary>
    internal enum RepositoryCreation
    {
        None,
        Layout,
        Folder,
    }
}
