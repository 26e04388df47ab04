using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Backup
{
    /// <summary>How a change-tracked backup reads (-ChangeTracking, -VerifyChangeTracking).</summary>
    public sealed class ChangeTrackingOptions
    {
        /// <summary>Read every disk in full anyway and fail loudly where the checkpoint missed a change.</summary>
        public bool Verify { get; init; }
    }

    // Change-tracked copying: each disk is its guest-visible content; a chunk the checkpoint says is unchanged is
    // the previous point's chunk, one less than half changed is the previous chunk patched with what changed (only the
    // changed regions are read from the disk), and one at least half changed is read whole.
    public sealed partial class BackupEngine
    {
        /// <summary>
        /// Bytes of a disk whose map is asked of the source at once: few round trips (each is a block-status request to
        /// QEMU), while the map's memory stays bounded whatever the disk size (two windows' regions at most).
        /// </summary>
        private const long MapWindowBytes = 1L << 30;

        /// <summary>Missed extents named in a ChangeTrackingMissedChanges message; the rest are counted.</summary>
        private const int MissedExtentsShown = 16;

        /// <summary>The length of "yyyyMMddTHHmmssZ", how a restore point id begins.</summary>
        private const int StartSecondLength = 16;

        /// <summary>
        /// Opens the source's tracked view with the repository's side of the request read beside it, on a thread of its own
        /// (the source blocks pool threads too, and a starved pool adds threads only slowly). The look at every chunk of the
        /// base (<see cref="MissingBaseChunk"/>) grows with the disk and only the copy needs it, so it goes on after the
        /// source has the request, while the guest is frozen and the view is made: <paramref name="baseCheck"/>, which the
        /// caller awaits before the copy and before the repository lock is let go.
        /// </summary>
        private IConsistentView OpenTrackedView(IBackupSource source, QuiesceOptions options, ChangeTrackingOptions tracking, CancellationToken cancel, out Task<string?> baseCheck)
        {
            if (!(source is IChangeTrackingSource tracked))
            {
                throw new VmQuiesceException("ChangeTrackingNotSupported", FailureKind.NotSupported,
                    $"VM '{source.VmName}' is backed up through a {source.Kind} source, which tracks no changed blocks; change tracking works for running QEMU VMs.", source.VmName)
                {
                    Remedy = "Leave out -ChangeTracking for this VM.",
                };
            }

            var request = new TaskCompletionSource<ChangeTrackingRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
            baseCheck = OwnThread.Start(() =>
            {
                ChangeTrackingRequest previous;
                try
                {
                    previous = PreviousCheckpoints(source, tracking.Verify);
                }
                catch (Exception e)
                {
                    request.SetException(e);
                    throw;
                }

                request.SetResult(previous);
                return MissingBaseChunk(previous);
            });
            try
            {
                return tracked.OpenTrackedView(options, request.Task, cancel);
            }
            catch
            {
                // A source that failed before it looked must not leave the read running past the repository lock.
                OwnThread.WaitEnded(baseCheck);
                throw;
            }
        }

        /// <summary>
        /// The VM's latest restore point that recorded checkpoints, with its chunk lists; a point of another chunk size
        /// cannot be a base (the request says why). Whether its chunks are all stored is <see cref="MissingBaseChunk"/>.
        /// </summary>
        internal ChangeTrackingRequest PreviousCheckpoints(IBackupSource source, bool verify)
        {
            IReadOnlyList<string> ids = _repository.ListRestorePointIds();
            RestorePoint? latest = LatestTrackedPoint(source, ids);
            if (latest == null)
            {
                return new ChangeTrackingRequest(Array.Empty<PreviousDisk>(), null, verify);
            }

            var tracked = latest.Files.Where(f => f.ChangeTracking != null).ToList();
            (string Reason, string Detail)? hostSide = HostSideMismatch(source, latest, ids);
            if (hostSide is (string reason, string detail))
            {
                return new ChangeTrackingRequest(Array.Empty<PreviousDisk>(), detail, verify, reason);
            }

            string? why = latest.ChunkSize != _repository.ChunkSize ? $"restore point {latest.Id} has chunk size {latest.ChunkSize}, the repository {_repository.ChunkSize}" : null;
            return new ChangeTrackingRequest(why != null ? Array.Empty<PreviousDisk>() : tracked.Select(f => new PreviousDisk(latest.Id, f.ChangeTrackingValue!, f.Chunks)).ToList(), why, verify);
        }

        /// <summary>
        /// Why the request's base cannot be one after all: it names a chunk the store does not hold (a look per distinct
        /// chunk). Null when every chunk is there, or when there is no base.
        /// </summary>
        internal string? MissingBaseChunk(ChangeTrackingRequest request)
        {
            string? missing = request.Previous.SelectMany(disk => disk.Chunks).OfType<string>().Distinct(StringComparer.Ordinal).FirstOrDefault(hash => !_repository.ChunkSink.Contains(hash));
            return missing == null ? null : $"restore point {request.Previous[0].PointId} names the chunk {missing}, which is not in the repository";
        }

        /// <summary>
        /// The view's files, each disk that builds on the base read in full instead when <paramref name="baseCheck"/> found
        /// the base incomplete: the source had already taken its checkpoint as for an incremental read, which a full read
        /// can use as well (the new checkpoint is the same; the old one goes on success, records again on failure).
        /// </summary>
        private static IReadOnlyList<ViewFile> ReadInFullWhereBaseIncomplete(IReadOnlyList<ViewFile> files, Task<string?> baseCheck)
        {
            string? missing = baseCheck.GetAwaiter().GetResult();
            return missing == null ? files
                : files.Select(file => file.Tracked?.Base == null ? file : file.WithTracked(new FullReadDisk(file.Tracked, ChangeTrackingRecord.Reasons.PreviousPointDamaged, missing))).ToList();
        }

        /// <summary>
        /// The VM's change-tracked point with the latest start. An id begins with its point's start, to the second
        /// (<see cref="BackupRepository.NewId"/>), so manifests are read newest first and only down to that second: a
        /// repository of many points costs a few reads, not one per point. Ids that do not begin so are all read.
        /// A manifest whose content is another point (a stray copy) is no point of the VM.
        /// </summary>
        private RestorePoint? LatestTrackedPoint(IBackupSource source, IReadOnlyList<string> ids)
        {
            RestorePoint? latest = null;
            foreach (string id in ids.OrderBy(id => StartSecondOf(id) != null).ThenByDescending(id => id, StringComparer.Ordinal))
            {
                if (latest != null && StartSecondOf(latest.Id) is string found && StartSecondOf(id) is string second && string.CompareOrdinal(second, found) < 0)
                {
                    break;
                }

                RestorePoint point;
                try
                {
                    point = _repository.GetRestorePoint(id);
                }
                catch (VmQuiesceException e) when (e.ErrorId == "RestorePointIdMismatch")
                {
                    continue;
                }

                if (point.VmName == source.VmName && point.SourceKind == source.Kind && point.Files.Any(f => f.ChangeTracking != null) && (latest == null || point.StartTime > latest.StartTime))
                {
                    latest = point;
                }
            }

            return latest;
        }

        /// <summary>"yyyyMMddTHHmmssZ", the start second an id of <see cref="BackupRepository.NewId"/> begins with; null for an id that does not.</summary>
        private static string? StartSecondOf(string id) =>
            id.Length > StartSecondLength && id[StartSecondLength] == '-'
                && DateTime.TryParseExact(id.Substring(0, StartSecondLength), "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.None, out _)
                ? id.Substring(0, StartSecondLength) : null;

        /// <summary>Where this host's record of the VM's checkpoints disagrees with the repository's latest tracked point (or is missing or unusable); null when they agree.</summary>
        private (string Reason, string Detail)? HostSideMismatch(IBackupSource source, RestorePoint latest, IReadOnlyList<string> ids)
        {
            HostCheckpointRecord? record;
            try
            {
                record = HostCheckpointRecord.Load(HostCheckpointFolder, source.Kind, source.VmName);
            }
            catch (InvalidDataException e)
            {
                return (ChangeTrackingRecord.Reasons.HostRecordInvalid, e.Message);
            }

            return record == null
                ? (ChangeTrackingRecord.Reasons.HostRecordMissing, $"this host has no record of the VM's checkpoints ({HostCheckpointRecord.PathOf(HostCheckpointFolder, source.Kind, source.VmName)}), so restore point {latest.Id} cannot be checked against them")
                : record.Mismatch(_repository.Location, latest, id => ids.Contains(id, StringComparer.Ordinal));
        }

        /// <summary>
        /// Records on this host which point the VM's new checkpoints belong to. The point is already published and sound,
        /// so a record that cannot be written is a warning: the next backup then finds the sides disagree and reads in full.
        /// </summary>
        private void SaveHostCheckpoints(RestorePoint point, IBackupSource source, IOperationHost host)
        {
            var disks = point.Files.Select(f => f.ChangeTrackingValue).OfType<ChangeTrackingRecord>().ToList();
            if (disks.Count == 0)
            {
                return;
            }

            try
            {
                new HostCheckpointRecord(source.Kind, source.VmName, _repository.Location, point.Id, disks).Save(HostCheckpointFolder);
            }
            catch (VmQuiesceException e)
            {
                host.WriteWarning($"VM '{point.VmName}': restore point {point.Id} is complete, but this host's record of its checkpoints could not be written ({e.Message}); the next change-tracked backup reads the disks in full.");
            }
        }

        /// <summary>A warning per disk read in full, naming the reason; the missed changes a verification found, as the failure to report.</summary>
        private static VmQuiesceException? ReportChangeTracking(RestorePoint point, IOperationHost host)
        {
            var missed = new List<string>();
            foreach (RestorePointFile file in point.Files.Where(f => f.ChangeTrackingValue?.ModeValue == ChangeTrackingMode.Full))
            {
                ChangeTrackingRecord record = file.ChangeTrackingValue!;
                if (record.Reason == ChangeTrackingRecord.Reasons.VerifyFailed)
                {
                    missed.Add($"disk {record.Disk}: {record.Detail}");
                }
                else
                {
                    host.WriteWarning($"VM '{point.VmName}': disk {record.Disk} was read in full ({record.Reason}: {record.Detail}); only chunks the repository lacked were stored.");
                }
            }

            return missed.Count == 0 ? null : new VmQuiesceException("ChangeTrackingMissedChanges", FailureKind.InvalidData,
                $"Change tracking of VM '{point.VmName}' missed changes the full read found: {string.Join("; ", missed)}. Restore point {point.Id} holds the full read and is sound; the points before it were built on the checkpoint and may lack these changes.", point)
            {
                Remedy = "Verify the earlier restore points against the VM (Test-VmBackup), and keep -VerifyChangeTracking on for this VM until the cause is known.",
            };
        }

        /// <summary>Who owns the disk's image, for the restore to give the written image back to (null when unknown).</summary>
        private static FileOwner? TrackedOwner(ViewFile file) =>
            HostPlatform.IsLinux && UnixFiles.StatFollowingLinks(file.OriginalPath) is FileStatus status && status.IsRegularFile
                ? new FileOwner(status.Uid, status.Gid, status.Permissions)
                : null;

        /// <summary>A tracked disk read in full after all, without its base (<see cref="ReadInFullWhereBaseIncomplete"/>).</summary>
        private sealed class FullReadDisk : TrackedDisk
        {
            private readonly TrackedDisk _disk;

            public FullReadDisk(TrackedDisk disk, string reason, string detail)
            {
                _disk = disk;
                Record = disk.Record.ReadInFull(reason, detail);
            }

            public override long Size => _disk.Size;

            public override ChangeTrackingRecord Record { get; }

            public override PreviousDisk? Base => null;

            // Nothing to compare with: a verification needs the base.
            public override bool Verify => false;

            public override IReadOnlyList<DiskRegion> Map(long offset, long length, CancellationToken cancel) => _disk.Map(offset, length, cancel);

            protected override Task ReadCoreAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel) =>
                _disk.ReadAsync(offset, buffer, bufferOffset, count, cancel);
        }

        /// <summary>What the copy learns about one tracked disk.</summary>
        private sealed class TrackedCopy
        {
            private readonly ConcurrentQueue<DiskRegion> _missed = new ConcurrentQueue<DiskRegion>();
            private long _changedBytes;

            public TrackedCopy(TrackedDisk disk)
            {
                Disk = disk;
            }

            public TrackedDisk Disk { get; }

            public void CountChanged(long bytes) => Interlocked.Add(ref _changedBytes, bytes);

            public void Missed(long offset, long length) => _missed.Enqueue(new DiskRegion(offset, length, changed: true, zero: false));

            public ChangeTrackingRecord Result()
            {
                var missed = _missed.OrderBy(m => m.Offset).ToList();
                string? detail = missed.Count == 0 ? null
                    : $"{missed.Count} region(s) changed that the checkpoint marked unchanged: " +
                      string.Join(", ", missed.Take(MissedExtentsShown).Select(m => string.Format(CultureInfo.InvariantCulture, "{0}+{1}", m.Offset, m.Length))) +
                      (missed.Count > MissedExtentsShown ? ", ..." : "");
                return Disk.Record.Completed(Disk.BytesRead, Disk.Base != null ? Interlocked.Read(ref _changedBytes) : (long?)null, Disk.Verify, detail);
            }
        }

        private sealed partial class CopyRun
        {
            public TrackedCopy?[] Tracked { get; }

            /// <summary>Queues the chunks of a tracked disk: unchanged ones take the base's chunk at once, the rest go to the workers with their regions.</summary>
            private void DispatchTrackedFile(int fileIndex, TrackedDisk disk, CancellationToken cancel, Action chunkDone)
            {
                var state = new TrackedCopy(disk);
                Tracked[fileIndex] = state;
                long size = disk.Size;
                int chunks = _chunkLists[fileIndex].Length;
                if (disk.Base != null && disk.Base.Chunks.Count != chunks)
                {
                    throw new VmQuiesceException("ChangeTrackingBaseDamaged", FailureKind.InvalidData,
                        $"Restore point {disk.Base.PointId} lists {disk.Base.Chunks.Count} chunks for disk {disk.Record.Disk}, but the disk has {chunks} of {_chunkSize} bytes.", disk.Base.PointId);
                }

                if (chunks == 0)
                {
                    return;
                }

                int windowChunks = (int)Math.Max(1, MapWindowBytes / _chunkSize);
                Task<IReadOnlyList<DiskRegion>> MapWindow(int first) => Task.Run(() =>
                {
                    long windowStart = (long)first * _chunkSize;
                    return disk.Map(windowStart, Math.Min((long)windowChunks * _chunkSize, size - windowStart), cancel);
                });

                // The next window's map is asked while this one's chunks are queued.
                Task<IReadOnlyList<DiskRegion>> mapping = MapWindow(0);
                try
                {
                    for (int first = 0; first < chunks; first += windowChunks)
                    {
                        IReadOnlyList<DiskRegion> regions = mapping.GetAwaiter().GetResult();
                        if (first + windowChunks < chunks)
                        {
                            mapping = MapWindow(first + windowChunks);
                        }

                        DispatchTrackedWindow(fileIndex, state, regions, first, Math.Min(chunks, first + windowChunks), cancel, chunkDone);
                    }
                }
                catch
                {
                    // A map still being asked must not outlive the copy (the view's connection closes after it).
                    OwnThread.WaitEnded(mapping);
                    throw;
                }
            }

            /// <summary>Queues chunks [first, end) of a tracked disk from the map of their window.</summary>
            private void DispatchTrackedWindow(int fileIndex, TrackedCopy state, IReadOnlyList<DiskRegion> regions, int first, int end, CancellationToken cancel, Action chunkDone)
            {
                TrackedDisk disk = state.Disk;
                int next = 0;
                for (int i = first; i < end; i++)
                {
                    long start = (long)i * _chunkSize;
                    int length = (int)Math.Min(_chunkSize, disk.Size - start);
                    IReadOnlyList<DiskRegion> slice = Slice(regions, ref next, start, start + length);
                    long changedBytes = ChangedBytes(slice);
                    bool changed = changedBytes > 0;
                    if (disk.Base != null)
                    {
                        state.CountChanged(changedBytes);
                    }

                    if ((disk.Base != null && !changed && !disk.Verify) || (disk.Base == null && slice.All(r => r.Zero)))
                    {
                        // Unchanged since the base (its chunk), or nothing but zeroes (no chunk): nothing to read.
                        _chunkLists[fileIndex][i] = disk.Base?.Chunks[i];
                        Interlocked.Add(ref _bytesDone, length);
                        chunkDone();
                        continue;
                    }

                    _toStore.Add(new Job(fileIndex, i, start, length) { Regions = slice, ChangedBytes = changedBytes }, cancel);
                    chunkDone();
                }
            }

            /// <summary>The regions of [start, end), clipped; <paramref name="next"/> moves along the window's list.</summary>
            private static IReadOnlyList<DiskRegion> Slice(IReadOnlyList<DiskRegion> regions, ref int next, long start, long end)
            {
                var slice = new List<DiskRegion>();
                while (next < regions.Count && regions[next].End <= start)
                {
                    next++;
                }

                for (int r = next; r < regions.Count && regions[r].Offset < end; r++)
                {
                    long from = Math.Max(start, regions[r].Offset);
                    long to = Math.Min(end, regions[r].End);
                    slice.Add(new DiskRegion(from, to - from, regions[r].Changed, regions[r].Zero));
                }

                if (slice.Count == 0 || slice[0].Offset != start || slice[slice.Count - 1].End != end || HasGap(slice))
                {
                    throw new VmQuiesceException("ChangeTrackingMapInvalid", FailureKind.ProtocolError,
                        $"The source's map of the disk does not cover bytes {start} to {end} without gaps.", null);
                }

                return slice;
            }

            /// <summary>Whether a region ends where the next does not start. A loop, not Zip: LINQ over bools is compiled at run time.</summary>
            private static bool HasGap(List<DiskRegion> slice)
            {
                for (int i = 1; i < slice.Count; i++)
                {
                    if (slice[i - 1].End != slice[i].Offset)
                    {
                        return true;
                    }
                }

                return false;
            }

            /// <summary>
            /// Builds one chunk of a tracked disk in <paramref name="data"/>: the changed regions read from the disk, zero
            /// regions cleared, the rest the base's chunk (checked: opened under its seal, or hashed). The reads are all sent first, so the
            /// base is loaded and checked while the disk answers. A chunk at least half changed is read whole instead: reading
            /// its unchanged rest from the VM's point-in-time view costs less than loading the base (a file read past the page
            /// cache, opened and unpacked), and it still reads at most twice what changed. With -VerifyChangeTracking everything
            /// is read, and where the checkpoint said "unchanged" the bytes must equal the base's.
            /// </summary>
            private void ReadTrackedChunk(Job job, byte[] data, ref byte[]? baseData, ref byte[] scratch, HashAlgorithm sha, CancellationToken cancel)
            {
                TrackedCopy state = Tracked[job.FileIndex]!;
                TrackedDisk disk = state.Disk;
                string? baseHash = disk.Base?.Chunks[job.ChunkIndex];
                // Patched (less than half changed): the unchanged regions come from the base's chunk; otherwise every region is read.
                bool patch = disk.Base != null && !disk.Verify && job.ChangedBytes * 2 < job.Length;
                var reads = new List<Task>();
                foreach (DiskRegion region in job.Regions!)
                {
                    int at = (int)(region.Offset - job.Offset);
                    if (!patch || region.Changed)
                    {
                        if (region.Zero)
                        {
                            Array.Clear(data, at, (int)region.Length);
                        }
                        else
                        {
                            reads.Add(disk.ReadAsync(region.Offset, data, at, (int)region.Length, cancel));
                        }
                    }
                }

                try
                {
                    if (baseHash != null && (disk.Verify || (patch && job.Regions!.Any(r => !r.Changed))))
                    {
                        baseData ??= new byte[_chunkSize];
                        LoadBase(disk.Base!, baseHash, job, baseData, ref scratch, sha);
                    }
                    else if (disk.Base != null && (disk.Verify || patch))
                    {
                        // The base has no chunk here (zeroes then): what the checkpoint left unchanged is still zeroes.
                        baseData ??= new byte[_chunkSize];
                        Array.Clear(baseData, 0, job.Length);
                    }
                }
                catch
                {
                    // Never leave a read writing into a buffer the worker reuses.
                    WaitQuietly(reads);
                    throw;
                }

                WaitQuietly(reads);
                reads.FirstOrDefault(r => r.IsFaulted || r.IsCanceled)?.GetAwaiter().GetResult();

                foreach (DiskRegion region in job.Regions!)
                {
                    int at = (int)(region.Offset - job.Offset);
                    if (patch && !region.Changed)
                    {
                        Buffer.BlockCopy(baseData!, at, data, at, (int)region.Length);
                    }
                    else if (disk.Verify && !region.Changed && FirstDifference(data, baseData!, at, (int)region.Length) is (int from, int to))
                    {
                        state.Missed(job.Offset + from, to - from);
                    }
                }
            }

            /// <summary>Bytes of the regions that changed since the checkpoint.</summary>
            private static long ChangedBytes(IReadOnlyList<DiskRegion> regions)
            {
                long changed = 0;
                foreach (DiskRegion region in regions)
                {
                    changed += region.Changed ? region.Length : 0;
                }

                return changed;
            }

            /// <summary>Waits until every read has ended, failed or not: the caller throws the failure it wants.</summary>
            private static void WaitQuietly(List<Task> reads)
            {
                try
                {
                    Task.WaitAll(reads.ToArray());
                }
                catch (AggregateException)
                {
                    // Every read has ended (WaitAll waits for all of them); the caller throws the failure.
                }
            }

            private void LoadBase(PreviousDisk previous, string hash, Job job, byte[] buffer, ref byte[] scratch, HashAlgorithm sha)
            {
                int length;
                try
                {
                    length = _store.Read(hash, buffer, ref scratch);
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
                {
                    throw BaseDamaged(previous, hash, e.Message);
                }

                // A chunk an encrypted repository opened is the one its name says: the seal binds it to the name, and whoever
                // could seal other content under it holds the key that names chunks too. Hashing it again would cost as much
                // as hashing the patched chunk, and check nothing more. A plain repository's chunk has only its hash.
                if (length != job.Length || (!_store.ReadAuthenticates && ChunkStore.Hash(sha, buffer, length) != hash))
                {
                    throw BaseDamaged(previous, hash, "its content does not match its name");
                }
            }

            private static VmQuiesceException BaseDamaged(PreviousDisk previous, string hash, string why) =>
                new VmQuiesceException("ChangeTrackingBaseDamaged", FailureKind.InvalidData,
                    $"The chunk {hash} of restore point {previous.PointId}, which this incremental backup builds on, is damaged ({why}); nothing was stored.", previous.PointId)
                {
                    Remedy = "Check the repository (Test-VmBackup); remove the damaged point, and the next backup reads the disks in full.",
                };

            /// <summary>The first and one past the last byte where the two differ within [at, at + length), or null.</summary>
            private static (int From, int To)? FirstDifference(byte[] a, byte[] b, int at, int length)
            {
                int first = -1;
                int last = -1;
                for (int i = at; i < at + length; i++)
                {
                    if (a[i] != b[i])
                    {
                        first = first < 0 ? i : first;
                        last = i;
                    }
                }

                return first < 0 ? ((int, int)?)null : (first, last + 1);
            }
        }
    }
}
