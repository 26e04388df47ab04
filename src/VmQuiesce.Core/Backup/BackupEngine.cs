using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Backup
{
    /// <summary>The steps of a backup, in order.</summary>
    public enum BackupPhase
    {
        /// <summary>Taking the repository's shared lock.</summary>
        Checking,

        /// <summary>The source quiesces the guest and makes the VM's files stable.</summary>
        Quiescing,

        Copying,

        /// <summary>The source releases what it made for the backup (overlays committed back, snapshots deleted).</summary>
        Completing,

        Done,
    }

    /// <summary>Where a backup stands, for Write-Progress.</summary>
    public sealed class BackupProgress : TransferProgress
    {
        public BackupProgress(string vmName, BackupPhase phase, long bytesDone, long bytesTotal, TimeSpan elapsed)
            : base(phase.ToString(), bytesDone, bytesTotal, elapsed)
        {
            VmName = vmName;
            Phase = phase;
        }

        public string VmName { get; }

        public BackupPhase Phase { get; }
    }

    /// <summary>A published restore point, and the release failure that came with it, if any.</summary>
    public sealed class BackupOutcome
    {
        public BackupOutcome(RestorePoint restorePoint, VmQuiesceException? releaseFailure)
        {
            RestorePoint = restorePoint;
            ReleaseFailure = releaseFailure;
        }

        public RestorePoint RestorePoint { get; }

        /// <summary>
        /// Set when the data was stored but the source could not release its snapshot/overlay: the point
        /// is valid and records the failure; the leftover blocks the next backup until it is cleaned up.
        /// </summary>
        public VmQuiesceException? ReleaseFailure { get; }

        /// <summary>
        /// Set when -VerifyChangeTracking found changes a checkpoint did not mark (ChangeTrackingMissedChanges): the
        /// point holds the full read and is sound; the tracking was wrong and the caller must say so loudly.
        /// </summary>
        public VmQuiesceException? ChangeTrackingFailure { get; init; }
    }

    /// <summary>
    /// Copies a source's consistent view into a repository: reads each file once (holes skipped with
    /// SEEK_DATA/SEEK_HOLE), hashes chunks on every core, stores only chunks the repository lacks, and
    /// publishes the restore point last. No step passes over every byte in order, so nothing serial
    /// holds the cores back (the whole-file digest is computed from the chunk list). Memory is a fixed pool of chunk buffers, whatever the image size.
    /// </summary>
    public sealed partial class BackupEngine
    {
        /// <summary>How long a source may take to release its snapshot once the copy is done or abandoned.</summary>
        private static readonly TimeSpan ReleaseTimeout = TimeSpan.FromMinutes(5);
        private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

        private static readonly int DefaultWorkers = Math.Max(2, Environment.ProcessorCount) + 2;

        /// <summary>
        /// Into object storage the uploads are the bottleneck, not the reads the two extra workers wait for, and each
        /// worker holds a chunk buffer to read into: one worker per core.
        /// </summary>
        private static readonly int ObjectStorageWorkers = Math.Max(2, Environment.ProcessorCount);

        private readonly IBackupTarget _repository;
        private readonly int _workers;

        public BackupEngine(BackupRepository repository)
            : this(repository, DefaultWorkers)
        {
        }

        /// <summary>Backs up straight into object storage: chunks uploaded by the flushers, several at once, the manifest last.</summary>
        public BackupEngine(ObjectRepository repository)
            : this(repository, ObjectStorageWorkers)
        {
        }

        internal BackupEngine(IBackupTarget repository, int workers)
        {
            _repository = repository;
            _workers = workers;
        }

        /// <summary>Where this host's records of the VMs' checkpoints are (<see cref="HostCheckpointRecord"/>); tests give their own.</summary>
        internal string HostCheckpointFolder { get; init; } = HostCheckpointRecord.DefaultFolder;

        /// <summary>
        /// Backs up one VM. Order: shared repository lock; open the view (the source refuses on what an earlier
        /// run left, <see cref="Leftovers"/>); copy; on any
        /// failure or cancellation Complete(false) and no restore point; else Complete(true) (the chunks made durable
        /// and the manifest made ready meanwhile), then publish the manifest. The manifest is published only after Complete
        /// returned, so the point always records whether the snapshot was released: the one made ready says it was, and
        /// is dropped when Complete throws. When Complete throws after the data is stored, the point is
        /// still published (its data is whole and consistent), records the release error, and the failure
        /// is returned in <see cref="BackupOutcome.ReleaseFailure"/> so the caller reports it.
        /// </summary>
        /// <param name="tracking">Read only what changed since the VM's last point where the source tracks changes (<see cref="IChangeTrackingSource"/>); null reads whole files.</param>
        public BackupOutcome Run(IBackupSource source, QuiesceOptions options, IOperationHost? host, CancellationToken cancel, ChangeTrackingOptions? tracking = null)
        {
            host ??= OperationHost.None;
            var clock = Stopwatch.StartNew();
            string vm = source.VmName;
            host.WriteProgress(new BackupProgress(vm, BackupPhase.Checking, 0, 0, clock.Elapsed));
            // The lock file is readable without the key: an encrypted repository's names no VM.
            string purpose = _repository.Encryption.IsEncrypted ? "Invoke-VmQuiescedBackup" : $"Invoke-VmQuiescedBackup of '{vm}'";
            using IDisposable shared = _repository.LockShared(purpose, host.WriteWarning);
            DateTime start = DateTime.UtcNow;
            host.WriteProgress(new BackupProgress(vm, BackupPhase.Quiescing, 0, 0, clock.Elapsed));
            Task<string?>? baseCheck = null;
            using IConsistentView view = tracking == null ? source.OpenConsistentView(options, cancel) : OpenTrackedView(source, options, tracking, cancel, out baseCheck);
            IReadOnlyList<RestorePointFile> files;
            long stored, newChunkBytes;
            QuiesceRecord quiesce;
            try
            {
                IReadOnlyList<ViewFile> viewFiles = baseCheck == null ? view.Files : ReadInFullWhereBaseIncomplete(view.Files, baseCheck);
                (files, stored, newChunkBytes) = Copy(vm, viewFiles, host, clock, cancel, view as IReleasePreparation);
                cancel.ThrowIfCancellationRequested();
                // Before the release: a view may finish its quiesce record beside the copy (a post-thaw hook), and a hook that failed fails the backup.
                quiesce = view.Quiesce;
            }
            catch
            {
                CompleteAfterFailure(view, vm, host, cancel);
                throw;
            }

            // The point's end is when its data was all stored: its manifest is made while the snapshot is released.
            DateTime copied = DateTime.UtcNow;
            RestorePoint PointReleased(VmQuiesceException? releaseFailure) => new RestorePoint(
                BackupRepository.NewId(start),
                vm,
                Environment.MachineName,
                source.Kind,
                start,
                copied,
                view.Snapshot,
                quiesce,
                // A source that has nothing to keep refuses -KeepSnapshot, so with it the snapshot is still on the VM.
                snapshotReleased: releaseFailure == null && !options.KeepSnapshot,
                releaseError: releaseFailure?.Message,
                _repository.ChunkSize,
                stored,
                newChunkBytes,
                files)
            {
                VmUuid = (view as IIdentifiedView)?.VmUuid,
                Machine = (view as IIdentifiedView)?.Machine,
                VmFolders = RestorePoint.FoldersOf(view.Files.Select(file => file.OriginalPath)),
            };

            RestorePoint point = PointReleased(null);
            host.WriteProgress(new BackupProgress(vm, BackupPhase.Completing, point.Size, point.Size, clock.Elapsed));
            VmQuiesceException? releaseFailure = null;
            // While the snapshot is released, the chunks are made durable and the manifest of a release that goes well is
            // made ready: one waits for the disk, one for the source, one for the CPU. The point exists only once published.
            Task durable = OwnThread.Start(_repository.MakeChunksDurable);
            Task<IPreparedManifest> prepared = OwnThread.Start(() => _repository.PrepareManifest(point));
            try
            {
                using var releaseDeadline = new CancellationTokenSource(ReleaseTimeout);
                using CancellationTokenRegistration stopping = cancel.Register(() => host.WriteWarning(StoppingWhileReleasing(vm)));
                try
                {
                    view.Complete(true, releaseDeadline.Token);
                }
                catch (Exception e) when (!(e is OutOfMemoryException))
                {
                    releaseFailure = e as VmQuiesceException ?? new VmQuiesceException(
                        "SnapshotReleaseFailed",
                        FailureKind.InvalidOperation,
                        $"The backup of '{vm}' stored all its data, but releasing the snapshot failed: {e.Message}",
                        vm,
                        e);
                }
            }
            finally
            {
                OwnThread.WaitEnded(durable);
                OwnThread.WaitEnded(prepared);
            }

            if (releaseFailure == null)
            {
                using IPreparedManifest manifest = prepared.GetAwaiter().GetResult();
                durable.GetAwaiter().GetResult();
                manifest.Publish();
            }
            else
            {
                // The manifest made ready says the release went well: it goes, and the point published records the failure.
                if (prepared.Status == TaskStatus.RanToCompletion)
                {
                    prepared.Result.Dispose();
                }

                durable.GetAwaiter().GetResult();
                point = PointReleased(releaseFailure);
                _repository.Publish(point);
            }

            SaveHostCheckpoints(point, source, host);
            host.WriteProgress(new BackupProgress(vm, BackupPhase.Done, point.Size, point.Size, clock.Elapsed));
            return new BackupOutcome(point, releaseFailure) { ChangeTrackingFailure = ReportChangeTracking(point, host) };
        }

        /// <summary>
        /// Releases what the source made after a failed or cancelled copy. The copy's failure is what the caller
        /// gets; what could not be released reaches the user as a warning, with what to run.
        /// </summary>
        private static void CompleteAfterFailure(IConsistentView view, string vm, IOperationHost host, CancellationToken cancel)
        {
            if (cancel.IsCancellationRequested)
            {
                host.WriteWarning(StoppingWhileReleasing(vm));
            }

            // Release even when the user cancelled: the source gets its own bounded time to clean up.
            using var releaseDeadline = new CancellationTokenSource(ReleaseTimeout);
            try
            {
                view.Complete(false, releaseDeadline.Token);
            }
            catch (OperationCanceledException) when (releaseDeadline.IsCancellationRequested)
            {
                host.WriteWarning($"The backup of VM '{vm}' did not finish, and releasing what it made for it did not finish within {ReleaseTimeout.TotalMinutes:0} minutes; " +
                    "the source tries once more as the backup ends and names anything it cannot release.");
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                string remedy = (e as VmQuiesceException)?.Remedy is string what ? " To release it: " + what : string.Empty;
                host.WriteWarning($"The backup of VM '{vm}' did not finish, and releasing what it made for it failed too: {e.Message}{remedy}");
            }
        }

        private static string StoppingWhileReleasing(string vm) =>
            $"Stopping the backup of VM '{vm}': first the snapshot or overlays it made are released (up to {ReleaseTimeout.TotalMinutes:0} minutes), so the VM is left as it was. " +
            "If the process is ended before that, the next backup of the VM names what is left and the command that releases it.";

        /// <summary>Copies the files into the chunk store; returns their chunk lists, the bytes newly stored and the data they hold.</summary>
        /// <param name="release">Told once every chunk's read is queued (the workers still reading the last ones), and once the workers have ended.</param>
        internal (IReadOnlyList<RestorePointFile> Files, long Stored, long NewChunkBytes) Copy(string vm, IReadOnlyList<ViewFile> viewFiles, IOperationHost host, Stopwatch clock, CancellationToken cancel, IReleasePreparation? release)
        {
            int chunkSize = _repository.ChunkSize;
            CheckRelativePaths(viewFiles, vm);
            // Loops, not LINQ over (size, owner) pairs: the framework's generic code over a struct is compiled as the copy
            // starts (about 5 ms before the first chunk), where over our classes it is precompiled.
            var sizes = new long[viewFiles.Count];
            var owners = new FileOwner?[viewFiles.Count];
            var chunkLists = new string?[viewFiles.Count][];
            for (int i = 0; i < viewFiles.Count; i++)
            {
                ViewFile file = viewFiles[i];
                (sizes[i], owners[i]) = file.Tracked != null ? (file.Tracked.Size, file.Owner ?? TrackedOwner(file)) : Inspect(file, vm);
                chunkLists[i] = new string?[(sizes[i] + chunkSize - 1) / chunkSize];
            }

            long total = 0;
            foreach (long size in sizes)
            {
                total += size;
            }

            host.WriteProgress(new BackupProgress(vm, BackupPhase.Copying, 0, total, clock.Elapsed));
            var copy = new CopyRun(_repository.ChunkSink, viewFiles, chunkLists, _workers, chunkSize, new TrackedCopy[viewFiles.Count], (hash, damage) => host.WriteWarning(
                $"The repository '{_repository.Location}' held chunk {hash} damaged ({damage}); the backup of '{vm}' stored it anew from its data, which repairs every restore point that uses it."));
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            Task[] workers = OwnThread.StartEach(_workers, () => copy.Guard(stop, () => copy.StoreChunks(stop.Token)));
            Task[] flushers = OwnThread.StartEach(_repository.ChunkSink.Publishers, () => copy.Guard(stop, () => copy.PublishChunks(stop.Token)));
            var lastReport = TimeSpan.Zero;
            copy.Guard(stop, () =>
            {
                try
                {
                    for (int f = 0; f < viewFiles.Count; f++)
                    {
                        copy.DispatchFile(f, sizes[f], stop.Token, () =>
                        {
                            if (clock.Elapsed - lastReport >= ProgressInterval)
                            {
                                lastReport = clock.Elapsed;
                                host.WriteProgress(new BackupProgress(vm, BackupPhase.Copying, copy.BytesDone, total, clock.Elapsed));
                            }
                        });
                    }

                    release?.PrepareRelease();
                }
                finally
                {
                    copy.FinishDispatching();
                }
            });
            Task.WaitAll(workers);
            release?.ReadsEnded();
            copy.FinishWriting();
            Task.WaitAll(flushers);
            copy.AbandonUnpublished();
            cancel.ThrowIfCancellationRequested();
            copy.ThrowIfFailed(_repository.Location);
            host.WriteProgress(new BackupProgress(vm, BackupPhase.Copying, total, total, clock.Elapsed));
            var files = viewFiles.Select((file, i) => new RestorePointFile(file.RelativePath, file.OriginalPath, sizes[i], chunkLists[i])
            {
                Format = file.Format,
                RestoreAsValue = file.RestoreAs,
                ChangeTrackingValue = copy.Tracked[i]?.Result(),
                // A tracked disk's unchanged chunks are not looked at, so their blocks are not counted: a restore assumes them whole.
                AllocatedBytes = file.Tracked != null ? null : copy.AllocatedBytes(i),
                OwnerValue = owners[i],
            }).ToList();
            return (files, copy.StoredBytes, copy.NewChunkBytes);
        }

        /// <summary>A restore writes each file under its relative path: they must be relative, inside, and distinct.</summary>
        private static void CheckRelativePaths(IReadOnlyList<ViewFile> viewFiles, string vm)
        {
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (ViewFile file in viewFiles)
            {
                string path = file.RelativePath;
                bool valid = path.Length > 0 && !path.StartsWith("/", StringComparison.Ordinal) && path.IndexOf('\\') < 0 && path.IndexOf(':') < 0
                    && path.Split('/').All(part => part.Length > 0 && part != "." && part != "..");
                if (!valid || !seen.Add(path))
                {
                    throw new VmQuiesceException(
                        "InvalidViewFile",
                        FailureKind.InvalidData,
                        $"The source of VM '{vm}' gave the file path '{path}' ({file.ReadPath}); expected a unique relative path with '/' separators and no '.' or '..' parts.",
                        file.ReadPath);
                }
            }
        }

        /// <summary>
        /// The file's size, and (Unix) who owns the original and its permissions, which the restore gives back: as the
        /// source found them (<see cref="ViewFile.Owner"/>), else from the original path when it exists (the read path may
        /// be a copy), else from the file read.
        /// </summary>
        private static (long Size, FileOwner? Owner) Inspect(ViewFile file, string vm)
        {
            try
            {
                // Looked at before opening too: opening a FIFO would wait for a writer.
                if (HostPlatform.IsLinux && UnixFiles.StatFollowingLinks(file.ReadPath) is FileStatus kind && !kind.IsRegularFile)
                {
                    throw NotAnImageFile(file, kind, vm);
                }

                using Stream stream = DevicePathFile.OpenRead(file.ReadPath);
                if (!HostPlatform.IsLinux)
                {
                    return (stream.Length, null);
                }

                FileStatus? read = stream is FileStream opened ? UnixFiles.StatAt((int)opened.SafeFileHandle.DangerousGetHandle(), string.Empty, out _) : null;
                if (read is FileStatus swapped && !swapped.IsRegularFile)
                {
                    throw NotAnImageFile(file, swapped, vm);
                }

                if (file.Owner != null)
                {
                    return (stream.Length, file.Owner);
                }

                FileStatus? status = UnixFiles.StatFollowingLinks(file.OriginalPath);
                if (status?.IsRegularFile != true)
                {
                    status = read;
                }

                return (stream.Length, status?.IsRegularFile == true ? new FileOwner(status.Value.Uid, status.Value.Gid, status.Value.Permissions) : null);
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                throw new VmQuiesceException("SourceFileNotFound", FailureKind.ObjectNotFound, $"The file '{file.OriginalPath}' of VM '{vm}' does not exist.", file.OriginalPath, e);
            }
        }

        /// <summary>
        /// A device, FIFO or folder where a disk image file should be: /dev/null read as an empty disk, and a block
        /// device's size reads as 0 through a file stream, so either would make an empty restore point.
        /// </summary>
        private static VmQuiesceException NotAnImageFile(ViewFile file, FileStatus found, string vm) =>
            new VmQuiesceException("SourceFileNotAFile", FailureKind.InvalidData,
                $"The file '{file.OriginalPath}' of VM '{vm}' is {found.KindName}, not a regular file; expected a disk image file. Nothing was stored.", file.OriginalPath)
            {
                Remedy = "Back up the VM's image files. A disk on a block device (an LVM volume, a whole disk) is not supported: copy it to an image file with qemu-img convert first.",
            };

        /// <summary>
        /// One copy: the calling thread finds the chunks that hold data, each worker reads a chunk into its own
        /// buffer, hashes it while it is still in the CPU cache, deduplicates and writes it, and the flushers
        /// make the chunks durable and publish them. Reading is spread over the workers, so no single thread's
        /// copying from the page cache sets the pace.
        /// </summary>
        private sealed partial class CopyRun
        {
            private readonly IChunkSink _store;
            private readonly IReadOnlyList<ViewFile> _files;
            private readonly string?[][] _chunkLists;
            private readonly int _chunkSize;
            private readonly BlockingCollection<Job> _toStore;
            private readonly BlockingCollection<PendingChunk> _toPublish;
            // Chunk ids this copy has stored or found (a set: each id maps to itself; bool values would be compiled at run time).
            private readonly ConcurrentDictionary<string, string> _seen = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
            private readonly long[] _allocated;
            private readonly Action<string, string> _repaired;
            private Exception? _failure;
            private long _bytesDone;
            private long _storedBytes;
            private long _newChunkBytes;

            /// <param name="repaired">Told (hash, what was wrong) for each damaged chunk this run stored anew.</param>
            public CopyRun(IChunkSink store, IReadOnlyList<ViewFile> files, string?[][] chunkLists, int workers, int chunkSize, TrackedCopy?[] tracked, Action<string, string> repaired)
            {
                _repaired = repaired;
                _store = store;
                Tracked = tracked;
                _files = files;
                _chunkLists = chunkLists;
                _chunkSize = chunkSize;
                _allocated = new long[files.Count];
                _toStore = new BlockingCollection<Job>(2 * workers);
                _toPublish = new BlockingCollection<PendingChunk>(store.WaitingCapacity);
            }

            public long BytesDone => Interlocked.Read(ref _bytesDone);

            public long StoredBytes => Interlocked.Read(ref _storedBytes);

            /// <summary>Bytes of the file's 4 KiB blocks that hold data: what a restore of it allocates.</summary>
            public long AllocatedBytes(int fileIndex) => Interlocked.Read(ref _allocated[fileIndex]);

            public long NewChunkBytes => Interlocked.Read(ref _newChunkBytes);

            public void Guard(CancellationTokenSource stop, Action action)
            {
                try
                {
                    action();
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    // Another stage failed or the user cancelled: that is what gets reported.
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _failure, e, null);
                    stop.Cancel();
                }
            }

            public void ThrowIfFailed(string repository)
            {
                if (_failure is VmQuiesceException known)
                {
                    throw known;
                }

                if (_failure != null && (RegularFile.IsDiskFull(_failure) || RegularFile.IsReadOnlyFileSystem(_failure)))
                {
                    throw BackupRepository.StorageFailure(repository, "store the chunks", _failure);
                }

                if (_failure != null)
                {
                    throw new VmQuiesceException("BackupCopyFailed", _failure is IOException ? FailureKind.ReadError : FailureKind.InvalidOperation, $"Copying into the repository failed: {_failure.Message}", null, _failure);
                }
            }

            public void FinishDispatching() => _toStore.CompleteAdding();

            /// <summary>Queues the chunks of a file that hold data; holes are done at once.</summary>
            public void DispatchFile(int fileIndex, long size, CancellationToken cancel, Action chunkDone)
            {
                ViewFile file = _files[fileIndex];
                if (file.Tracked != null)
                {
                    DispatchTrackedFile(fileIndex, file.Tracked, cancel, chunkDone);
                    return;
                }

                using (Stream stream = DevicePathFile.OpenRead(file.ReadPath))
                {
                    if (stream.Length != size)
                    {
                        throw Changed(file);
                    }
                }

                IReadOnlyList<FileExtent>? extents = UnixFiles.TryGetDataExtents(file.ReadPath, size);
                int extent = 0;
                int chunks = _chunkLists[fileIndex].Length;
                for (int i = 0; i < chunks; i++)
                {
                    long start = (long)i * _chunkSize;
                    int length = (int)Math.Min(_chunkSize, size - start);
                    if (extents != null)
                    {
                        while (extent < extents.Count && extents[extent].End <= start)
                        {
                            extent++;
                        }

                        if (extent == extents.Count || extents[extent].Offset >= start + length)
                        {
                            // A hole: nothing to read, nothing to store.
                            Interlocked.Add(ref _bytesDone, length);
                            chunkDone();
                            continue;
                        }
                    }

                    _toStore.Add(new Job(fileIndex, i, start, length), cancel);
                    chunkDone();
                }
            }

            private static VmQuiesceException Changed(ViewFile file) =>
                new VmQuiesceException("SourceFileChanged", FailureKind.ReadError, $"The file '{file.OriginalPath}' changed size while it was copied; the view is not stable.", file.OriginalPath);

            public void StoreChunks(CancellationToken cancel)
            {
                using HashAlgorithm sha = _store.NewIdHash();
                var data = new byte[_chunkSize];
                byte[] scratch = Array.Empty<byte>();
                byte[]? baseData = null;
                Stream? source = null;
                int sourceIndex = -1;
                try
                {
                    foreach (Job job in _toStore.GetConsumingEnumerable(cancel))
                    {
                        if (job.Regions != null)
                        {
                            ReadTrackedChunk(job, data, ref baseData, ref scratch, sha, cancel);
                            StoreChunk(job, data, sha, ref scratch, cancel);
                            continue;
                        }

                        if (job.FileIndex != sourceIndex)
                        {
                            source?.Dispose();
                            source = DevicePathFile.OpenRead(_files[job.FileIndex].ReadPath);
                            sourceIndex = job.FileIndex;
                        }

                        source!.Position = job.Offset;
                        if (source.ReadFully(data, job.Length) != job.Length)
                        {
                            throw Changed(_files[job.FileIndex]);
                        }

                        StoreChunk(job, data, sha, ref scratch, cancel);
                    }
                }
                finally
                {
                    source?.Dispose();
                }
            }

            private void StoreChunk(Job job, byte[] data, HashAlgorithm sha, ref byte[] scratch, CancellationToken cancel)
            {
                if (!ZeroBytes.IsAllZero(data, 0, job.Length))
                {
                    string hash = ChunkStore.Hash(sha, data, job.Length);
                    _chunkLists[job.FileIndex][job.ChunkIndex] = hash;
                    if (job.Regions == null)
                    {
                        // A tracked disk records no allocated bytes (its unchanged chunks are never looked at): nothing to count.
                        Interlocked.Add(ref _allocated[job.FileIndex], DataBlockBytes(data, job.Length));
                    }

                    // The first worker to see a hash in this run stores it; the rest only reference it.
                    if (_seen.TryAdd(hash, hash))
                    {
                        PendingChunk? pending = _store.Write(hash, data, job.Length, ref scratch, cancel);
                        if (pending != null)
                        {
                            try
                            {
                                _toPublish.Add(pending, cancel);
                            }
                            catch
                            {
                                _store.Abandon(pending);
                                throw;
                            }
                        }
                    }
                }

                Interlocked.Add(ref _bytesDone, job.Length);
            }

            /// <summary>Bytes of the 4 KiB blocks of a chunk that are not all zero (a restore leaves those as holes).</summary>
            private static long DataBlockBytes(byte[] data, int length)
            {
                long bytes = 0;
                for (int offset = 0; offset < length; offset += RestorePoint.AllocationBlock)
                {
                    if (!ZeroBytes.IsAllZero(data, offset, Math.Min(RestorePoint.AllocationBlock, length - offset)))
                    {
                        bytes += RestorePoint.AllocationBlock;
                    }
                }

                return bytes;
            }

            public void PublishChunks(CancellationToken cancel)
            {
                foreach (PendingChunk pending in _toPublish.GetConsumingEnumerable(cancel))
                {
                    long written = _store.Publish(pending);
                    if (written > 0)
                    {
                        Interlocked.Add(ref _storedBytes, written);
                        Interlocked.Add(ref _newChunkBytes, pending.DataLength);
                    }

                    if (pending.Repairs != null)
                    {
                        _repaired(pending.Hash, pending.Repairs);
                    }
                }
            }

            public void FinishWriting() => _toPublish.CompleteAdding();

            /// <summary>After a failure the flushers stop early: close and delete what they did not publish.</summary>
            public void AbandonUnpublished()
            {
                while (_toPublish.TryTake(out PendingChunk? pending))
                {
                    _store.Abandon(pending);
                }
            }
        }

        private sealed class Job
        {
            public Job(int fileIndex, int chunkIndex, long offset, int length)
            {
                FileIndex = fileIndex;
                ChunkIndex = chunkIndex;
                Offset = offset;
                Length = length;
            }

            public int FileIndex { get; }

            public int ChunkIndex { get; }

            public long Offset { get; }

            public int Length { get; }

            /// <summary>For a tracked disk: the chunk's regions, what the worker reads or takes from the base.</summary>
            public IReadOnlyList<DiskRegion>? Regions { get; init; }

            /// <summary>For a tracked disk: bytes of <see cref="Regions"/> changed since the checkpoint.</summary>
            public long ChangedBytes { get; init; }
        }
    }
}
