using System;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Streams the content of a restore point's file in order from verified chunks (see
    /// <see cref="ChunkReadAhead"/>), and checks the whole-file digest at the end. The first bad chunk stops
    /// the read with an error naming it.
    /// </summary>
    public sealed class RestorePointReader
    {
        private readonly IRestorePointSource _repository;
        private readonly ChunkReadAhead _chunks;

        public RestorePointReader(IRestorePointSource repository, RestorePoint point)
        {
            _repository = repository;
            Point = point;
            if (point.ChunkSize != repository.ChunkSize)
            {
                throw new VmQuiesceException("RestorePointChunkSizeMismatch", FailureKind.InvalidData,
                    $"The restore point '{point.Id}' has chunk size {point.ChunkSize}; its repository '{repository.Location}' uses {repository.ChunkSize}.", point.Id);
            }

            _chunks = new ChunkReadAhead(repository, point.ChunkSize, ChunkCheck.SealOrHash, verified: null);
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
                    bytes += Math.Min(Point.ChunkSize, file.Size - ((long)i * Point.ChunkSize));
                }
            }

            return bytes;
        }

        /// <summary>
        /// Calls <paramref name="consume"/> with (offset, buffer, length) for each chunk in order; the buffer is
        /// null for an all-zero chunk and is reused after the call returns. Throws <see cref="VmQuiesceException"/>
        /// (RestoreChunkMissing, RestoreChunkDamaged or in an encrypted repository RestoreChunkNotAuthentic,
        /// RestoreFileHashMismatch) at the first problem.
        /// </summary>
        public void Read(RestorePointFile file, Action<long, byte[]?, int> consume, CancellationToken cancel)
        {
            long expectedChunks = ChunkReadAhead.ExpectedChunks(file.Size, Point.ChunkSize);
            if (file.Chunks.Count != expectedChunks)
            {
                throw Damaged(file, "-", $"the manifest lists {file.Chunks.Count} chunks for {file.Size} bytes; expected {expectedChunks}", missing: false);
            }

            using FileDigest digest = FileDigest.For(file);
            _chunks.Read(file, chunk =>
            {
                if (chunk.Failure != null)
                {
                    throw Damaged(file, chunk.Hash!, chunk.Failure, chunk.Missing);
                }

                DigestWhileConsuming(digest, chunk, () => consume(chunk.Offset, chunk.Buffer, chunk.Length));
            }, cancel);

            string actual = digest.Finish();
            if (!string.Equals(actual, file.Digest, StringComparison.OrdinalIgnoreCase))
            {
                throw new VmQuiesceException("RestoreFileHashMismatch", FailureKind.InvalidData,
                    $"The file '{file.Path}' of restore point '{Point.Id}' rebuilt from verified chunks has the digest {actual}; its manifest says {file.Digest}.", file.Path)
                {
                    Remedy = $"Run Test-VmBackup -Repository '{_repository.Location}' -Id {Point.Id}, and restore an older restore point.",
                };
            }
        }

        /// <summary>
        /// A schema-1 digest over the content is the one serial step: it runs beside the consumer (which only
        /// reads the same buffer), so hashing and writing a chunk overlap. A chunk-list digest costs nothing.
        /// </summary>
        private static void DigestWhileConsuming(FileDigest digest, ReadChunk chunk, Action consume)
        {
            if (!digest.NeedsContent || chunk.Buffer == null)
            {
                digest.Append(chunk.Hash, chunk.Buffer, chunk.Length);
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

        private VmQuiesceException Damaged(RestorePointFile file, string hash, string detail, bool missing)
        {
            bool notAuthentic = !missing && _repository.Encryption.IsEncrypted;
            return new VmQuiesceException(missing ? "RestoreChunkMissing" : notAuthentic ? "RestoreChunkNotAuthentic" : "RestoreChunkDamaged", notAuthentic ? FailureKind.SecurityError : FailureKind.InvalidData,
                $"The restore point '{Point.Id}' of VM '{Point.VmName}' cannot rebuild '{file.Path}': chunk {hash} {(missing ? "is missing" : notAuthentic ? "is not authentic" : "is damaged")} ({detail}). Nothing was replaced.", file.Path)
            {
                Remedy = $"Run Test-VmBackup -Repository '{_repository.Location}' -Id {Point.Id} for the full list of damage, and restore another restore point.",
            };
        }
    }
}
