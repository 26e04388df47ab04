using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// One file of a restore point as an NBD export: its bytes exactly as the backup stored them (a qcow2 point is
    /// served as qcow2; QEMU layers its qcow2 driver over the export). Every chunk is fetched on demand through a
    /// <see cref="VerifiedChunkCache"/>, which hashes it before a byte of it is served; all-zero chunks, which the
    /// repository never stores, are holes answered without reading; the next chunks of a sequential reader are read
    /// ahead. A missing or damaged chunk fails the read of its range (the server answers EIO) naming the chunk.
    /// </summary>
    public sealed class RestorePointDisk : INbdLendingBackend
    {
        private readonly VerifiedChunkCache _cache;
        private readonly int _chunkSize;
        private long _lastChunkRead = -2;

        internal RestorePointDisk(RestorePoint point, RestorePointFile file, VerifiedChunkCache cache, int chunkSize)
        {
            long expected = (file.Size + chunkSize - 1) / chunkSize;
            if (file.Chunks.Count != expected)
            {
                throw new VmQuiesceException("ExportChunkListInvalid", FailureKind.InvalidData,
                    $"The restore point '{point.Id}' cannot serve '{file.Path}': its manifest lists {file.Chunks.Count} chunks for {file.Size} bytes; expected {expected}.", file.Path);
            }

            Point = point;
            File = file;
            _cache = cache;
            _chunkSize = chunkSize;
        }

        public RestorePoint Point { get; }

        public RestorePointFile File { get; }

        public long Size => File.Size;

        public Task<IReadOnlyList<NbdBackendExtent>> DescribeAsync(long offset, long length, CancellationToken cancel)
        {
            var extents = new List<NbdBackendExtent>();
            long end = Math.Min(Size, offset + length);
            for (long position = offset; position < end;)
            {
                int index = (int)(position / _chunkSize);
                long chunkEnd = Math.Min(end, ((long)index + 1) * _chunkSize);
                NbdExtentKind kind = File.Chunks[index] == null ? NbdExtentKind.Hole : NbdExtentKind.Data;
                if (extents.Count > 0 && extents[extents.Count - 1].Kind == kind)
                {
                    extents[extents.Count - 1] = new NbdBackendExtent(extents[extents.Count - 1].Length + (chunkEnd - position), kind);
                }
                else
                {
                    extents.Add(new NbdBackendExtent(chunkEnd - position, kind));
                }

                position = chunkEnd;
            }

            return Task.FromResult<IReadOnlyList<NbdBackendExtent>>(extents);
        }

        public async Task ReadAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel)
        {
            for (long position = offset, end = offset + count; position < end;)
            {
                int target = bufferOffset + (int)(position - offset);
                int index = (int)(position / _chunkSize);
                if (File.Chunks[index] == null)
                {
                    int hole = (int)Math.Min(end - position, ((long)index + 1) * _chunkSize - position);
                    Array.Clear(buffer, target, hole);
                    ReadAhead(index);
                    position += hole;
                    continue;
                }

                using NbdLease lease = await LendPieceAsync(position, (int)(end - position)).ConfigureAwait(false);
                Buffer.BlockCopy(lease.Buffer, lease.Offset, buffer, target, lease.Count);
                position += lease.Count;
            }
        }

        Task<NbdLease> INbdLendingBackend.LendAsync(long offset, int count, CancellationToken cancel) => LendPieceAsync(offset, count);

        /// <summary>The verified bytes from <paramref name="offset"/>, <paramref name="count"/> at most and never past its chunk's end, in the cache's buffer.</summary>
        private async Task<NbdLease> LendPieceAsync(long offset, int count)
        {
            int index = (int)(offset / _chunkSize);
            long chunkStart = (long)index * _chunkSize;
            int inChunk = (int)(offset - chunkStart);
            string hash = File.Chunks[index] ?? throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Offset {offset} of '{File.Path}' is in a hole, which is described as one and never read.");
            NbdLease lease;
            try
            {
                lease = await _cache.LendAsync(hash, ChunkLength(index), inChunk, (int)Math.Min(count, ChunkLength(index) - inChunk)).ConfigureAwait(false);
            }
            catch (ChunkUnusableException e)
            {
                throw Unusable(e, chunkStart, ChunkLength(index));
            }

            ReadAhead(index);
            return lease;
        }

        private void ReadAhead(int index)
        {
            long previous = Interlocked.Exchange(ref _lastChunkRead, index);
            if (previous != index - 1)
            {
                return; // random access: reading ahead would only push useful chunks out of the cache
            }

            for (int next = index + 1; next <= index + _cache.ReadAheadChunks && next < File.Chunks.Count; next++)
            {
                if (File.Chunks[next] is string hash)
                {
                    _cache.Prefetch(hash, ChunkLength(next));
                }
            }
        }

        private int ChunkLength(int index) => (int)Math.Min(_chunkSize, Size - ((long)index * _chunkSize));

        private VmQuiesceException Unusable(ChunkUnusableException e, long start, int length) =>
            new VmQuiesceException(e.Missing ? "ExportChunkMissing" : e.NotAuthentic ? "ExportChunkNotAuthentic" : "ExportChunkDamaged", e.NotAuthentic ? FailureKind.SecurityError : FailureKind.InvalidData,
                $"The restore point '{Point.Id}' of VM '{Point.VmName}' cannot serve bytes {start} to {start + length - 1} of '{File.Path}': chunk {e.Hash} {(e.Missing ? "is missing" : e.NotAuthentic ? "is not authentic" : "is damaged")} ({e.Detail}). Those bytes were answered with an I/O error, never served.",
                File.Path, e)
            {
                Remedy = $"Run Test-VmBackup -Repository '{Point.Repository}' -Id {Point.Id} for the full list of damage, and serve another restore point.",
            };
    }
}
