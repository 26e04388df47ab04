using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
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
    // the previous point's chunk, a partly changed one is the previous chunk patched with what changed, and only
    // the changed regions are read from the disk.
    public sealed partial class BackupEngine
    {
        /// <summary>Chunks whose map is asked of the source at once: bounds the map's memory whatever the disk size.</summary>
        private const int MapWindowChunks = 64;

        /// <summary>Missed extents named in a ChangeTrackingMissedChanges message; the rest are counted.</summary>
        private const int MissedExtentsShown = 16;

        private IConsistentView OpenTrackedView(IBackupSource source, QuiesceOptions options, ChangeTrackingOptions tracking, CancellationToken cancel)
        {
            if (!(source is IChangeTrackingSource tracked))
            {
                throw new VmQuiesceException("ChangeTrackingNotSupported", FailureKind.NotSupported,
                    $"VM '{source.VmName}' is backed up through a {source.Kind} source, which tracks no changed blocks; change tracking works for running QEMU VMs.", source.VmName)
                {
                    Remedy = "Leave out -ChangeTracking for this VM.",
                };
            }

            return tracked.OpenTrackedView(options, PreviousCheckpoints(source, tracking.Verify), cancel);
        }

        /// <summary>
        /// The VM's latest restore point that recorded checkpoints, with its chunk lists; a point whose chunks are
        /// not all in the store cannot be a base (the request says why).
        /// </summary>
        internal ChangeTrackingRequest PreviousCheckpoints(IBackupSource source, bool verify)
        {
            RestorePoint? latest = _repository.ListRestorePoints()
                .Where(p => p.VmName == source.VmName && p.SourceKind == source.Kind && p.Files.Any(f => f.ChangeTracking != null))
                .OrderByDescending(p => p.StartTime)
                .FirstOrDefault();
            if (latest == null)
            {
                return new ChangeTrackingRequest(Array.Empty<PreviousDisk>(), null, verify);
            }

            var tracked = latest.Files.Where(f => f.ChangeTracking != null).ToList();
            string? missing = tracked.SelectMany(f => f.Chunks).OfType<string>().Distinct(StringComparer.Ordinal).FirstOrDefault(hash => !_repository.ChunkSink.Contains(hash));
            string? why = latest.ChunkSize != _repository.ChunkSize ? $"restore point {latest.Id} has chunk size {latest.ChunkSize}, the repository {_repository.ChunkSize}"
                : missing != null ? $"restore point {latest.Id} names the chunk {missing}, which is not in the repository"
                : null;
            return new ChangeTrackingRequest(why != null ? Array.Empty<PreviousDisk>() : tracked.Select(f => new PreviousDisk(latest.Id, f.ChangeTrackingValue!, f.Chunks)).ToList(), why, verify);
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

        /// <summary>What the copy learns about one tracked disk.</summary>
        private sealed class TrackedCopy
        {
            private readonly ConcurrentQueue<(long Offset, long Length)> _missed = new ConcurrentQueue<(long, long)>();
            private long _changedBytes;

            public TrackedCopy(TrackedDisk disk)
            {
                Disk = disk;
            }

            public TrackedDisk Disk { get; }

            public void CountChanged(long bytes) => Interlocked.Add(ref _changedBytes, bytes);

            public void Missed(long offset, long length) => _missed.Enqueue((offset, length));

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

                for (int first = 0; first < chunks; first += MapWindowChunks)
                {
                    long windowStart = (long)first * _chunkSize;
                    IReadOnlyList<DiskRegion> regions = disk.Map(windowStart, Math.Min((long)MapWindowChunks * _chunkSize, size - windowStart), cancel);
                    int next = 0;
                    for (int i = first; i < Math.Min(chunks, first + MapWindowChunks); i++)
                    {
                        long start = (long)i * _chunkSize;
                        int length = (int)Math.Min(_chunkSize, size - start);
                        IReadOnlyList<DiskRegion> slice = Slice(regions, ref next, start, start + length);
                        bool changed = slice.Any(r => r.Changed);
                        if (disk.Base != null)
                        {
                            state.CountChanged(slice.Where(r => r.Changed).Sum(r => r.Length));
                        }

                        if ((disk.Base != null && !changed && !disk.Verify) || (disk.Base == null && slice.All(r => r.Zero)))
                        {
                            // Unchanged since the base (its chunk), or nothing but zeroes (no chunk): nothing to read.
                            _chunkLists[fileIndex][i] = disk.Base?.Chunks[i];
                            Interlocked.Add(ref _bytesDone, length);
                            chunkDone();
                            continue;
                        }

                        _toStore.Add(new Job(fileIndex, i, start, length) { Regions = slice }, cancel);
                        chunkDone();
                    }
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

                if (slice.Count == 0 || slice[0].Offset != start || slice[slice.Count - 1].End != end || slice.Zip(slice.Skip(1), (a, b) => a.End == b.Offset).Any(ok => !ok))
                {
                    throw new VmQuiesceException("ChangeTrackingMapInvalid", FailureKind.ProtocolError,
                        $"The source's map of the disk does not cover bytes {start} to {end} without gaps.", null);
                }

                return slice;
            }

            /// <summary>
            /// Builds one chunk of a tracked disk in <paramref name="data"/>: the base's chunk (checked against its hash),
            /// the changed regions read from the disk over it, zero regions cleared. With -VerifyChangeTracking everything
            /// is read, and where the checkpoint said "unchanged" the bytes must equal the base's.
            /// </summary>
            private void ReadTrackedChunk(Job job, byte[] data, ref byte[]? baseData, HashAlgorithm sha, CancellationToken cancel)
            {
                TrackedCopy state = Tracked[job.FileIndex]!;
                TrackedDisk disk = state.Disk;
                string? baseHash = disk.Base?.Chunks[job.ChunkIndex];
                bool readAll = disk.Base == null || disk.Verify;
                if (baseHash != null && (disk.Verify || job.Regions!.Any(r => !r.Changed)))
                {
                    baseData ??= new byte[_chunkSize];
                    LoadBase(disk.Base!, baseHash, job, baseData, sha);
                }
                else if (disk.Base != null)
                {
                    baseData ??= new byte[_chunkSize];
                    Array.Clear(baseData, 0, job.Length);
                }

                if (!readAll)
                {
                    Buffer.BlockCopy(baseData!, 0, data, 0, job.Length);
                }

                foreach (DiskRegion region in job.Regions!)
                {
                    int at = (int)(region.Offset - job.Offset);
                    if (!readAll && !region.Changed)
                    {
                        continue;
                    }

                    if (region.Zero)
                    {
                        Array.Clear(data, at, (int)region.Length);
                    }
                    else
                    {
                        disk.ReadAsync(region.Offset, data, at, (int)region.Length, cancel).GetAwaiter().GetResult();
                    }

                    if (disk.Verify && !region.Changed && FirstDifference(data, baseData!, at, (int)region.Length) is (int from, int to))
                    {
                        state.Missed(job.Offset + from, to - from);
                    }
                }
            }

            private void LoadBase(PreviousDisk previous, string hash, Job job, byte[] buffer, HashAlgorithm sha)
            {
                int length;
                try
                {
                    length = _store.Read(hash, buffer);
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
                {
                    throw BaseDamaged(previous, hash, e.Message);
                }

                if (length != job.Length || ChunkStore.Hash(sha, buffer, length) != hash)
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
