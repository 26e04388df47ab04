using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>A damaged chunk must not poison later backups of the same data: they store it anew, and say so.</summary>
    public class DamagedChunkTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void AChunkCutShortIsStoredAnewByTheNextBackupWhichRepairsTheOlderPoint()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(3 * Chunk, 1));
            RestorePoint older = fixture.BackUp("vm1", disk);
            string chunk = fixture.Repository.Chunks.PathOf(older.Files[0].Chunks[1]!);
            byte[] whole = File.ReadAllBytes(chunk);
            File.WriteAllBytes(chunk, whole.Take(whole.Length / 2).ToArray());
            Assert.False(fixture.Repository.Verify(older, CancellationToken.None).IsValid);
            var warnings = new List<string>();

            RestorePoint newer = BackUp(fixture, disk, warnings);

            Assert.True(fixture.Repository.Verify(newer, CancellationToken.None).IsValid);
            Assert.True(fixture.Repository.Verify(older, CancellationToken.None).IsValid);
            Assert.Contains(older.Files[0].Chunks[1]!, warnings.Single());
            Assert.Contains("stored it anew", warnings.Single());
            Assert.True(newer.StoredBytes > 0);
        }

        [Fact]
        public void AFlippedBitThatTestVmBackupFoundIsStoredAnewByTheNextBackup()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(2 * Chunk, 2));
            RestorePoint older = fixture.BackUp("vm1", disk);
            string chunk = fixture.Repository.Chunks.PathOf(older.Files[0].Chunks[0]!);
            byte[] bytes = File.ReadAllBytes(chunk);
            bytes[bytes.Length - 1] ^= 0x01; // same length, same header: only hashing sees it
            File.WriteAllBytes(chunk, bytes);

            RestorePoint poisoned = BackUp(fixture, disk, new List<string>());
            Assert.False(fixture.Repository.Verify(poisoned, CancellationToken.None).IsValid);

            RestorePointVerification found = fixture.Repository.Verify(older, CancellationToken.None);
            Assert.Equal(1, BackupRepository.Open(fixture.RepositoryPath).RecordDamage(found));
            var warnings = new List<string>();
            RestorePoint repaired = BackUp(fixture, disk, warnings);

            Assert.Contains("Test-VmBackup found it damaged", warnings.Single());
            foreach (RestorePoint point in new[] { older, poisoned, repaired })
            {
                Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid, point.Id);
            }

            Assert.Empty(Directory.EnumerateFiles(Path.Combine(fixture.RepositoryPath, "damaged")));
        }

        [LinuxFact]
        public void AChunkThatIsALinkIsReplacedByARealFile()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 3));
            RestorePoint older = fixture.BackUp("vm1", disk);
            string chunk = fixture.Repository.Chunks.PathOf(older.Files[0].Chunks[0]!);
            string elsewhere = Path.Combine(fixture.Root, "elsewhere");
            File.Move(chunk, elsewhere);
            File.CreateSymbolicLink(chunk, elsewhere);

            BackUp(fixture, disk, new List<string>());

            Assert.Null(new FileInfo(chunk).LinkTarget);
            Assert.True(fixture.Repository.Verify(older, CancellationToken.None).IsValid);
        }

        [Fact]
        public void PruneForgetsTheDamageOfChunksNoPointUsesAnyMore()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 4)));
            fixture.Repository.Chunks.Damaged.Record(point.Files[0].Chunks[0]!);

            fixture.Repository.Prune(fixture.Repository.PlanRemoval(new[] { point.Id }, e => throw e), true, false, CancellationToken.None);

            Assert.Empty(Directory.EnumerateFiles(Path.Combine(fixture.RepositoryPath, "damaged")));
        }

        [Fact]
        public void AWrongChunkSizeInTheMarkerIsBlamedOnTheMarkerNotOnEveryChunk()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(3 * Chunk, 5)));
            string marker = Path.Combine(fixture.RepositoryPath, "vmquiesce-repository.json");
            File.WriteAllText(marker, File.ReadAllText(marker).Replace($"\"chunkSize\": {Chunk}", $"\"chunkSize\": {2 * Chunk}", StringComparison.Ordinal));
            BackupRepository wrong = BackupRepository.Open(fixture.RepositoryPath);

            var e = Assert.Throws<VmQuiesceException>(() => wrong.Verify(wrong.GetRestorePoint(point.Id), CancellationToken.None));

            Assert.Equal("RestorePointChunkSizeMismatch", e.ErrorId);
            Assert.Contains(marker, e.Message);
            Assert.Contains($"set \"chunkSize\" in it back to {Chunk}", e.Remedy);
            Assert.DoesNotContain("delete the", e.Remedy, StringComparison.OrdinalIgnoreCase);
        }

        private static RestorePoint BackUp(RepositoryFixture fixture, string disk, List<string> warnings) =>
            new BackupEngine(BackupRepository.Open(fixture.RepositoryPath), workers: 2)
                .Run(new PlainImageSource("vm1", new[] { disk }), new QuiesceOptions { Required = Consistency.Crash }, new OperationHost(warn: text => { lock (warnings) { warnings.Add(text); } }), CancellationToken.None).RestorePoint;
    }
}
