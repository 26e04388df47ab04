using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A disk's point-in-time content as QEMU's NBD server exports it (the scratch node over the disk), with
    /// base:allocation for what reads as zeroes and qemu:dirty-bitmap:&lt;previous checkpoint&gt; for what changed.
    /// </summary>
    internal sealed class QemuTrackedDisk : TrackedDisk
    {
        private const string Allocation = "base:allocation";

        private readonly QemuDiskCheckpoint _checkpoint;
        private readonly NbdClient _client;
        private readonly string? _bitmapContext;

        public QemuTrackedDisk(QemuDiskCheckpoint checkpoint, NbdClient client, bool verify)
        {
            _checkpoint = checkpoint;
            _client = client;
            _bitmapContext = checkpoint.PreviousBitmap == null ? null : BitmapContext(checkpoint.PreviousBitmap);
            Verify = verify && checkpoint.Base != null;
            if (client.Size != checkpoint.Disk.VirtualSize)
            {
                throw new VmQuiesceException("NbdProtocolError", FailureKind.ProtocolError,
                    $"QEMU exports disk {checkpoint.Disk.Name} with {client.Size} bytes; query-block said {checkpoint.Disk.VirtualSize}.", checkpoint.Disk.Name);
            }
        }

        public override long Size => _client.Size;

        public override ChangeTrackingRecord Record => _checkpoint.Record();

        public override PreviousDisk? Base => _checkpoint.Base;

        public override bool Verify { get; }

        public QemuDiskCheckpoint Checkpoint => _checkpoint;

        internal static string BitmapContext(string bitmap) => "qemu:dirty-bitmap:" + bitmap;

        public override IReadOnlyList<DiskRegion> Map(long offset, long length, CancellationToken cancel)
        {
            var regions = new List<DiskRegion>();
            long end = offset + length;
            long position = offset;
            while (position < end)
            {
                NbdBlockStatus status = _client.GetBlockStatusAsync(position, end - position, cancel).GetAwaiter().GetResult();
                long covered = Math.Min(status.CoveredLength, end - position);
                if (covered <= 0)
                {
                    throw new VmQuiesceException("NbdProtocolError", FailureKind.ProtocolError,
                        $"QEMU's NBD server described no bytes of disk {_checkpoint.Disk.Name} at offset {position}.", _checkpoint.Disk.Name);
                }

                Merge(regions, status[Allocation], _bitmapContext == null ? null : status[_bitmapContext], position, position + covered);
                position += covered;
            }

            return regions;
        }

        protected override Task ReadCoreAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel) =>
            _client.ReadAsync(offset, buffer, bufferOffset, count, cancel);

        /// <summary>Walks both extent lists at once, clipped to [start, end), cutting a region wherever either changes.</summary>
        private static void Merge(List<DiskRegion> regions, IReadOnlyList<NbdExtent> allocation, IReadOnlyList<NbdExtent>? dirty, long start, long end)
        {
            int a = 0;
            int d = 0;
            long position = start;
            while (position < end)
            {
                while (a < allocation.Count && allocation[a].End <= position)
                {
                    a++;
                }

                while (dirty != null && d < dirty.Count && dirty[d].End <= position)
                {
                    d++;
                }

                // An extent list that stops short says nothing of the rest: read it, and count it as changed.
                bool zero = a < allocation.Count && allocation[a].Offset <= position && (allocation[a].Flags & NbdExtentFlags.Zero) != 0;
                bool changed = dirty == null || d >= dirty.Count || dirty[d].Offset > position || (dirty[d].Flags & NbdExtentFlags.Dirty) != 0;
                long next = end;
                if (a < allocation.Count)
                {
                    next = Math.Min(next, allocation[a].Offset > position ? allocation[a].Offset : allocation[a].End);
                }

                if (dirty != null && d < dirty.Count)
                {
                    next = Math.Min(next, dirty[d].Offset > position ? dirty[d].Offset : dirty[d].End);
                }

                if (regions.Count > 0 && regions[regions.Count - 1].End == position && regions[regions.Count - 1].Zero == zero && regions[regions.Count - 1].Changed == changed)
                {
                    DiskRegion last = regions[regions.Count - 1];
                    regions[regions.Count - 1] = new DiskRegion(last.Offset, next - last.Offset, changed, zero);
                }
                else
                {
                    regions.Add(new DiskRegion(position, next - position, changed, zero));
                }

                position = next;
            }
        }
    }
}
