using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

namespace VmQuiesce.Core.Repository
{
    /// <summary>Verification of a restore point in any repository, folder or object storage.</summary>
    public static class RestorePointVerifier
    {
        /// <summary>
        /// Re-reads and re-hashes every chunk of <paramref name="point"/> and checks each whole-file digest.
        /// Chunks are read, decoded and hashed on every core, a few ahead of the in-order digest.
        /// </summary>
        public static RestorePointVerification Verify(IRestorePointSource source, RestorePoint point, CancellationToken cancel, IOperationHost? host = null)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var problems = new Dictionary<string, (ChunkProblemKind Problem, string Detail, List<string> Files)>(StringComparer.Ordinal);
            var broken = new List<string>();
            var mismatches = new List<string>();
            var reader = new ChunkReadAhead(source, point.ChunkSize, ChunkCheck.Hash, new ConcurrentDictionary<string, bool>(StringComparer.Ordinal));
            long chunks = 0;
            long bytes = 0;
            foreach (RestorePointFile file in point.Files)
            {
                long expectedChunks = ChunkReadAhead.ExpectedChunks(file.Size, point.ChunkSize);
                if (file.Chunks.Count != expectedChunks)
                {
                    Record(problems, "-", ChunkProblemKind.Damaged, $"the manifest lists {file.Chunks.Count} chunks for {file.Size} bytes; expected {expectedChunks}", file.Path);
                    broken.Add(file.Path);
                    continue;
                }

                using FileDigest digest = FileDigest.For(file);
                bool fileBroken = false;
                reader.Read(file, chunk =>
                {
                    chunks++;
                    bytes += chunk.Length;
                    if (chunk.Failure != null)
                    {
                        Record(problems, chunk.Hash!, chunk.Missing ? ChunkProblemKind.Missing : source.Encryption.IsEncrypted ? ChunkProblemKind.NotAuthentic : ChunkProblemKind.Damaged, chunk.Failure, file.Path);
                        fileBroken = true;
                    }
                    else if (!fileBroken)
                    {
                        digest.Append(chunk.Hash, chunk.Buffer, chunk.Length);
                    }

                    host?.WriteProgress(new TransferProgress("Reading and hashing chunks", bytes, point.Size, clock.Elapsed));
                }, cancel);

                if (fileBroken)
                {
                    broken.Add(file.Path);
                }
                else if (!string.Equals(digest.Finish(), file.Digest, StringComparison.OrdinalIgnoreCase))
                {
                    mismatches.Add(file.Path);
                    broken.Add(file.Path);
                }
            }

            var list = problems.Select(entry => new ChunkProblem(entry.Key, entry.Value.Problem, entry.Value.Detail, entry.Value.Files)).ToList();
            return new RestorePointVerification(point, chunks, bytes, list, broken, mismatches);
        }

        private static void Record(Dictionary<string, (ChunkProblemKind Problem, string Detail, List<string> Files)> problems, string hash, ChunkProblemKind problem, string detail, string file)
        {
            if (problems.TryGetValue(hash, out var known))
            {
                if (!known.Files.Contains(file))
                {
                    known.Files.Add(file);
                }
            }
            else
            {
                problems[hash] = (problem, detail, new List<string> { file });
            }
        }
    }
}
