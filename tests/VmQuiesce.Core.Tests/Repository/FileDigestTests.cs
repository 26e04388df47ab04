using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using VmQuiesce.Core.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    public class FileDigestTests
    {
        /// <summary>The digest as its documentation defines it: SHA-256 of the lines, each written as Encoding.ASCII writes it.</summary>
        private static string AsDocumented(long? size, IEnumerable<string?> chunks)
        {
            var text = new StringBuilder();
            if (size is long length)
            {
                text.Append(length).Append('\n');
            }

            foreach (string? chunk in chunks)
            {
                text.Append(chunk ?? RestorePoint.ZeroChunk).Append('\n');
            }

            byte[] lines = Encoding.ASCII.GetBytes(text.ToString());
            using var sha = SHA256.Create();
            return ChunkStore.Hash(sha, lines, lines.Length);
        }

        private static string Hex(int seed)
        {
            using var sha = SHA256.Create();
            return ChunkStore.Hash(sha, new[] { (byte)seed, (byte)(seed >> 8) }, 2);
        }

        [Fact]
        public void ChunkListsOfEveryLengthAroundTheLineBufferHashAsTheirLines()
        {
            // 16 KiB of lines holds 252 entries of 65 bytes: lists end before, at and past each buffer's end.
            foreach (int count in new[] { 0, 1, 251, 252, 253, 504, 505, 8192 })
            {
                List<string?> chunks = Enumerable.Range(0, count).Select(i => i % 7 == 3 ? null : Hex(i)).ToList();
                Assert.Equal(AsDocumented(count * 512L * 1024, chunks), FileDigest.OfSizeAndChunks(count * 512L * 1024, chunks));
                Assert.Equal(AsDocumented(null, chunks), FileDigest.OfChunks(FileDigestKind.ChunkListSha256, 0, chunks));
            }
        }

        [Fact]
        public void AnEntryLongerThanTheBufferOrNotAsciiHashesAsEncodingAsciiWritesIt()
        {
            // A manifest's chunk list is read from a repository someone else may write: whatever it holds is hashed the same way.
            var chunks = new List<string?> { Hex(1), new string('a', 40000), Hex(2), "zéro\u4e2d\ud83d\ude00", new string('b', 16383), Hex(3) };
            Assert.Equal(AsDocumented(123, chunks), FileDigest.OfSizeAndChunks(123, chunks));
        }
    }
}
