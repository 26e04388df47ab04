using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Copies between a folder repository and one on a real Ceph RGW, both ways: only missing chunks travel,
    /// every chunk is verified as it is read, and the copy is a whole restore point that verifies where it lands.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwRestorePointCopyTests : RgwTestBase
    {
        public RgwRestorePointCopyTests(RgwServer server)
            : base(server)
        {
        }

        [RgwFact]
        public void A_copy_to_s3_and_back_is_a_whole_restore_point_and_sends_only_missing_chunks()
        {
            byte[] shared = RepositoryFixture.Random(3 * RepositoryFixture.ChunkSize, seed: 1);
            string disk = Local.WriteFile("disk.img", RepositoryFixture.Concat(shared, new byte[RepositoryFixture.ChunkSize], RepositoryFixture.Random(1000, seed: 2)));
            RestorePoint first = Local.BackUp("web", disk);
            File.WriteAllBytes(disk, RepositoryFixture.Concat(shared, RepositoryFixture.Random(RepositoryFixture.ChunkSize, seed: 3)));
            RestorePoint second = Local.BackUp("web", disk);

            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, key: null);
            RestorePointCopyResult copiedFirst = RestorePointCopy.Copy(Local.Repository, first, remote, CancellationToken.None);
            RestorePointCopyResult copiedSecond = RestorePointCopy.Copy(Local.Repository, second, remote, CancellationToken.None);
            RestorePointCopyResult again = RestorePointCopy.Copy(Local.Repository, second, remote, CancellationToken.None);

            Assert.Equal((4L, 4L, 0L), (copiedFirst.Chunks, copiedFirst.ChunksCopied, copiedFirst.ChunksAlreadyPresent));
            Assert.Equal((4L, 1L, 3L), (copiedSecond.Chunks, copiedSecond.ChunksCopied, copiedSecond.ChunksAlreadyPresent));
            Assert.True(again.AlreadyPresent);
            Assert.Equal(new[] { first.Id, second.Id }, remote.ListRestorePoints().Select(point => point.Id));
            Assert.True(RestorePointVerifier.Verify(remote, remote.GetRestorePoint(second.Id), CancellationToken.None).IsValid);

            // And back into a new folder repository, which the folder code opens, verifies and reads.
            string backPath = Path.Combine(Local.Root, "back");
            BackupRepository back = BackupRepository.OpenOrCreate(backPath, RepositoryFixture.ChunkSize);
            using (ObjectRepository backObjects = ObjectRepository.Open(new FileObjectStorage(backPath)))
            {
                RestorePointCopy.Copy(remote, remote.GetRestorePoint(second.Id), backObjects, CancellationToken.None);
            }

            RestorePoint restored = BackupRepository.Open(backPath).GetRestorePoint(second.Id);
            Assert.True(back.Verify(restored, CancellationToken.None).IsValid);
            using var content = new MemoryStream();
            new RestorePointReader(back, restored).Read(restored.Files[0], (offset, buffer, length) => content.Write(buffer ?? new byte[length], 0, length), CancellationToken.None);
            Assert.Equal(File.ReadAllBytes(disk), content.ToArray());
        }

        [RgwFact]
        public void A_damaged_source_chunk_stops_the_copy_before_the_manifest()
        {
            string disk = Local.WriteFile("disk.img", RepositoryFixture.Random(2 * RepositoryFixture.ChunkSize, seed: 4));
            RestorePoint point = Local.BackUp("db", disk);
            string victim = Local.Repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            byte[] bytes = File.ReadAllBytes(victim);
            bytes[^1] ^= 0xff;
            File.WriteAllBytes(victim, bytes);

            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, key: null);
            var error = Assert.Throws<VmQuiesceException>(() => RestorePointCopy.Copy(Local.Repository, point, remote, CancellationToken.None));

            Assert.Equal("CopySourceDamaged", error.ErrorId);
            Assert.Contains(point.Files[0].Chunks[1]!, error.Message);
            Assert.Empty(remote.ListRestorePoints());
            Assert.False(remote.HasChunk(point.Files[0].Chunks[1]!));
        }

        [RgwFact]
        public void A_prefix_that_holds_something_else_is_not_taken_over()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            storage.CreateIfAbsent("photos/cat.jpg", new[] { new ArraySegment<byte>(new byte[] { 1, 2, 3 }) });

            var error = Assert.Throws<VmQuiesceException>(() => ObjectRepository.OpenOrCreate(storage, RepositoryFixture.ChunkSize, key: null));

            Assert.Equal("RepositoryNotRecognized", error.ErrorId);
            Assert.Contains(storage.Location, error.Message);
            Assert.False(storage.Exists("vmquiesce-repository.json"));
        }

        [RgwFact]
        public void Chunk_size_mismatch_is_refused()
        {
            string disk = Local.WriteFile("disk.img", RepositoryFixture.Random(1000, seed: 5));
            RestorePoint point = Local.BackUp("db", disk);
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), 2 * RepositoryFixture.ChunkSize, key: null);

            Assert.Equal("RepositoryChunkSizeMismatch", Assert.Throws<VmQuiesceException>(() => RestorePointCopy.Copy(Local.Repository, point, remote, CancellationToken.None)).ErrorId);
        }
    }
}
