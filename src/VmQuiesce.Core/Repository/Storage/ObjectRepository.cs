using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// The repository format (about_VmQuiesce_Repository) over any <see cref="IObjectStorage"/>: the same marker,
    /// chunks/ab/&lt;id&gt; with the same VQC encoding, and points/&lt;id&gt;.json, so a folder and a bucket hold
    /// byte-for-byte the same objects, sealed the same way in an encrypted repository (<see cref="RepositoryEncryption"/>,
    /// whose code reads and writes both). A restore point exists exactly when its manifest object does, and the
    /// manifest is created last, with a create-if-absent: a crash at any moment leaves only unreferenced chunks.
    /// </summary>
    public sealed class ObjectRepository : IRestorePointSource, IBackupTarget, IPrunableRepository, IDisposable
    {
        private const string ChunksPrefix = ChunkStore.FolderName + "/";
        private const string PointsPrefix = BackupRepository.PointsFolderName + "/";

        /// <summary>A manifest lists about 70 bytes per chunk; 64 MiB is 900 000 chunks (3.5 TiB of 4 MiB chunks) per restore point.</summary>
        private const int MaxManifestBytes = 64 * 1024 * 1024;

        /// <summary>
        /// The chunk size of an object repository a change-tracked backup creates: larger than a folder's
        /// (<see cref="BackupRepository.ChangeTrackedChunkSize"/>), since each chunk is a request and the manifest bound
        /// above then still holds 840 GiB of disks per restore point.
        /// </summary>
        public const int ChangeTrackedChunkSize = 1024 * 1024;
        private const int MaxMarkerBytes = 64 * 1024;

        private readonly ChunkStore _codec;

        private ObjectRepository(IObjectStorage storage, int chunkSize, RepositoryEncryption encryption)
        {
            Storage = storage;
            ChunkSize = chunkSize;
            // Only the chunk encoding, sealing and naming are used: the folder belongs to no one.
            _codec = new ChunkStore(string.Empty, chunkSize, RepositoryFileOps.Real) { Encryption = encryption };
            ChunkSink = new ObjectChunkSink(this);
        }

        public IObjectStorage Storage { get; }

        /// <summary>True when this process created the repository (its marker), so a failed first backup removes it again.</summary>
        internal bool Created { get; private set; }

        IChunkSink IBackupTarget.ChunkSink => ChunkSink;

        internal ObjectChunkSink ChunkSink { get; }

        public string Location => Storage.Location;

        public int ChunkSize { get; }

        /// <summary>The scratch buffer <see cref="WriteChunk"/> needs.</summary>
        public int ScratchLength => _codec.ScratchLength;

        /// <inheritdoc/>
        public RepositoryEncryption Encryption => _codec.Encryption;

        /// <summary>Opens the repository in <paramref name="storage"/> (which it then owns).</summary>
        public static ObjectRepository Open(IObjectStorage storage)
        {
            byte[] marker;
            try
            {
                marker = storage.ReadAll(BackupRepository.MarkerName, MaxMarkerBytes);
            }
            catch (FileNotFoundException)
            {
                bool empty = !storage.List(string.Empty).Any();
                throw new VmQuiesceException(empty ? "RepositoryNotFound" : "RepositoryNotRecognized", empty ? FailureKind.ObjectNotFound : FailureKind.InvalidArgument,
                    empty ? $"There is no repository at '{storage.Location}'." : $"'{storage.Location}' holds objects but is not a VmQuiesce repository: it has no {BackupRepository.MarkerName}.", storage.Location)
                {
                    Remedy = empty ? $"Check the address, or make a repository there with Copy-VmBackup -Destination '{storage.Location}'." : "Choose an empty prefix for a new repository.",
                };
            }
            catch (InvalidDataException e)
            {
                throw ConfigInvalid(storage, e.Message, e);
            }

            (int chunkSize, RepositoryEncryption encryption) = ReadMarker(storage, Encoding.UTF8.GetString(marker));
            var repository = new ObjectRepository(storage, chunkSize, encryption);
            encryption.UnlockFromHost();
            return repository;
        }

        /// <summary>
        /// Opens the repository in <paramref name="storage"/>, creating it when the place is empty, encrypted with
        /// <paramref name="key"/> (its host key file written first) under <paramref name="cipher"/> (null: the one this
        /// CPU runs fastest) or, with no key, unencrypted. Of two hosts creating it at once, one creates the marker and
        /// the other opens that repository.
        /// </summary>
        public static ObjectRepository OpenOrCreate(IObjectStorage storage, int chunkSize, RepositoryKey? key, RepositoryCipher? cipher = null)
        {
            if (storage.Exists(BackupRepository.MarkerName) || storage.List(string.Empty).Any())
            {
                return Open(storage);
            }

            if (chunkSize < BackupRepository.MinChunkSize || chunkSize > BackupRepository.MaxChunkSize || chunkSize % BackupRepository.ChunkSizeStep != 0)
            {
                throw new VmQuiesceException("InvalidChunkSize", FailureKind.InvalidArgument, $"The chunk size {chunkSize} is out of range; expected a multiple of {BackupRepository.ChunkSizeStep} from {BackupRepository.MinChunkSize} to {BackupRepository.MaxChunkSize} bytes.", chunkSize);
            }

            RepositoryEncryption encryption = RepositoryEncryption.None;
            if (key != null)
            {
                encryption = RepositoryEncryption.New(key, chunkSize, storage.Location, cipher);
                HostKeyStore.Write(encryption.RepositoryId!, key, storage.Location);
            }

            string config = BackupRepository.NewMarker(chunkSize, encryption);
            bool created = storage.CreateIfAbsent(BackupRepository.MarkerName, new[] { new ArraySegment<byte>(Encoding.UTF8.GetBytes(config)) });
            if (!created && encryption.IsEncrypted)
            {
                // Another host made the repository first: the key written for ours names a repository that never existed.
                HostKeyStore.Remove(encryption.RepositoryId!);
            }

            ObjectRepository repository = Open(storage);
            repository.Created = created;
            return repository;
        }

        /// <summary>
        /// Removes the repository this process created (<see cref="Created"/>) when nothing was stored in it: its
        /// marker and this host's key file, so a failed first backup leaves an empty prefix, as it leaves no folder.
        /// Under the exclusive lock object; false (it stays) when another backup holds a lock or stored anything.
        /// </summary>
        public bool RemoveIfUnused()
        {
            if (!Created)
            {
                return false;
            }

            try
            {
                using (ObjectRepositoryLock.AcquireExclusive(Storage, "Invoke-VmQuiescedBackup (removing the repository its failed first backup made)"))
                {
                    if (Storage.List(string.Empty).Any(item => item.Key != BackupRepository.MarkerName && !item.Key.StartsWith(ObjectRepositoryLock.Folder, StringComparison.Ordinal)))
                    {
                        return false;
                    }

                    Storage.Delete(BackupRepository.MarkerName);
                }
            }
            catch (VmQuiesceException)
            {
                return false;
            }

            if (Encryption.IsEncrypted)
            {
                HostKeyStore.Remove(Encryption.RepositoryId!);
            }

            Created = false;
            return true;
        }

        public static string ChunkKey(string hash) => ChunksPrefix + hash.Substring(0, 2) + "/" + hash;

        public static string ManifestKey(string id) => PointsPrefix + id + ".json";

        public IReadOnlyList<RestorePoint> ListRestorePoints(Action<VmQuiesceException>? problem = null)
        {
            var points = new List<RestorePoint>();
            foreach (string name in ManifestNames())
            {
                string key = PointsPrefix + name;
                if (!(ReadStoredManifest(key, problem) is byte[] stored))
                {
                    continue;
                }

                try
                {
                    RestorePoint point = OpenManifest(key, stored);
                    if (point.Id + ".json" != name)
                    {
                        throw new VmQuiesceException("RestorePointIdMismatch", FailureKind.InvalidData, $"The manifest '{Location}/{key}' says it is restore point '{point.Id}', which is not its name: it is not a restore point.", key);
                    }

                    points.Add(point);
                }
                catch (VmQuiesceException e) when (problem != null)
                {
                    problem(e);
                }
            }

            return points.OrderBy(point => point.StartTime).ThenBy(point => point.Id, StringComparer.Ordinal).ToList();
        }

        public RestorePoint GetRestorePoint(string id)
        {
            if (!BackupRepository.IsValidId(id))
            {
                throw new VmQuiesceException("InvalidRestorePointId", FailureKind.InvalidArgument, $"'{id}' is not a restore point id; expected letters, digits, '.', '_' or '-' such as 20261124T184418Z-1a2b3c4d.", id);
            }

            try
            {
                RestorePoint point = ReadManifest(ManifestKey(id));
                return point.Id == id ? point : throw new VmQuiesceException("RestorePointIdMismatch", FailureKind.InvalidData, $"The manifest '{Location}/{ManifestKey(id)}' says it is restore point '{point.Id}'.", id);
            }
            catch (VmQuiesceException e) when (e.InnerException is FileNotFoundException)
            {
                throw new VmQuiesceException("RestorePointNotFound", FailureKind.ObjectNotFound, $"The repository '{Location}' has no restore point '{id}'.", id)
                {
                    Remedy = $"List the restore points with Get-VmBackup -Repository '{Location}'.",
                };
            }
        }

        public bool HasChunk(string hash) => Storage.Exists(ChunkKey(hash));

        /// <summary>The objects under the chunk prefix, listed (not read): names and sizes.</summary>
        public IEnumerable<StoredObject> ListChunkObjects() => Storage.List(ChunksPrefix);

        /// <summary>
        /// Encodes and stores a chunk unless one of its name is there. Returns the bytes stored, 0 when it existed.
        /// </summary>
        /// <param name="scratch">A buffer of at least <see cref="ScratchLength"/> bytes the caller owns: the chunk is encoded and sealed in it, and uploaded from it.</param>
        public long WriteChunk(string hash, byte[] data, int length, byte[] scratch)
        {
            int storedLength = EncodeStored(hash, data, length, scratch);
            return Storage.CreateIfAbsent(ChunkKey(hash), new[] { new ArraySegment<byte>(scratch, 0, storedLength) }) ? storedLength : 0;
        }

        /// <summary>Encodes chunk <paramref name="hash"/> as it is stored (sealed in an encrypted repository) into <paramref name="buffer"/> itself, of at least <see cref="ScratchLength"/> bytes; returns its length.</summary>
        internal int EncodeStored(string hash, byte[] data, int length, byte[] buffer) => _codec.EncodeStored(hash, data, length, buffer);

        public string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ChunkCheck check, ConcurrentDictionary<string, bool>? good, out bool missing) =>
            _codec.ReadVerified(hash, () => Location + "/" + ChunkKey(hash), () => ReadChunk(hash, buffer), buffer, expectedLength, check, good, out missing);

        void IBackupTarget.MakeChunksDurable() => Storage.Flush();

        IReadOnlyList<string> IBackupTarget.ListRestorePointIds() =>
            ManifestNames().Select(name => name.Substring(0, name.Length - ".json".Length)).Where(BackupRepository.IsValidId).ToList();

        /// <summary>The names under points/ that can be manifests: directly there (no deeper key), ending in ".json".</summary>
        private IEnumerable<string> ManifestNames() =>
            Storage.List(PointsPrefix).Select(item => item.Key.Substring(PointsPrefix.Length)).Where(name => name.EndsWith(".json", StringComparison.Ordinal) && !name.Contains('/'));

        /// <summary>
        /// Publishes a restore point whose chunks are all stored: its manifest is created, never replaced. The chunks are
        /// made durable first here too (a copy publishes without the backup engine); in object storage that is cheap.
        /// </summary>
        public void Publish(RestorePoint point)
        {
            using IPreparedManifest manifest = PrepareManifest(point);
            manifest.Publish();
        }

        IPreparedManifest IBackupTarget.PrepareManifest(RestorePoint point) => PrepareManifest(point);

        private PreparedManifest PrepareManifest(RestorePoint point)
        {
            byte[] manifest = Encryption.ManifestFile(point);
            if (manifest.Length > MaxManifestBytes)
            {
                throw new VmQuiesceException("RestorePointTooLarge", FailureKind.LimitsExceeded, $"The manifest of restore point '{point.Id}' is {manifest.Length} bytes; object repositories read at most {MaxManifestBytes}.", point.Id);
            }

            return new PreparedManifest(this, point, manifest);
        }

        /// <summary>The sealed manifest's bytes, created as an object when published.</summary>
        private sealed class PreparedManifest : IPreparedManifest
        {
            private readonly ObjectRepository _repository;
            private readonly RestorePoint _point;
            private readonly byte[] _manifest;

            public PreparedManifest(ObjectRepository repository, RestorePoint point, byte[] manifest)
            {
                _repository = repository;
                _point = point;
                _manifest = manifest;
            }

            public void Publish()
            {
                _repository.Storage.Flush();
                string key = ManifestKey(_point.Id);
                // A manifest already there with exactly our bytes is ours: the answer to our PUT was lost, and the SDK's
                // retry of it met the object the first one created (412).
                if (!_repository.Storage.CreateIfAbsent(key, new[] { new ArraySegment<byte>(_manifest) }) && !HoldsOurs(key))
                {
                    throw new VmQuiesceException("RestorePointExists", FailureKind.InvalidOperation, $"The repository '{_repository.Location}' already has a restore point '{_point.Id}'.", _point.Id);
                }

                _point.Repository = _repository.Location;
            }

            private bool HoldsOurs(string key)
            {
                try
                {
                    return _repository.Storage.ReadAll(key, MaxManifestBytes).AsSpan().SequenceEqual(_manifest);
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException)
                {
                    // Gone again, or not a manifest we could have written: not ours.
                    return false;
                }
            }

            public void Dispose()
            {
                // Nothing was written before Publish.
            }
        }

        IDisposable IRestorePointSource.LockShared(string purpose, Action<string> warn) => LockShared(purpose, warn);

        /// <summary>A backup's or reader's lock object (<see cref="ObjectRepositoryLock"/>), refreshed while held: a prune waits for it.</summary>
        public IDisposable LockShared(string purpose, Action<string>? warn = null) => ObjectRepositoryLock.AcquireShared(Storage, purpose, warn);

        public PrunePlan PlanRemoval(IEnumerable<string> ids, Action<VmQuiesceException> notFound) => PrunePlan.ForIds(Location, ListRestorePoints(IgnoreProblem), ids, notFound);

        public PrunePlan PlanRetention(RetentionPolicy policy, Func<string, bool> appliesTo) => PrunePlan.ForPolicy(Location, ListRestorePoints(IgnoreProblem), policy, appliesTo);

        /// <summary>Plans skip manifests that are bad, as a folder repository's do; Prune reads them again and stops on one.</summary>
        private static void IgnoreProblem(VmQuiesceException problem)
        {
        }

        public (long Chunks, long Bytes) EstimateGarbage(PrunePlan plan)
        {
            List<StoredObject> garbage = Unreferenced(plan.Keep);
            return (garbage.Count, garbage.Sum(item => item.Size));
        }

        /// <summary>
        /// Under the exclusive lock object (refused while a backup, a reader or another prune holds a lock): reads
        /// every manifest again (an unreadable one stops the prune before anything is deleted, and so does a store or
        /// network failure, as its S3 error), deletes the plan's
        /// manifests, then every chunk no remaining point references. A prune stopped midway leaves only
        /// unreferenced chunks, which the next one deletes.
        /// </summary>
        /// <param name="removeStaleLock">Removes lock objects of other hosts not refreshed for <see cref="ObjectRepositoryLock.StaleAge"/> (those of dead processes of this host go anyway).</param>
        public PruneResult Prune(PrunePlan plan, bool collectGarbage, bool removeStaleLock, CancellationToken cancel, Action<string>? warn = null)
        {
            using ObjectRepositoryLock exclusive = ObjectRepositoryLock.AcquireExclusive(Storage, "Remove-VmBackup (prune)", removeStaleLock, warn);
            IReadOnlyList<RestorePoint> all = ListRestorePoints(problem => throw new VmQuiesceException("RepositoryManifestUnreadable", FailureKind.InvalidData, $"Prune stopped before removing anything: {problem.Message}", Location, problem)
            {
                Remedy = "Move the unreadable manifest out of points/ (its chunks then become removable), or restore it, and run Remove-VmBackup again.",
            });
            List<RestorePoint> remove = plan.StillToRemove(all, point => point.Id, warn);
            var removed = new List<string>();
            foreach (RestorePoint point in remove)
            {
                cancel.ThrowIfCancellationRequested();
                Storage.Delete(ManifestKey(point.Id));
                removed.Add(point.Id);
            }

            List<RestorePoint> keep = all.Except(remove).ToList();
            if (!collectGarbage)
            {
                return new PruneResult(Location, removed, keep.Count, 0, 0, 0);
            }

            List<StoredObject> garbage = Unreferenced(keep);
            foreach (StoredObject chunk in garbage)
            {
                cancel.ThrowIfCancellationRequested();
                Storage.Delete(chunk.Key);
            }

            return new PruneResult(Location, removed, keep.Count, garbage.Count, garbage.Sum(item => item.Size), 0);
        }

        /// <summary>The chunk objects none of <paramref name="keep"/> references.</summary>
        private List<StoredObject> Unreferenced(IEnumerable<RestorePoint> keep)
        {
            var referenced = new HashSet<string>(keep.SelectMany(point => point.Files).SelectMany(file => file.Chunks).OfType<string>().Select(ChunkKey), StringComparer.Ordinal);
            return Storage.List(ChunksPrefix).Where(item => !referenced.Contains(item.Key)).ToList();
        }

        public void Dispose() => Storage.Dispose();

        internal int ReadChunk(string hash, byte[] buffer)
        {
            byte[] stored = System.Buffers.ArrayPool<byte>.Shared.Rent((int)_codec.MaxFileLength);
            try
            {
                int storedLength = Storage.Read(ChunkKey(hash), stored);
                return _codec.DecodeStored(hash, stored, storedLength, buffer);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(stored);
            }
        }

        private RestorePoint ReadManifest(string key) => OpenManifest(key, ReadStoredManifest(key, problem: null)!);

        /// <summary>
        /// The manifest's bytes as stored; one that is gone, too large, not whole or not its ETag is RestorePointUnreadable, passed to
        /// <paramref name="problem"/> (null returned) or thrown without one. A store or network that fails (an S3 error)
        /// is thrown as it is, whatever <paramref name="problem"/> is: it says nothing about the manifest, and a listing or
        /// prune that went on would act on a repository it has not seen whole.
        /// </summary>
        private byte[]? ReadStoredManifest(string key, Action<VmQuiesceException>? problem)
        {
            try
            {
                return Storage.ReadAll(key, MaxManifestBytes);
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException)
            {
                VmQuiesceException unreadable = ManifestUnreadable(key, e);
                if (problem == null)
                {
                    throw unreadable;
                }

                problem(unreadable);
                return null;
            }
        }

        private RestorePoint OpenManifest(string key, byte[] stored)
        {
            try
            {
                string file = Location + "/" + key;
                string text = Encryption.OpenManifest(file, Path.GetFileNameWithoutExtension(key), new ArraySegment<byte>(stored));
                RestorePoint point = RestorePoint.FromJson(JsonText.ParseObject(text));
                point.Repository = Location;
                return point;
            }
            catch (Exception e) when (e is JsonFormatException || e is OverflowException || e is FormatException || e is IOException)
            {
                throw ManifestUnreadable(key, e);
            }
        }

        private VmQuiesceException ManifestUnreadable(string key, Exception e) =>
            new VmQuiesceException("RestorePointUnreadable", FailureKind.InvalidData, $"The restore point manifest '{Location}/{key}' cannot be read: {e.Message}", key, e);

        private static (int ChunkSize, RepositoryEncryption Encryption) ReadMarker(IObjectStorage storage, string text)
        {
            JsonObject config;
            long version;
            long chunkSize;
            try
            {
                config = JsonText.ParseObject(text);
                if (config.GetString("format") != BackupRepository.MarkerFormat)
                {
                    throw new JsonFormatException($"The member 'format' is not '{BackupRepository.MarkerFormat}'.");
                }

                version = config.GetInt64("formatVersion");
                chunkSize = config.GetInt64("chunkSize");
            }
            catch (JsonFormatException e)
            {
                throw ConfigInvalid(storage, e.Message, e);
            }

            if (version > RepositoryEncryption.EncryptedFormatVersion)
            {
                throw new VmQuiesceException("RepositoryFormatUnsupported", FailureKind.NotSupported, $"The repository '{storage.Location}' has format version {version}; this VmQuiesce reads up to version {RepositoryEncryption.EncryptedFormatVersion}.", storage.Location)
                {
                    Remedy = "Update VmQuiesce.",
                };
            }

            if (chunkSize < BackupRepository.MinChunkSize || chunkSize > BackupRepository.MaxChunkSize)
            {
                throw ConfigInvalid(storage, $"chunkSize {chunkSize}; expected {BackupRepository.MinChunkSize} to {BackupRepository.MaxChunkSize} bytes", null);
            }

            RepositoryEncryption encryption;
            try
            {
                encryption = RepositoryEncryption.FromMarker(config, version, (int)chunkSize, storage.Location);
            }
            catch (Exception e) when (e is JsonFormatException || e is FormatException)
            {
                throw ConfigInvalid(storage, e.Message, e);
            }

            if (!encryption.IsEncrypted)
            {
                HostKeyStore.RefuseDowngrade(storage.Location);
            }

            return ((int)chunkSize, encryption);
        }

        private static VmQuiesceException ConfigInvalid(IObjectStorage storage, string why, Exception? inner) =>
            new VmQuiesceException("RepositoryConfigInvalid", FailureKind.InvalidData, $"The repository file '{storage.Location}/{BackupRepository.MarkerName}' is not valid: {why}", storage.Location, inner);
    }
}
