using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>
    /// An export held in memory, in 4 KiB blocks that are data, zero or hole (zero and hole blocks hold
    /// zeroes). It answers a describe with at most <see cref="ExtentsPerDescribe"/> extents, so the server's
    /// "ask again from where the answer ended" path runs; it counts what it reads, can fail chosen blocks
    /// and can hold reads at a gate.
    /// </summary>
    public sealed class MemoryExportBackend : INbdExportBackend
    {
        public const int BlockSize = 4096;
        private readonly NbdExtentKind[] _kinds;
        private int _reading;
        private long _bytesRead;
        private int _maxConcurrentReads;

        public MemoryExportBackend(byte[] data, NbdExtentKind[] kinds)
        {
            Data = data;
            _kinds = kinds;
        }

        public byte[] Data { get; }

        public long Size => Data.Length;

        public int ExtentsPerDescribe { get; set; } = 5;

        /// <summary>Reads touching one of these blocks fail, as a damaged chunk would.</summary>
        public HashSet<long> DamagedBlocks { get; } = new HashSet<long>();

        /// <summary>When set, reads wait for it (a slow repository); tests open it.</summary>
        public TaskCompletionSource<bool>? Gate { get; set; }

        /// <summary>Signalled each time a read has reached the gate.</summary>
        public SemaphoreSlim ReadsAtGate { get; } = new SemaphoreSlim(0);

        public long BytesRead => Interlocked.Read(ref _bytesRead);

        public int MaxConcurrentReads => Volatile.Read(ref _maxConcurrentReads);

        /// <summary>
        /// A patterned image: block i is data (bytes from a seeded generator), zero or hole as
        /// <paramref name="kindOf"/> says.
        /// </summary>
        public static MemoryExportBackend Create(int blocks, Func<int, NbdExtentKind> kindOf, int seed = 7, int tailBytes = 0)
        {
            var data = new byte[((long)blocks * BlockSize) + tailBytes];
            var kinds = new NbdExtentKind[blocks + (tailBytes > 0 ? 1 : 0)];
            var random = new Random(seed);
            for (int i = 0; i < kinds.Length; i++)
            {
                kinds[i] = kindOf(i);
                if (kinds[i] == NbdExtentKind.Data)
                {
                    int length = (int)Math.Min(BlockSize, data.Length - ((long)i * BlockSize));
                    var block = new byte[length];
                    random.NextBytes(block);
                    Buffer.BlockCopy(block, 0, data, i * BlockSize, length);
                }
            }

            return new MemoryExportBackend(data, kinds);
        }

        /// <summary>The image as a raw file, for tools to compare with.</summary>
        public void WriteRawFile(string path) => File.WriteAllBytes(path, Data);

        public Task<IReadOnlyList<NbdBackendExtent>> DescribeAsync(long offset, long length, CancellationToken cancel)
        {
            var extents = new List<NbdBackendExtent>();
            long end = offset + length;
            long position = offset;
            while (position < end && extents.Count < ExtentsPerDescribe)
            {
                NbdExtentKind kind = _kinds[position / BlockSize];
                long next = position;
                while (next < end && _kinds[next / BlockSize] == kind)
                {
                    next = Math.Min(end, ((next / BlockSize) + 1) * BlockSize);
                }

                extents.Add(new NbdBackendExtent(next - position, kind));
                position = next;
            }

            return Task.FromResult<IReadOnlyList<NbdBackendExtent>>(extents);
        }

        public async Task ReadAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel)
        {
            int reading = Interlocked.Increment(ref _reading);
            try
            {
                int max;
                while (reading > (max = Volatile.Read(ref _maxConcurrentReads)) && Interlocked.CompareExchange(ref _maxConcurrentReads, reading, max) != max)
                {
                }

                if (Gate is TaskCompletionSource<bool> gate)
                {
                    ReadsAtGate.Release();
                    await gate.Task.ConfigureAwait(false);
                }

                for (long block = offset / BlockSize; block * BlockSize < offset + count; block++)
                {
                    if (_kinds[block] != NbdExtentKind.Data)
                    {
                        throw new InvalidOperationException($"The server read block {block}, which is a {_kinds[block]}: holes and zeroes must be served without reading.");
                    }

                    if (DamagedBlocks.Contains(block))
                    {
                        throw new InvalidDataException($"chunk of block {block} is damaged (hash mismatch)");
                    }
                }

                Buffer.BlockCopy(Data, (int)offset, buffer, bufferOffset, count);
                Interlocked.Add(ref _bytesRead, count);
            }
            finally
            {
                Interlocked.Decrement(ref _reading);
            }
        }
    }
}
