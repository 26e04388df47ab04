using System;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>Manifest schema 3: a digest that pins the size, each file's owner and mode, and what a restore allocates.</summary>
    public class ManifestSchemaTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void LoweringTheSizeOverAnAllZeroLastChunkIsCaught()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Concat(RepositoryFixture.Random(2 * Chunk, 1), new byte[Chunk]));
            RestorePoint point = fixture.BackUp("vm1", path);
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            long shorter = (3L * Chunk) - 100; // still three chunks, the last one "zero"
            File.WriteAllText(manifest, Regex.Replace(File.ReadAllText(manifest), $"\"size\": {3 * Chunk}", $"\"size\": {shorter}"));
            RestorePoint edited = fixture.Repository.GetRestorePoint(point.Id);
            Assert.Equal(shorter, edited.Files[0].Size);

            RestorePointVerification result = fixture.Repository.Verify(edited, CancellationToken.None);

            Assert.Equal(new[] { "a.img" }, result.FileHashMismatches);
            Assert.False(result.IsValid);
        }

        [Fact]
        public void ASchemaTwoManifestStillReadsAndVerifies()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Concat(RepositoryFixture.Random(Chunk + 5, 2), new byte[Chunk]);
            string path = fixture.WriteFile("old.img", content);
            RestorePoint point = fixture.BackUp("vm1", path);
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            string schemaTwo = Regex.Replace(File.ReadAllText(manifest), "\"schemaVersion\":\\s*3", "\"schemaVersion\": 2")
                .Replace("\"sizeAndChunksSha256\"", "\"chunkListSha256\"", StringComparison.Ordinal)
                .Replace(point.Files[0].Digest, RepositoryFixture.ChunkListDigestOf(path), StringComparison.Ordinal);
            schemaTwo = Regex.Replace(schemaTwo, "\\s*\"(allocatedBytes|owner)\": (\\d+|null|\\{[^}]*\\}),", string.Empty);
            File.WriteAllText(manifest, schemaTwo);

            RestorePoint old = fixture.Repository.GetRestorePoint(point.Id);

            Assert.Equal(FileDigestKind.ChunkListSha256, old.Files[0].DigestKindValue);
            Assert.Null(old.Files[0].AllocatedBytes);
            Assert.Null(old.Files[0].Owner);
            Assert.True(fixture.Repository.Verify(old, CancellationToken.None).IsValid);
        }

        [ThrowawayUserFact]
        public void EachFilesOwnerAndModeAreRecorded()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 3));
            user.Own(path);
            File.SetUnixFileMode(path, (UnixFileMode)Convert.ToInt32("4640", 8)); // setuid is never recorded

            RestorePoint point = fixture.BackUp("vm1", path);
            FileOwner owner = fixture.Repository.GetRestorePoint(point.Id).Files[0].OwnerValue!;

            Assert.Equal(user.Uid, owner.Uid);
            Assert.Equal(user.Gid, owner.Gid);
            Assert.Equal("0640", owner.ModeText);
            Assert.Contains("\"mode\": \"0640\"", File.ReadAllText(Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json")));
        }

        [Fact]
        public void AllocatedBytesCountTheBlocksThatHoldData()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = new byte[4 * Chunk];
            RepositoryFixture.Random(5000, 4).CopyTo(content, 0);                 // blocks 0 and 1
            RepositoryFixture.Random(10, 5).CopyTo(content, (2 * Chunk) + 8192);  // one block
            string path = fixture.WriteFile("sparse.img", content);

            RestorePoint point = fixture.BackUp("vm1", path);

            Assert.Equal(3 * 4096, point.Files[0].AllocatedBytes);
            Assert.Equal(3 * 4096, fixture.Repository.GetRestorePoint(point.Id).Files[0].AllocatedBytes);
        }

        [LinuxFact] // the owner is recorded on Unix only
        public void AnOwnerOrAllocationThatCannotBeIsRefused()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 6)));
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            string text = File.ReadAllText(manifest);

            File.WriteAllText(manifest, Regex.Replace(text, "\"allocatedBytes\": \\d+", "\"allocatedBytes\": 99999999"));
            Assert.Equal("RestorePointUnreadable", Assert.Throws<VmQuiesceException>(() => fixture.Repository.GetRestorePoint(point.Id)).ErrorId);
            File.WriteAllText(manifest, Regex.Replace(text, "\"mode\": \"0\\d+\"", "\"mode\": \"0x7ff\""));
            Assert.Equal("RestorePointUnreadable", Assert.Throws<VmQuiesceException>(() => fixture.Repository.GetRestorePoint(point.Id)).ErrorId);
            File.WriteAllText(manifest, Regex.Replace(text, "\"size\": \\d+", "\"size\": -1"));
            VmQuiesceException negative = Assert.Throws<VmQuiesceException>(() => fixture.Repository.GetRestorePoint(point.Id));
            Assert.Equal("RestorePointUnreadable", negative.ErrorId);
            Assert.Contains("'size' is -1", negative.Message, StringComparison.Ordinal);
        }
    }
}
