using System;
using System.Collections.Generic;
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
    /// Backups straight into a repository on a real Ceph RGW, through the same engine as into a folder: chunks
    /// already in the bucket are not sent again, the manifest comes last, and an upload that fails half way
    /// leaves a repository that verifies and that the next backup completes.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwBackupTests : RgwTestBase
    {
        public RgwBackupTests(RgwServer server)
            : base(server)
        {
        }

        [RgwFact]
        public void A_backup_to_s3_stores_each_chunk_once_and_a_second_sends_only_what_changed()
        {
            byte[] repeated = RepositoryFixture.Random(Chunk, 1);
            byte[] content = RepositoryFixture.Concat(repeated, RepositoryFixture.Random(2 * Chunk, 5), new byte[2 * Chunk], repeated, RepositoryFixture.Random(500, 2));
            string disk = Local.WriteFile("disk.img", content);
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), Chunk, key: null);

            RestorePoint first = RepositoryFixture.BackUp(remote, "web", disk);
            // Four distinct data chunks (the sixth repeats the first); the zeros are never stored.
            int afterFirst = ChunkObjects(remote).Count;
            content[10] ^= 0xff;
            File.WriteAllBytes(disk, content);
            RestorePoint second = RepositoryFixture.BackUp(remote, "web", disk);

            Assert.Equal(4, afterFirst);
            Assert.Equal((long)((3 * Chunk) + 500), first.NewChunkBytes);
            Assert.Equal((long)Chunk, second.NewChunkBytes);
            Assert.Equal(5, ChunkObjects(remote).Count);
            Assert.Equal(remote.Location, second.Repository);
            Assert.Equal(new[] { first.Id, second.Id }, remote.ListRestorePoints().Select(point => point.Id));
            Assert.True(RestorePointVerifier.Verify(remote, remote.GetRestorePoint(second.Id), CancellationToken.None).IsValid);
            Assert.Equal(content, RepositoryFixture.ReadFirstFile(remote, remote.GetRestorePoint(second.Id)));
        }

        [RgwFact]
        public void An_upload_that_fails_half_way_publishes_nothing_and_the_next_backup_completes_the_repository()
        {
            string disk = Local.WriteFile("disk.img", RepositoryFixture.Random(6 * Chunk, 3));
            S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepository failing = ObjectRepository.OpenOrCreate(new FailingChunkUploads(storage, failAfter: 2), Chunk, key: null);

            var error = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(failing, "web", disk));

            Assert.Equal("BackupCopyFailed", error.ErrorId);
            Assert.Contains("connection dropped", error.Message);
            Assert.Empty(failing.ListRestorePoints());
            int left = ChunkObjects(failing).Count;
            Assert.InRange(left, 2, 5);

            using ObjectRepository remote = ObjectRepository.Open(new S3ObjectStorage(storage.Address, Server.Settings()));
            RestorePoint point = RepositoryFixture.BackUp(remote, "web", disk);

            Assert.Equal(6, ChunkObjects(remote).Count);
            Assert.Equal((long)(6 - left) * Chunk, point.NewChunkBytes);
            Assert.True(RestorePointVerifier.Verify(remote, point, CancellationToken.None).IsValid);
        }

        private static List<StoredObject> ChunkObjects(ObjectRepository repository) => repository.Storage.List("chunks/").ToList();

        /// <summary>Object storage whose chunk uploads fail once <paramref name="failAfter"/> have been stored, as a dropped connection would.</summary>
        private sealed class FailingChunkUploads : DelegatingObjectStorage
        {
            private int _left;

            public FailingChunkUploads(IObjectStorage inner, int failAfter)
                : base(inner)
            {
                _left = failAfter;
            }

            public override bool CreateIfAbsent(string key, IReadOnlyList<ArraySegment<byte>> parts)
            {
                if (key.StartsWith("chunks/", StringComparison.Ordinal) && Interlocked.Decrement(ref _left) < 0)
                {
                    throw new IOException("The connection dropped.");
                }

                return Inner.CreateIfAbsent(key, parts);
            }
        }
    }
}
