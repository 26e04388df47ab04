using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Streams the content of a restore point's file in order from verified chunks: each chunk is read,
    /// decoded and re-hashed on every core a few ahead of the consumer, and the whole-file digest is
    /// checked at the end. The first bad chunk stops the read with an error naming it. Memory stays
    /// bounded: a handful of chunk buffers, reused.
    /// </summary>
    public sealed class RestorePointReader
    {
        private readonly BackupRepository _repository;
        private readonly int _depth;
        private readonly Stack<byte[]> _buffers = new Stack<byte[]>();

        public RestorePointReader(BackupRepository repository, RestorePoint point)
        {
            _repository = repository;
            Point = point;
            if (point.ChunkSize != repository.ChunkSize)
            {
                throw new VmQuiesceException("RestorePointChunkSizeMismatch", FailureKind.InvalidData,
                    $"The restore point '{point.Id}' has chunk size {point.ChunkSize}; its repository '{repository.Path}' uses {repository.ChunkSize}.", point.Id);
            }

            // Chunks usually come from disk (they were written past the page cache): more reads in flight
            // than cores keep the disk's queue full while the cores hash.
            _depth = (2 * Environment.ProcessorCount) + 2;
        }

        public RestorePoint Point { get; }

        /// <summary>Bytes of <paramref name="file"/> that are data (not all-zero chunks): at most what a restore allocates.</summary>
        public long DataBytes(RestorePointFile file)
        {
            long bytes = 0;
            for (int i = 0; i < file.Chunks.Count; i++)
            {
                if (file.Chunks[i] != null)
                {
                    bytes += ChunkLength(file, i);
                }
            }

            return bytes;
        }

        /// <summary>
        /// Calls <paramref name="consume"/> with (offset, buffer, length) for each chunk in order; the buffer is
        /// null for an all-zero chunk and is reused after the call returns. Throws <see cref="VmQuiesceException"/>
        /// (RestoreChunkMissing, RestoreChunkDamaged, RestoreFileHashMismatch) at the first problem.
        /// </summary>
        public void Read(RestorePointFile file, Action<long, byte[]?, int> consume, CancellationToken cancel)
        {
            long expectedChunks = (file.Size + Point.ChunkSize - 1) / Point.ChunkSize;
            if (file.Chunks.Count != expectedChunks)
            {
                throw Damaged(file, "-", $"the manifest lists {file.Chunks.Count} chunks for {file.Size} bytes; expected {expectedChunks}", missing: false);
            }

            using var digest = new FileDigest(file.DigestKind);
            var window = new Queue<Pending>();
            try
            {
                for (int next = 0; next < file.Chunks.Count || window.Count > 0;)
                {
                    cancel.ThrowIfCancellationRequested();
                    while (next < file.Chunks.Count && window.Count < _depth)
                    {
                        window.Enqueue(Start(file, next++));
                    }

                    Pending chunk = window.Dequeue();
                    long offset = (long)chunk.Index * Point.ChunkSize;
                    if (chunk.Hash == null)
                    {
                        digest.Append(null, null, chunk.Length);
                        consume(offset, null, chunk.Length);
                        continue;
                    }

                    try
                    {
                        if (chunk.Running!.Result is string failure)
                        {
                            throw Damaged(file, chunk.Hash, failure, chunk.Missing);
                        }

                        DigestWhileConsuming(digest, chunk, () => consume(offset, chunk.Buffer, chunk.Length));
                    }
                    finally
                    {
                        _buffers.Push(chunk.Buffer!);
                    }
                }
            }
            finally
            {
                // Chunks in flight must finish before their buffers are reused or the caller goes on.
                foreach (Pending pending in window)
                {
                    pending.Running?.Wait();
                    if (pending.Buffer != null)
                    {
                        _buffers.Push(pending.Buffer);
                    }
                }
            }

            string actual = digest.Finish();
            if (!string.Equals(actual, file.Digest, StringComparison.OrdinalIgnoreCase))
            {
                throw new VmQuiesceException("RestoreFileHashMismatch", FailureKind.InvalidData,
                    $"The file '{file.Path}' of restore point '{Point.Id}' rebuilt from verified chunks has the digest {actual}; its manifest says {file.Digest}.", file.Path)
                {
                    Remedy = $"Run Test-VmBackup -Repository '{_repository.Path}' -Id {Point.Id}, and restore an older restore point.",
                };
            }
        }

        /// <summary>
        /// A schema-1 digest over the content is the one serial step: it runs beside the consumer (which only
        /// reads the same buffer), so hashing and writing a chunk overlap. A chunk-list digest costs nothing.
        /// </summary>
        private static void DigestWhileConsuming(FileDigest digest, Pending chunk, Action consume)
        {
            if (!digest.NeedsContent)
            {
                digest.Append(chunk.Hash, null, chunk.Length);
                consume();
                return;
            }

            Task hashing = Task.Run(() => digest.Append(chunk.Hash, chunk.Buffer, chunk.Length));
            try
            {
                consume();
            }
            finally
            {
                hashing.Wait();
            }
        }

        private int ChunkLength(RestorePointFile file, int index) => (int)Math.Min(Point.ChunkSize, file.Size - ((long)index * Point.ChunkSize));

        private Pending Start(RestorePointFile file, int index)
        {
            string? hash = file.Chunks[index];
            var pending = new Pending(index, hash, ChunkLength(file, index));
            if (hash != null)
            {
                byte[] buffer = _buffers.Count > 0 ? _buffers.Pop() : new byte[Point.ChunkSize];
                pending.Buffer = buffer;
                pending.Running = Task.Run(() =>
                {
                    string? failure = _repository.ReadVerifiedChunk(hash, buffer, pending.Length, good: null, out bool missing);
                    pending.Missing = missing;
                    return failure;
                });
            }

            return pending;
        }

        private VmQuiesceException Damaged(RestorePointFile file, string hash, string detail, bool missing) =>
            new VmQuiesceException(missing ? "RestoreChunkMissing" : "RestoreChunkDamaged", FailureKind.InvalidData,
                $"The restore point '{Point.Id}' of VM '{Point.VmName}' cannot rebuild '{file.Path}': chunk {hash} {(missing ? "is missing" : "is damaged")} ({detail}). Nothing was replaced.", file.Path)
            {
                Remedy = $"Run Test-VmBackup -Repository '{_repository.Path}' -Id {Point.Id} for the full list of damage, and restore another restore point.",
            };

        private sealed class Pending
        {
            public Pending(int index, string? hash, int length)
            {
                Index = index;
                Hash = hash;
                Length = length;
            }

            public int Index { get; }

            public string? Hash { get; }

            public int Length { get; }

            public byte[]? Buffer { get; set; }

            public Task<string?>? Running { get; set; }

            public bool Missing { get; set; }
        }
    }
}
