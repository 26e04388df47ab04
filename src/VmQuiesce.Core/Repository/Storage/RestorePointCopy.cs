using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// Copies a restore point into another repository (3-2-1): each chunk read is verified against its name (and
    /// opened with the source's key) as it is read, only chunks the target lacks are stored, and the manifest is
    /// published last, so the copy exists only once whole. A point the target already has is left alone: running a copy again is a no-op.
    /// </summary>
    public static class RestorePointCopy
    {
        /// <summary>Chunks read and uploaded at once: object storage answers each request after a round trip.</summary>
        private static readonly int Parallelism = Math.Max(4, 2 * Environment.ProcessorCount);

        /// <summary>
        /// Copies <paramref name="point"/>. Between repositories whose chunks have the same ids (both unencrypted, or
        /// encrypted with the same key) only the chunks the target lacks are read. Otherwise (other keys, or plain and
        /// encrypted) every chunk is read, opened and verified with the source's key, named and sealed anew with the
        /// target's, and the manifest names the new ids, sealed with the target's key.
        /// </summary>
        public static RestorePointCopyResult Copy(IRestorePointSource source, RestorePoint point, ObjectRepository target, CancellationToken cancel, IOperationHost? host = null)
        {
            var clock = Stopwatch.StartNew();
            if (point.ChunkSize != target.ChunkSize)
            {
                throw new VmQuiesceException("RepositoryChunkSizeMismatch", FailureKind.InvalidOperation,
                    $"The restore point '{point.Id}' has {point.ChunkSize}-byte chunks; the repository '{target.Location}' uses {target.ChunkSize}-byte chunks, so it cannot share them.", target.Location)
                {
                    Remedy = "Copy into a repository made with the same chunk size (a new, empty place takes the source's).",
                };
            }

            // Both keys first: nothing is read or written without them.
            source.Encryption.RequireKey();
            target.Encryption.RequireKey();
            if (target.Storage.Exists(ObjectRepository.ManifestKey(point.Id)))
            {
                host?.WriteVerbose($"'{target.Location}' already has restore point '{point.Id}'.");
                return new RestorePointCopyResult(point, source.Location, target.Location, 0, 0, 0, 0, alreadyPresent: true, clock.Elapsed);
            }

            // Each distinct chunk once, with the length it must decode to.
            var chunks = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (RestorePointFile file in point.Files)
            {
                for (int i = 0; i < file.Chunks.Count; i++)
                {
                    if (file.Chunks[i] is string hash)
                    {
                        chunks[hash] = (int)Math.Min(point.ChunkSize, file.Size - ((long)i * point.ChunkSize));
                    }
                }
            }

            bool sameIds = SameChunkIds(source.Encryption, target.Encryption);
            var targetIds = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
            long total = chunks.Values.Sum(length => (long)length);
            long done = 0;
            long copied = 0;
            long storedBytes = 0;
            var failures = new List<string>();
            var options = new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = cancel };
            try
            {
                CopyChunks();
            }
            catch (AggregateException e)
            {
                // A store that failed (unreachable, refusing) in a worker ends the copy with its own error, not the loop's wrapper.
                ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                throw;
            }

            void CopyChunks() => Parallel.ForEach(chunks, options, () => new CopyBuffers(point.ChunkSize, target.ScratchLength, sameIds ? null : target.Encryption), (chunk, loop, buffers) =>
            {
                string targetId = chunk.Key;
                if (!sameIds || !target.HasChunk(targetId))
                {
                    string? failure = source.ReadVerifiedChunk(chunk.Key, buffers.Data, chunk.Value, ChunkCheck.Hash, good: null, out _);
                    if (failure != null)
                    {
                        lock (failures)
                        {
                            failures.Add($"chunk {chunk.Key}: {failure}");
                        }

                        loop.Stop();
                        return buffers;
                    }

                    if (buffers.TargetIdHash != null)
                    {
                        targetId = ChunkStore.Hash(buffers.TargetIdHash, buffers.Data, chunk.Value);
                        targetIds[chunk.Key] = targetId;
                    }

                    long stored = sameIds || !target.HasChunk(targetId) ? target.WriteChunk(targetId, buffers.Data, chunk.Value, buffers.Scratch) : 0;
                    Interlocked.Add(ref storedBytes, stored);
                    if (stored > 0)
                    {
                        Interlocked.Increment(ref copied);
                    }
                }

                host?.WriteProgress(new TransferProgress($"Copying {point.VmName} {point.Id}", Interlocked.Add(ref done, chunk.Value), total, clock.Elapsed));
                return buffers;
            }, buffers => buffers.Dispose());

            if (failures.Count > 0)
            {
                throw new VmQuiesceException("CopySourceDamaged", FailureKind.InvalidData,
                    $"The restore point '{point.Id}' of VM '{point.VmName}' in '{source.Location}' cannot be copied: {failures[0]}. Nothing was published in '{target.Location}'.", point.Id)
                {
                    Remedy = $"Run Test-VmBackup -Repository '{source.Location}' -Id {point.Id} for the full list of damage, and copy another restore point.",
                };
            }

            target.Publish(sameIds ? point : point.WithChunkIds(id => targetIds[id]));
            return new RestorePointCopyResult(point, source.Location, target.Location, chunks.Count, copied, chunks.Count - copied, storedBytes, alreadyPresent: false, clock.Elapsed);
        }

        /// <summary>Whether a chunk has the same id in both: SHA-256 in both, or HMAC-SHA256 under the same key.</summary>
        private static bool SameChunkIds(RepositoryEncryption source, RepositoryEncryption target) =>
            source.IsEncrypted == target.IsEncrypted && source.KeyId == target.KeyId;

        /// <summary>One worker's buffers, and the hash that names chunks in the target when their ids differ.</summary>
        private sealed class CopyBuffers : IDisposable
        {
            public CopyBuffers(int chunkSize, int scratchLength, RepositoryEncryption? renameFor)
            {
                Data = ArrayPool<byte>.Shared.Rent(chunkSize);
                Scratch = ArrayPool<byte>.Shared.Rent(scratchLength);
                TargetIdHash = renameFor?.NewChunkIdHash();
            }

            public byte[] Data { get; }

            public byte[] Scratch { get; }

            public HashAlgorithm? TargetIdHash { get; }

            public void Dispose()
            {
                ArrayPool<byte>.Shared.Return(Data);
                ArrayPool<byte>.Shared.Return(Scratch);
                TargetIdHash?.Dispose();
            }
        }
    }

    /// <summary>What a copy of one restore point did.</summary>
    public sealed class RestorePointCopyResult
    {
        public RestorePointCopyResult(RestorePoint point, string source, string destination, long chunks, long chunksCopied, long chunksPresent, long storedBytes, bool alreadyPresent, TimeSpan duration)
        {
            Id = point.Id;
            VmName = point.VmName;
            Source = source;
            Destination = destination;
            Size = point.Size;
            Chunks = chunks;
            ChunksCopied = chunksCopied;
            ChunksAlreadyPresent = chunksPresent;
            StoredBytes = storedBytes;
            AlreadyPresent = alreadyPresent;
            Elapsed = duration;
        }

        public string Id { get; }

        public string VmName { get; }

        public string Source { get; }

        public string Destination { get; }

        /// <summary>The restore point's size (its files' bytes).</summary>
        public long Size { get; }

        /// <summary>Distinct chunks the restore point names.</summary>
        public long Chunks { get; }

        /// <summary>Chunks read from the source, verified and stored in the destination.</summary>
        public long ChunksCopied { get; }

        /// <summary>Chunks the destination already had, which were not read or sent.</summary>
        public long ChunksAlreadyPresent { get; }

        /// <summary>Bytes stored in the destination (encoded chunks).</summary>
        public long StoredBytes { get; }

        /// <summary>The destination already had this restore point; nothing was done.</summary>
        public bool AlreadyPresent { get; }

        /// <summary>Seconds the copy took: a number, as automation and ConvertTo-Json want it.</summary>
        public double Duration => Elapsed.TotalSeconds;

        internal TimeSpan Elapsed { get; }
    }
}
