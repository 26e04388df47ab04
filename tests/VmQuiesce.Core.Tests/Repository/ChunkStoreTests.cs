using System;
using System.Collections.Concurrent;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    public class ChunkStoreTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void IdenticalChunksAreStoredOnceAndZeroChunksNotAtAll()
        {
            using var fixture = new RepositoryFixture();
            byte[] a = RepositoryFixture.Random(Chunk, 1);
            byte[] b = RepositoryFixture.Random(Chunk, 2);
            string path = fixture.WriteFile("disk.img", RepositoryFixture.Concat(a, a, new byte[Chunk], b, a));

            RestorePoint point = fixture.BackUp("vm1", path);

            Assert.Equal(2, fixture.ChunkFiles().Count);
            var chunks = point.Files.Single().Chunks;
            Assert.Equal(5, chunks.Count);
            Assert.Equal(chunks[0], chunks[1]);
            Assert.Null(chunks[2]);
            Assert.NotEqual(chunks[0], chunks[3]);
            Assert.Equal(chunks[0], chunks[4]);
        }

        [Fact]
        public void HolesCostNothingAndTheWholeFileDigestIsTheSha256OfTheSizeAndChunkList()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "sparse.img");
            using (var file = new FileStream(path, FileMode.CreateNew))
            {
                file.SetLength(40L * Chunk);
                file.Position = (17L * Chunk) + 100; // data straddling no boundary
                file.Write(RepositoryFixture.Random(3000, 3), 0, 3000);
                file.Position = (30L * Chunk) - 10; // data straddling a chunk boundary
                file.Write(RepositoryFixture.Random(20, 4), 0, 20);
            }

            RestorePoint point = fixture.BackUp("vm1", path);

            var chunks = point.Files.Single().Chunks;
            Assert.Equal(3, chunks.Count(hash => hash != null));
            Assert.NotNull(chunks[17]);
            Assert.NotNull(chunks[29]);
            Assert.NotNull(chunks[30]);
            Assert.Equal(FileDigestKind.SizeAndChunkListSha256, point.Files.Single().DigestKindValue);
            Assert.Equal(RepositoryFixture.DigestOf(path), point.Files.Single().Digest);
            Assert.Equal(40L * Chunk, point.Size);
        }

        [Fact]
        public void CompressesOnlyWhenThatPays()
        {
            using var fixture = new RepositoryFixture();
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("quiesce, snapshot, thaw. ", Chunk / 25 + 1))).Take(Chunk).ToArray();
            byte[] random = RepositoryFixture.Random(Chunk, 5);
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("mixed.img", RepositoryFixture.Concat(text, random)));

            var chunks = point.Files.Single().Chunks;
            byte[] compressed = File.ReadAllBytes(fixture.Repository.Chunks.PathOf(chunks[0]!));
            byte[] raw = File.ReadAllBytes(fixture.Repository.Chunks.PathOf(chunks[1]!));
            Assert.Equal(ChunkStore.CodecZstd, compressed[3]);
            Assert.True(compressed.Length < Chunk / 4, $"compressed text chunk is {compressed.Length} bytes");
            Assert.Equal((byte)'R', raw[3]);
            Assert.Equal(Chunk + ChunkStore.HeaderLength, raw.Length);
            Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid);

            // The ratio: the new chunks' data over what they took on disk; a backup that adds nothing has none.
            Assert.Equal(2L * Chunk, point.NewChunkBytes);
            Assert.Equal(compressed.Length + raw.Length, point.StoredBytes);
            Assert.Equal(2.0 * Chunk / (compressed.Length + raw.Length), point.CompressionRatio);
            RestorePoint again = fixture.BackUp("vm1", fixture.WriteFile("mixed-again.img", RepositoryFixture.Concat(text, random)));
            Assert.Equal(0, again.NewChunkBytes);
            Assert.Null(again.CompressionRatio);
            Assert.Equal(point.NewChunkBytes, fixture.Repository.GetRestorePoint(point.Id).NewChunkBytes);
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void ABackupReadsStoredChunksIntoItsScratchBufferWhateverTheirCodec(bool encrypted)
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = encrypted ? fixture.NewEncrypted("sealed") : fixture.Repository;
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("freeze, snapshot, thaw; ", Chunk / 24 + 1))).Take(Chunk).ToArray();
            byte[] random = RepositoryFixture.Random(Chunk, 41);
            byte[] zeroBlocks = RepositoryFixture.Random(Chunk, 42);
            Array.Clear(zeroBlocks, 0, Chunk / 2);
            byte[] shortTail = RepositoryFixture.Random(1000, 43);
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", fixture.WriteFile("mixed.img", RepositoryFixture.Concat(text, random, zeroBlocks, shortTail)));
            Assert.True(repository.Chunks.ScratchLength >= repository.Chunks.MaxFileLength);

            IChunkSink sink = repository.Chunks;
            byte[] scratch = Array.Empty<byte>();
            byte[]? firstScratch = null;
            var buffer = new byte[Chunk];
            foreach ((string? hash, byte[] content) in point.Files.Single().Chunks.Zip(new[] { text, random, zeroBlocks, shortTail }, (hash, content) => (hash, content)))
            {
                Array.Clear(buffer, 0, buffer.Length);
                Assert.Equal(content.Length, sink.Read(hash!, buffer, ref scratch));
                Assert.Equal(content, buffer.Take(content.Length).ToArray());
                // One scratch buffer, put in at the first read and kept: no other buffer for the stored bytes.
                Assert.Equal(repository.Chunks.ScratchLength, scratch.Length);
                firstScratch ??= scratch;
                Assert.Same(firstScratch, scratch);
            }

            // What a write leaves in the scratch buffer is no part of what a read gives, and the other way round.
            byte[] other = Enumerable.Reverse(random).ToArray();
            using System.Security.Cryptography.HashAlgorithm sha = sink.NewIdHash();
            sink.Abandon(sink.Write(ChunkStore.Hash(sha, other, Chunk), other, Chunk, ref scratch, CancellationToken.None)!);
            Assert.Same(firstScratch, scratch);
            Assert.Equal(text.Length, sink.Read(point.Files.Single().Chunks[0]!, buffer, ref scratch));
            Assert.Equal(text, buffer);
        }

        [Fact]
        public void AZstdChunkReadsBackAndAChunkStoredWithDeflateStaysReadable()
        {
            using var fixture = new RepositoryFixture();
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("freeze, snapshot, thaw; ", Chunk / 24 + 1))).Take(Chunk - 7).ToArray();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("text.img", text));
            string hash = point.Files.Single().Chunks.Single()!;
            var buffer = new byte[Chunk];
            Assert.Equal(text.Length, fixture.Repository.Chunks.Read(hash, buffer));
            Assert.Equal(text, buffer.Take(text.Length).ToArray());

            // A chunk as repositories made before zstd hold it: header "VQCD" then raw Deflate.
            using (var file = new FileStream(fixture.Repository.Chunks.PathOf(hash), FileMode.Create))
            {
                file.Write(new byte[] { (byte)'V', (byte)'Q', (byte)'C', ChunkStore.CodecDeflate }, 0, ChunkStore.HeaderLength);
                using var deflate = new System.IO.Compression.DeflateStream(file, System.IO.Compression.CompressionLevel.Fastest);
                deflate.Write(text, 0, text.Length);
            }

            Array.Clear(buffer, 0, buffer.Length);
            Assert.Equal(text.Length, fixture.Repository.Chunks.Read(hash, buffer));
            Assert.Equal(text, buffer.Take(text.Length).ToArray());
            Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Theory]
        [InlineData(RepositoryCipher.Aes256Gcm)]
        [InlineData(RepositoryCipher.ChaCha20Poly1305)]
        public void InAnEncryptedRepositoryEveryCodecIsSealedInTheWritersScratchAndReadsBack(RepositoryCipher cipher)
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "sealed"), Chunk, RepositoryKey.Generate(), cipher);
            byte[] halfZero = RepositoryFixture.Concat(new byte[Chunk / 2], RepositoryFixture.Random(Chunk / 2, 5));
            byte[] content = RepositoryFixture.Concat(
                File.ReadAllBytes(fixture.WriteTextAndRandomDisk("text-and-random.img", 6)), // zstd (sealed moving it within the scratch) and raw (copied into it)
                halfZero,                                                                    // zero blocks dropped, sealed in the scratch
                RepositoryFixture.Random(1000, 7));                                          // a short last chunk
            string path = fixture.WriteFile("disk.img", content);

            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", path);

            Assert.Equal(content, RepositoryFixture.ReadFirstFile(repository, point));
            Assert.True(repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Theory]
        [InlineData(null)]
        [InlineData(RepositoryCipher.Aes256Gcm)]
        [InlineData(RepositoryCipher.ChaCha20Poly1305)]
        public void AChunkEncodedInTheWritersOwnBufferForAnUploadReadsBackWithEveryCodec(RepositoryCipher? cipher)
        {
            using var fixture = new RepositoryFixture();
            ChunkStore store = cipher is RepositoryCipher sealing
                ? BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "sealed"), Chunk, RepositoryKey.Generate(), sealing).Chunks
                : fixture.Repository.Chunks;
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("MARKER-PLAINTEXT-TEXT ", Chunk / 22))).Take(Chunk).ToArray();
            byte[] halfZero = RepositoryFixture.Concat(new byte[Chunk / 2], RepositoryFixture.Random(Chunk / 2, 5));
            var expectedCodecs = new[] { ChunkStore.CodecZstd, ChunkStore.CodecRaw, ChunkStore.CodecZeroBlocks, ChunkStore.CodecRaw };
            byte[][] chunks = { text, RepositoryFixture.Random(Chunk, 9), halfZero, RepositoryFixture.Random(1000, 7) };
            for (int i = 0; i < chunks.Length; i++)
            {
                string hash = new string((char)('a' + i), 64);
                byte[] buffer = new byte[store.ScratchLength];
                int storedLength = store.EncodeStored(hash, chunks[i], chunks[i].Length, buffer);

                Assert.Equal(cipher == null ? expectedCodecs[i] : ChunkStore.CodecSealed, buffer[3]);
                var decoded = new byte[Chunk];
                using var stored = new MemoryStream(buffer.Take(storedLength).ToArray(), writable: false);
                Assert.Equal(chunks[i].Length, store.DecodeStored(hash, stored, storedLength, decoded));
                Assert.Equal(chunks[i], decoded.Take(chunks[i].Length).ToArray());

                // As an object's bytes are decoded: from the array itself, a sealed chunk opened in place.
                var fromBytes = new byte[Chunk];
                Assert.Equal(chunks[i].Length, store.DecodeStored(hash, buffer, storedLength, fromBytes));
                Assert.Equal(chunks[i], fromBytes.Take(chunks[i].Length).ToArray());
            }
        }

        [Theory]
        [InlineData(RepositoryCipher.Aes256Gcm)]
        [InlineData(RepositoryCipher.ChaCha20Poly1305)]
        public void ASealedChunkDecodedFromBytesIsRefusedWhenOneByteChangedOrItIsTooLong(RepositoryCipher cipher)
        {
            using var fixture = new RepositoryFixture();
            ChunkStore store = BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "sealed"), Chunk, RepositoryKey.Generate(), cipher).Chunks;
            string hash = new string('a', 64);
            byte[] chunk = RepositoryFixture.Random(Chunk, 9);
            var sealedChunk = new byte[store.ScratchLength + 1];
            int storedLength = store.EncodeStored(hash, chunk, Chunk, sealedChunk);
            var decoded = new byte[Chunk];

            byte[] changed = (byte[])sealedChunk.Clone();
            changed[storedLength / 2] ^= 1;
            Assert.Contains("does not open", Assert.Throws<InvalidDataException>(() => store.DecodeStored(hash, changed, storedLength, decoded)).Message);
            Assert.Contains("does not open", Assert.Throws<InvalidDataException>(() => store.DecodeStored(new string('b', 64), (byte[])sealedChunk.Clone(), storedLength, decoded)).Message);
            Assert.Contains("seals into", Assert.Throws<InvalidDataException>(() => store.DecodeStored(hash, (byte[])sealedChunk.Clone(), storedLength + 1, decoded)).Message);
            Assert.Equal(new byte[Chunk], decoded);
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void ARestoreReadTakesASealedChunkOnItsSealWhileVerifyAndAPlainRepositoryHashIt(bool encrypted)
        {
            // Other content stored under a chunk's name by someone able to write it as the repository does: in an
            // encrypted repository only a key holder can, and a key holder could name it to match as well.
            using var fixture = new RepositoryFixture();
            BackupRepository repository = encrypted
                ? BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "sealed"), Chunk, RepositoryKey.Generate(), RepositoryCipher.Aes256Gcm)
                : fixture.Repository;
            byte[] original = RepositoryFixture.Random(Chunk, 11);
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", fixture.WriteFile("disk.img", original));
            string hash = point.Files[0].Chunks[0]!;
            byte[] other = RepositoryFixture.Random(Chunk, 12);
            var stored = new byte[repository.Chunks.ScratchLength];
            int storedLength = repository.Chunks.EncodeStored(hash, other, Chunk, stored);
            File.Delete(repository.Chunks.PathOf(hash));
            File.WriteAllBytes(repository.Chunks.PathOf(hash), stored.Take(storedLength).ToArray());
            var read = new byte[Chunk];

            string? restoreRead = repository.ReadVerifiedChunk(hash, read, Chunk, ChunkCheck.SealOrHash, null, out _);
            string? verifyRead = repository.ReadVerifiedChunk(hash, read, Chunk, ChunkCheck.Hash, null, out _);

            if (encrypted)
            {
                Assert.Null(restoreRead);
            }
            else
            {
                Assert.Contains("hashes to", restoreRead);
            }

            Assert.Contains("hashes to", verifyRead);
            Assert.False(repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Fact]
        public void AScratchBufferWithoutRoomToSealIsRefusedBeforeAnythingIsWritten()
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = fixture.NewEncrypted("sealed");
            byte[] data = RepositoryFixture.Random(Chunk, 8);

            var refused = Assert.Throws<ArgumentException>(() => repository.Chunks.Write(new string('a', 64), data, Chunk, new byte[Chunk]));

            Assert.Contains(repository.Chunks.ScratchLength.ToString(System.Globalization.CultureInfo.InvariantCulture), refused.Message);
            Assert.Empty(Directory.EnumerateFiles(repository.Chunks.Root, "*", SearchOption.AllDirectories));
        }

        [Fact]
        public void AZstdChunkThatIsCorruptOrInflatesBeyondTheChunkSizeIsDamaged()
        {
            using var fixture = new RepositoryFixture();
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("freeze, snapshot, thaw; ", Chunk / 24 + 1))).Take(Chunk).ToArray();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("text.img", text));
            string hash = point.Files.Single().Chunks.Single()!;
            string path = fixture.Repository.Chunks.PathOf(hash);
            byte[] stored = File.ReadAllBytes(path);

            byte[] truncated = stored.Take(stored.Length - 3).ToArray();
            byte[] garbage = stored.Take(ChunkStore.HeaderLength).Concat(Enumerable.Repeat((byte)0x5a, 64)).ToArray();
            // A valid frame of twice the chunk size: one the chunk size does not bound would fill memory.
            byte[] tooLong;
            using (var compressor = new ZstdSharp.Compressor(ChunkStore.ZstdLevel))
            {
                tooLong = stored.Take(ChunkStore.HeaderLength).Concat(compressor.Wrap(new byte[2 * Chunk]).ToArray()).ToArray();
            }

            foreach (byte[] damaged in new[] { truncated, garbage, tooLong })
            {
                File.WriteAllBytes(path, damaged);
                Assert.Throws<InvalidDataException>(() => fixture.Repository.Chunks.Read(hash, new byte[Chunk]));
                Assert.False(fixture.Repository.Verify(point, CancellationToken.None).IsValid);
            }
        }

        [Fact]
        public void TheEntropyEstimateSeesRandomDataAsIncompressibleAndMixedDataAsWorthATry()
        {
            byte[] random = RepositoryFixture.Random(4 << 20, 30);
            byte[] halfZero = RepositoryFixture.Concat(new byte[2 << 20], RepositoryFixture.Random(2 << 20, 31));
            byte[] text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("quiesce, snapshot, thaw. ", 1000)));

            byte[] textAndZeros = RepositoryFixture.Concat(new byte[2 << 20], text);

            Assert.True(ChunkStore.LooksIncompressible(random, random.Length));
            Assert.True(ChunkStore.LooksIncompressible(random, 700));
            Assert.True(ChunkStore.LooksIncompressible(random, 5000));
            Assert.True(ChunkStore.LooksIncompressible(halfZero, halfZero.Length));
            Assert.False(ChunkStore.LooksIncompressible(text, text.Length));
            Assert.False(ChunkStore.LooksIncompressible(textAndZeros, textAndZeros.Length));
            Assert.False(ChunkStore.LooksIncompressible(new byte[8192], 8192));
        }

        [Theory]
        [InlineData(0)]
        [InlineData(1000)]
        public void AChunkOfZeroBlocksAndRandomDataDropsTheZeroBlocksAndReadsBack(int shorter)
        {
            using var fixture = new RepositoryFixture();
            int length = Chunk - shorter;
            byte[] content = RepositoryFixture.Random(length, 32);
            Array.Clear(content, 0, Chunk / 2); // the first half: zero blocks
            Array.Clear(content, Chunk / 2 + ChunkStore.ZeroBlockLength, ChunkStore.ZeroBlockLength); // one more, between data
            Array.Clear(content, length - 100, 100); // a zero tail inside a data block stays
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("half.img", content));

            string hash = point.Files.Single().Chunks.Single()!;
            byte[] stored = File.ReadAllBytes(fixture.Repository.Chunks.PathOf(hash));
            Assert.Equal((byte)'Z', stored[3]);
            int blocks = (length + ChunkStore.ZeroBlockLength - 1) / ChunkStore.ZeroBlockLength;
            int zeroBlocks = (Chunk / 2 / ChunkStore.ZeroBlockLength) + 1;
            Assert.Equal(ChunkStore.HeaderLength + 4 + ((blocks + 7) / 8) + length - (zeroBlocks * ChunkStore.ZeroBlockLength), stored.Length);
            var buffer = new byte[Chunk];
            Assert.Equal(length, fixture.Repository.Chunks.Read(hash, buffer));
            Assert.Equal(content, buffer.Take(length).ToArray());
            Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Theory]
        [InlineData(-1, "shorter than its bitmap says")]
        [InlineData(1, "longer than its bitmap says")]
        [InlineData(-(Chunk / 2) - 1, "bitmap is cut short")] // header, length and one byte of the two-byte bitmap
        public void AZeroBlockChunkCutShortOrTooLongIsDamagedInAFileAndInAnObjectsBytes(int change, string reason)
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 33);
            Array.Clear(content, 0, Chunk / 2);
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("half.img", content));
            string hash = point.Files.Single().Chunks.Single()!;
            string path = fixture.Repository.Chunks.PathOf(hash);
            byte[] stored = File.ReadAllBytes(path);
            byte[] changed = stored.Concat(new byte[Math.Max(change, 0)]).Take(stored.Length + change).ToArray();
            File.WriteAllBytes(path, changed);

            Assert.Contains(reason, Assert.Throws<InvalidDataException>(() => fixture.Repository.Chunks.Read(hash, new byte[Chunk])).Message);
            Assert.Contains(reason, Assert.Throws<InvalidDataException>(() => fixture.Repository.Chunks.DecodeStored(hash, changed, changed.Length, new byte[Chunk])).Message);
            Assert.False(fixture.Repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Fact]
        public void ASecondBackupStoresOnlyTheChangedChunks()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(20 * Chunk, 6);
            string path = fixture.WriteFile("disk.img", content);
            RestorePoint first = fixture.BackUp("vm1", path);
            int before = fixture.ChunkFiles().Count;

            content[(7 * Chunk) + 5] ^= 0xFF;
            File.WriteAllBytes(path, content);
            RestorePoint second = fixture.BackUp("vm1", path);

            Assert.Equal(20, before);
            Assert.Equal(21, fixture.ChunkFiles().Count);
            Assert.Equal(Chunk + ChunkStore.HeaderLength, second.StoredBytes);
            Assert.Equal(20L * (Chunk + ChunkStore.HeaderLength), first.StoredBytes);
            Assert.Equal(19, first.Files[0].Chunks.Intersect(second.Files[0].Chunks).Count());
            Assert.True(fixture.Repository.Verify(first, CancellationToken.None).IsValid);
            Assert.True(fixture.Repository.Verify(second, CancellationToken.None).IsValid);
        }

        [Fact]
        public void VerifyNamesTheFileAFlippedByteBreaks()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 7));
            string nvram = fixture.WriteFile("nvram.bin", RepositoryFixture.Random(Chunk / 2, 8));
            RestorePoint point = fixture.BackUp("vm1", disk, nvram);
            string victim = fixture.Repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            byte[] stored = File.ReadAllBytes(victim);
            stored[stored.Length / 2] ^= 0x01;
            File.WriteAllBytes(victim, stored);

            RestorePointVerification result = fixture.Repository.Verify(point, CancellationToken.None);

            Assert.False(result.IsValid);
            ChunkProblem problem = Assert.Single(result.Problems);
            Assert.Equal(ChunkProblemKind.Damaged, problem.ProblemValue);
            Assert.Equal(point.Files[0].Chunks[1], problem.Hash);
            Assert.Equal(new[] { "disk.img" }, problem.Files);
            Assert.Equal(new[] { "disk.img" }, result.BrokenFiles);
        }

        [Fact]
        public void VerifyReportsAMissingChunkOnceWithEveryFileItBreaks()
        {
            using var fixture = new RepositoryFixture();
            byte[] shared = RepositoryFixture.Random(Chunk, 9);
            string a = fixture.WriteFile("a.img", RepositoryFixture.Concat(RepositoryFixture.Random(Chunk, 10), shared));
            string b = fixture.WriteFile("b.img", shared);
            string c = fixture.WriteFile("c.img", RepositoryFixture.Random(100, 11));
            RestorePoint point = fixture.BackUp("vm1", a, b, c);
            File.Delete(fixture.Repository.Chunks.PathOf(point.Files[1].Chunks[0]!));

            RestorePointVerification result = fixture.Repository.Verify(point, CancellationToken.None);

            ChunkProblem problem = Assert.Single(result.Problems);
            Assert.Equal(ChunkProblemKind.Missing, problem.ProblemValue);
            Assert.Equal(new[] { "a.img", "b.img" }, problem.Files);
            Assert.Equal(new[] { "a.img", "b.img" }, result.BrokenFiles);
            Assert.Equal(4, result.ChunksChecked);
        }

        [Fact]
        public void ASchemaOneManifestWithAContentSha256StillVerifiesAndReads()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Concat(new byte[2 * Chunk], RepositoryFixture.Random(Chunk + 7, 21));
            string path = fixture.WriteFile("old.img", content);
            RestorePoint point = fixture.BackUp("vm1", path);
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            string text = File.ReadAllText(manifest);
            string schemaOne = Regex.Replace(text, "\"schemaVersion\":\\s*3", "\"schemaVersion\": 1")
                .Replace("\"sizeAndChunksSha256\"", "\"sha256\"", StringComparison.Ordinal)
                .Replace(point.Files[0].Digest, RepositoryFixture.Sha256Of(path), StringComparison.Ordinal);
            Assert.NotEqual(text, schemaOne);
            File.WriteAllText(manifest, schemaOne);

            RestorePoint old = fixture.Repository.GetRestorePoint(point.Id);
            Assert.Equal(FileDigestKind.ContentSha256, old.Files[0].DigestKindValue);
            Assert.True(fixture.Repository.Verify(old, CancellationToken.None).IsValid);
            var rebuilt = new byte[content.Length];
            new RestorePointReader(fixture.Repository, old).Read(old.Files[0], (offset, data, length) =>
            {
                if (data != null)
                {
                    Array.Copy(data, 0, rebuilt, offset, length);
                }
            }, CancellationToken.None);
            Assert.Equal(content, rebuilt);

            File.WriteAllText(manifest, schemaOne.Replace(RepositoryFixture.Sha256Of(path), new string('0', 64), StringComparison.Ordinal));
            Assert.Equal(new[] { "old.img" }, fixture.Repository.Verify(fixture.Repository.GetRestorePoint(point.Id), CancellationToken.None).FileHashMismatches);
        }

        [Fact]
        public void VerifyCatchesAManifestWhoseWholeFileHashDiffers()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk + 1, 12)));
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            File.WriteAllText(manifest, File.ReadAllText(manifest).Replace(point.Files[0].Digest, new string('0', 64)));

            RestorePointVerification result = fixture.Repository.Verify(fixture.Repository.GetRestorePoint(point.Id), CancellationToken.None);

            Assert.Empty(result.Problems);
            Assert.Equal(new[] { "disk.img" }, result.FileHashMismatches);
            Assert.False(result.IsValid);
        }

        [Fact]
        public void BeforeTheManifestEachFolderTheChunksWentToIsSyncedOnceAndAllAtOnce()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("disk.img", RepositoryFixture.Concat(Enumerable.Range(0, 12).Select(i => RepositoryFixture.Random(Chunk, 40 + i)).ToArray()));
            var ops = new FolderSyncRecorder(fixture.Repository.Chunks.Root);

            RestorePoint point = RepositoryFixture.BackUp(BackupRepository.Open(fixture.RepositoryPath, ops), "vm1", path);

            var folders = point.Files.Single().Chunks.Select(hash => Path.GetDirectoryName(fixture.Repository.Chunks.PathOf(hash!))!).Distinct().OrderBy(f => f, StringComparer.Ordinal);
            Assert.Equal(folders, ops.Synced.OrderBy(f => f, StringComparer.Ordinal));
        }

        /// <summary>
        /// Records the chunk folders synced; the first two calls return only once both are in, so folders synced one after
        /// the other fail the backup.
        /// </summary>
        private sealed class FolderSyncRecorder : RepositoryFileOps
        {
            private readonly string _chunks;
            private readonly CountdownEvent _firstTwo = new CountdownEvent(2);
            private int _calls;

            public FolderSyncRecorder(string chunks) => _chunks = chunks;

            public ConcurrentQueue<string> Synced { get; } = new ConcurrentQueue<string>();

            public override void SyncDirectory(string directory)
            {
                if (directory.StartsWith(_chunks, StringComparison.Ordinal))
                {
                    Synced.Enqueue(directory);
                    if (Interlocked.Increment(ref _calls) <= 2)
                    {
                        _firstTwo.Signal();
                    }

                    if (!_firstTwo.Wait(TimeSpan.FromSeconds(30)))
                    {
                        throw new IOException($"the chunk folder '{directory}' was synced alone: no other folder's sync started within 30 s");
                    }
                }

                base.SyncDirectory(directory);
            }
        }
    }
}
