using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Reads a file's chunks in order from the repository, each one read, decoded and checked on the
    /// thread pool a few ahead of the caller, for verification and restore alike. Memory stays bounded:
    /// a handful of chunk buffers, reused.
    /// </summary>
    internal sealed class ChunkReadAhead
    {
        private readonly IRestorePointSource _repository;
        private readonly int _chunkSize;
        private readonly ChunkCheck _check;
        private readonly ConcurrentDictionary<string, bool>? _verified;
        private readonly Stack<byte[]> _buffers = new Stack<byte[]>();

        // Chunks usually come from disk (they were written past the page cache): more reads in flight
        // than cores keep the disk's queue full while the cores hash.
        private readonly int _depth = (2 * Environment.ProcessorCount) + 2;

        /// <param name="check">How each chunk is proved to be the one its name says.</param>
        /// <param name="verified">Remembers chunks already hashed, so a chunk several files share is hashed once; null to hash every read.</param>
        public ChunkReadAhead(IRestorePointSource repository, int chunkSize, ChunkCheck check, ConcurrentDictionary<string, bool>? verified)
        {
            _repository = repository;
            _chunkSize = chunkSize;
            _check = check;
            _verified = verified;
        }

        /// <summary>How many chunks a file of <paramref name="size"/> bytes has.</summary>
        public static long ExpectedChunks(long size, int chunkSize) => (size + chunkSize - 1) / chunkSize;

        /// <summary>
        /// Calls <paramref name="consume"/> with each chunk of <paramref name="file"/> in order. A damaged or
        /// missing chunk is passed on with its <see cref="ReadChunk.Failure"/>, not thrown: the caller decides
        /// whether to go on. The buffer is reused once the call returns; chunks in flight are waited for before
        /// this returns or throws.
        /// </summary>
        public void Read(RestorePointFile file, Action<ReadChunk> consume, CancellationToken cancel)
        {
            var window = new Queue<ReadChunk>();
            try
            {
                for (int next = 0; next < file.Chunks.Count || window.Count > 0;)
                {
                    cancel.ThrowIfCancellationRequested();
                    while (next < file.Chunks.Count && window.Count < _depth)
                    {
                        window.Enqueue(Start(file, next++));
                    }

                    ReadChunk chunk = window.Dequeue();
                    try
                    {
                        // A read that failed for a reason not the chunk's (the store cannot be reached) throws that failure as it is.
                        chunk.Running?.GetAwaiter().GetResult();
                        consume(chunk);
                    }
                    finally
                    {
                        Release(chunk);
                    }
                }
            }
            finally
            {
                foreach (ReadChunk pending in window)
                {
                    if (pending.Running != null)
                    {
                        OwnThread.WaitEnded(pending.Running);
                    }

                    Release(pending);
                }
            }
        }

        private ReadChunk Start(RestorePointFile file, int index)
        {
            var chunk = new ReadChunk(index, (long)index * _chunkSize, file.Chunks[index], (int)Math.Min(_chunkSize, file.Size - ((long)index * _chunkSize)));
            if (chunk.Hash != null)
            {
                chunk.Buffer = _buffers.Count > 0 ? _buffers.Pop() : new byte[_chunkSize];
                chunk.Running = Task.Run(() =>
                {
                    chunk.Failure = _repository.ReadVerifiedChunk(chunk.Hash, chunk.Buffer, chunk.Length, _check, _verified, out bool missing);
                    chunk.Missing = missing;
                });
            }

            return chunk;
        }

        private void Release(ReadChunk chunk)
        {
            if (chunk.Buffer != null)
            {
                _buffers.Push(chunk.Buffer);
                chunk.Buffer = null;
            }
        }
    }

    /// <summary>One chunk of a file as <see cref="ChunkReadAhead"/> hands it over.</summary>
    internal sealed class ReadChunk
    {
        public ReadChunk(int index, long offset, string? hash, int length)
        {
            Index = index;
            Offset = offset;
            Hash = hash;
            Length = length;
        }

        public int Index { get; }

        /// <summary>Where the chunk starts in the file.</summary>
        public long Offset { get; }

        /// <summary>Null for an all-zero chunk, which is never stored or read.</summary>
        public string? Hash { get; }

        public int Length { get; }

        /// <summary>The decoded bytes (null for an all-zero chunk); valid only during the consume call.</summary>
        public byte[]? Buffer { get; set; }

        /// <summary>Null when the chunk is whole; otherwise what is wrong with it.</summary>
        public string? Failure { get; set; }

        /// <summary>True when the failure is that the chunk file does not exist.</summary>
        public bool Missing { get; set; }

        internal Task? Running { get; set; }
    }
}
