using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// A source that records, per disk, what the guest changed since the last restore point (a checkpoint), and
    /// can hand the engine each disk's guest-visible content with the changed regions marked.
    /// </summary>
    public interface IChangeTrackingSource
    {
        /// <summary>
        /// Like <see cref="IBackupSource.OpenConsistentView"/>, but each disk of the view is a <see cref="TrackedDisk"/>
        /// (<see cref="ViewFile.Tracked"/>), and a new checkpoint is set atomically with the point in time.
        /// <paramref name="request"/> is still being read from the repository while the source prepares: the source
        /// waits for it only where it decides how each disk is read.
        /// </summary>
        IConsistentView OpenTrackedView(QuiesceOptions options, Task<ChangeTrackingRequest> request, CancellationToken cancel);
    }

    /// <summary>What the repository knows about the previous point of the VM, for the source to check its checkpoints against.</summary>
    public sealed class ChangeTrackingRequest
    {
        public ChangeTrackingRequest(IReadOnlyList<PreviousDisk> previous, string? whyNoPrevious, bool verify, string? noPreviousReason = null)
        {
            Previous = previous;
            WhyNoPrevious = whyNoPrevious;
            Verify = verify;
            NoPreviousReason = noPreviousReason ?? ChangeTrackingRecord.Reasons.PreviousPointDamaged;
        }

        /// <summary>Each disk of the VM's latest restore point that recorded a checkpoint; empty when there is none.</summary>
        public IReadOnlyList<PreviousDisk> Previous { get; }

        /// <summary>Why the previous point cannot be a base (damaged, unreadable), or null.</summary>
        public string? WhyNoPrevious { get; }

        /// <summary>With <see cref="WhyNoPrevious"/>: the reason each disk's full read records (one of <see cref="ChangeTrackingRecord.Reasons"/>).</summary>
        public string NoPreviousReason { get; }

        /// <summary>Read every disk in full anyway and compare with what the checkpoint said changed (-VerifyChangeTracking).</summary>
        public bool Verify { get; }
    }

    /// <summary>A disk of the previous restore point: its checkpoint and the chunks of its content then.</summary>
    public sealed class PreviousDisk
    {
        public PreviousDisk(string pointId, ChangeTrackingRecord checkpoint, IReadOnlyList<string?> chunks)
        {
            PointId = pointId;
            Checkpoint = checkpoint;
            Chunks = chunks;
        }

        public string PointId { get; }

        public ChangeTrackingRecord Checkpoint { get; }

        public IReadOnlyList<string?> Chunks { get; }
    }

    /// <summary>
    /// A run of a disk with what is known of it: changed since the checkpoint, and reads as zeroes. A class, not a struct:
    /// the framework's generic code over a class is precompiled, where over a struct of ours it would be compiled as a
    /// backup starts, on its way to the first chunk.
    /// </summary>
    public sealed class DiskRegion
    {
        public DiskRegion(long offset, long length, bool changed, bool zero)
        {
            Offset = offset;
            Length = length;
            Changed = changed;
            Zero = zero;
        }

        public long Offset { get; }

        public long Length { get; }

        public long End => Offset + Length;

        /// <summary>Written since the checkpoint (always true when the disk is read in full without a checkpoint).</summary>
        public bool Changed { get; }

        /// <summary>Reads as zeroes in the point in time: nothing to read.</summary>
        public bool Zero { get; }
    }

    /// <summary>
    /// A disk of a tracked view: its guest-visible content at the point in time, read at offsets, with a map of
    /// which regions changed since the checkpoint. Reads are thread-safe.
    /// </summary>
    public abstract class TrackedDisk
    {
        private long _bytesRead;

        /// <summary>The disk's virtual size: the size of the content stored.</summary>
        public abstract long Size { get; }

        /// <summary>Incremental (the base is <see cref="Base"/>) or Full, with the reason; the new checkpoint to record.</summary>
        public abstract ChangeTrackingRecord Record { get; }

        /// <summary>The previous point's disk this one builds on when <see cref="Record"/> is incremental (or verified); else null.</summary>
        public abstract PreviousDisk? Base { get; }

        /// <summary>Whether every region must be read and compared with the checkpoint's map (-VerifyChangeTracking).</summary>
        public abstract bool Verify { get; }

        /// <summary>Bytes read from the disk so far: what the copy cost the VM's storage.</summary>
        public long BytesRead => Interlocked.Read(ref _bytesRead);

        /// <summary>The regions of [offset, offset + length), in order, covering it without gaps.</summary>
        public abstract IReadOnlyList<DiskRegion> Map(long offset, long length, CancellationToken cancel);

        /// <summary>Reads from the disk, counted as it is asked (a read that fails fails the backup, which then records no count).</summary>
        public Task ReadAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel)
        {
            Interlocked.Add(ref _bytesRead, count);
            return ReadCoreAsync(offset, buffer, bufferOffset, count, cancel);
        }

        protected abstract Task ReadCoreAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel);
    }
}
