using System;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Encrypted repositories on a real Ceph RGW: the same sealed format as in a folder, copies between repositories
    /// with the same key, other keys and none, and objects changed in the bucket by someone without the key.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwEncryptedRepositoryTests : RgwTestBase
    {
        private const string VmName = "secret-vm-name";

        public RgwEncryptedRepositoryTests(RgwServer server)
            : base(server)
        {
        }

        /// <summary>The same place opened anew, as another process would: the key comes from this host's key file.</summary>
        private ObjectRepository Reopen(ObjectRepository repository) =>
            ObjectRepository.Open(new S3ObjectStorage(S3RepositoryAddress.Parse(repository.Location), Server.Settings()));

        private static void Overwrite(ObjectRepository repository, string key, byte[] content) =>
            repository.Storage.Replace(key, new[] { new ArraySegment<byte>(content) });

        [RgwFact]
        public void The_loser_of_two_hosts_creating_one_repository_opens_the_winners_and_keeps_no_key_file_of_its_own()
        {
            S3ObjectStorage storage = Server.NewStorage();
            Directory.CreateDirectory(HostKeyStore.Folder);
            var before = Directory.GetFiles(HostKeyStore.Folder).ToHashSet();
            ObjectRepository? winner = null;
            var racing = new RacingMarker(storage, () => winner = ObjectRepository.OpenOrCreate(new S3ObjectStorage(storage.Address, Server.Settings()), RepositoryFixture.ChunkSize, RepositoryKey.Generate()));

            using ObjectRepository loser = ObjectRepository.OpenOrCreate(racing, RepositoryFixture.ChunkSize, RepositoryKey.Generate());

            using (winner)
            {
                Assert.Equal(winner!.Encryption.RepositoryId, loser.Encryption.RepositoryId);
                Assert.Equal(new[] { HostKeyStore.PathOf(winner.Encryption.RepositoryId!) }, Directory.GetFiles(HostKeyStore.Folder).Where(file => !before.Contains(file)));
            }
        }

        [RgwFact]
        public void A_failed_first_backup_leaves_an_empty_prefix_and_no_key_file_but_a_repository_in_use_stays()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepository made = ObjectRepository.OpenOrCreate(storage, RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            string keyFile = HostKeyStore.PathOf(made.Encryption.RepositoryId!);
            Assert.True(File.Exists(keyFile));
            using (ObjectRepository otherHost = ObjectRepository.Open(new S3ObjectStorage(storage.Address, Server.Settings())))
            using (otherHost.LockShared("Invoke-VmQuiescedBackup"))
            {
                Assert.False(made.RemoveIfUnused());
            }

            Assert.True(made.RemoveIfUnused());

            Assert.Empty(storage.List(string.Empty));
            Assert.False(File.Exists(keyFile));
            using ObjectRepository used = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            RepositoryFixture.BackUp(used, VmName, Local.WriteTextAndRandomDisk("disk.img", 1));
            Assert.False(used.RemoveIfUnused());
            using ObjectRepository reopened = Reopen(used);
            Assert.Single(reopened.ListRestorePoints());
        }

        /// <summary>Another host creates the repository just before this one's marker is written.</summary>
        private sealed class RacingMarker : DelegatingObjectStorage
        {
            private readonly Action _otherHost;

            public RacingMarker(IObjectStorage inner, Action otherHost)
                : base(inner)
            {
                _otherHost = otherHost;
            }

            public override bool CreateIfAbsent(string key, System.Collections.Generic.IReadOnlyList<ArraySegment<byte>> parts)
            {
                if (key == BackupRepository.MarkerName)
                {
                    _otherHost();
                }

                return Inner.CreateIfAbsent(key, parts);
            }
        }

        [RgwFact]
        public void An_encrypted_point_copied_to_s3_under_another_key_is_renamed_sealed_and_reads_back_into_a_folder()
        {
            BackupRepository source = Local.NewEncrypted("enc");
            string disk = Local.WriteTextAndRandomDisk("disk.img", 1);
            RestorePoint point = RepositoryFixture.BackUp(source, VmName, disk);

            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            RestorePointCopyResult result = RestorePointCopy.Copy(source, point, remote, CancellationToken.None);

            using ObjectRepository reopened = Reopen(remote);
            Assert.True(reopened.Encryption.IsEncrypted);
            Assert.True(reopened.Encryption.HasKey);
            Assert.NotEqual(source.Encryption.KeyId, reopened.Encryption.KeyId);
            RestorePoint copy = Assert.Single(reopened.ListRestorePoints());
            Assert.Equal(point.Id, copy.Id);
            Assert.Equal(VmName, copy.VmName);
            Assert.Empty(copy.Files[0].Chunks.Where(id => id != null).Intersect(point.Files[0].Chunks.Where(id => id != null)));
            Assert.Equal(result.Chunks, result.ChunksCopied);
            Assert.True(RestorePointVerifier.Verify(reopened, copy, CancellationToken.None).IsValid);
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(reopened, copy));
            foreach (StoredObject item in reopened.Storage.List(string.Empty))
            {
                string text = Encoding.ASCII.GetString(reopened.Storage.ReadAll(item.Key, 8 * 1024 * 1024));
                Assert.DoesNotContain("MARKER-PLAINTEXT", text);
                Assert.DoesNotContain(VmName, text);
            }

            // On into a third repository, a folder with its own key, which the folder code opens, verifies and reads.
            BackupRepository back = Local.NewEncrypted("back");
            using (ObjectRepository backObjects = ObjectRepository.Open(new FileObjectStorage(back.Path)))
            {
                RestorePointCopy.Copy(reopened, copy, backObjects, CancellationToken.None);
            }

            BackupRepository backOpened = BackupRepository.Open(back.Path);
            RestorePoint restored = backOpened.GetRestorePoint(point.Id);
            Assert.True(backOpened.Verify(restored, CancellationToken.None).IsValid);
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(backOpened, restored));
        }

        [RgwFact]
        public void Copies_under_the_same_key_keep_chunk_ids_and_send_only_missing_chunks()
        {
            BackupRepository source = Local.NewEncrypted("enc");
            string disk = Local.WriteTextAndRandomDisk("disk.img", 2);
            RestorePoint first = RepositoryFixture.BackUp(source, VmName, disk);
            using (FileStream file = File.OpenWrite(disk))
            {
                file.Seek(-10, SeekOrigin.End);
                file.Write(new byte[] { 1, 2, 3 }, 0, 3);
            }

            RestorePoint second = RepositoryFixture.BackUp(source, VmName, disk);

            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, source.Encryption.Key);
            RestorePointCopy.Copy(source, first, remote, CancellationToken.None);
            RestorePointCopyResult copiedSecond = RestorePointCopy.Copy(source, second, remote, CancellationToken.None);

            Assert.Equal(source.Encryption.KeyId, remote.Encryption.KeyId);
            Assert.NotEqual(source.Encryption.RepositoryId, remote.Encryption.RepositoryId);
            Assert.Equal((1L, copiedSecond.Chunks - 1), (copiedSecond.ChunksCopied, copiedSecond.ChunksAlreadyPresent));
            using ObjectRepository reopened = Reopen(remote);
            RestorePoint copy = reopened.GetRestorePoint(second.Id);
            Assert.Equal(second.Files[0].Chunks, copy.Files[0].Chunks);
            Assert.Equal(second.Files[0].Digest, copy.Files[0].Digest);
            Assert.True(RestorePointVerifier.Verify(reopened, copy, CancellationToken.None).IsValid);
        }

        [RgwFact]
        public void A_plain_point_copied_through_an_encrypted_s3_repository_into_a_plain_one_has_its_sha256_ids_again()
        {
            string disk = Local.WriteTextAndRandomDisk("disk.img", 3);
            RestorePoint plain = Local.BackUp(VmName, disk);

            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            RestorePointCopy.Copy(Local.Repository, plain, remote, CancellationToken.None);
            RestorePoint sealedCopy = remote.GetRestorePoint(plain.Id);
            Assert.NotEqual(plain.Files[0].Chunks, sealedCopy.Files[0].Chunks);
            Assert.True(RestorePointVerifier.Verify(remote, sealedCopy, CancellationToken.None).IsValid);

            string backPath = Path.Combine(Local.Root, "plain-back");
            BackupRepository.OpenOrCreate(backPath, RepositoryFixture.ChunkSize, key: null);
            using (ObjectRepository backObjects = ObjectRepository.Open(new FileObjectStorage(backPath)))
            {
                RestorePointCopy.Copy(remote, sealedCopy, backObjects, CancellationToken.None);
            }

            BackupRepository back = BackupRepository.Open(backPath);
            RestorePoint restored = back.GetRestorePoint(plain.Id);
            Assert.False(back.Encryption.IsEncrypted);
            Assert.Equal(plain.Files[0].Chunks, restored.Files[0].Chunks);
            Assert.Equal(plain.Files[0].Digest, restored.Files[0].Digest);
            Assert.True(back.Verify(restored, CancellationToken.None).IsValid);
        }

        [RgwFact]
        public void Objects_changed_swapped_or_planted_in_the_bucket_are_not_authentic()
        {
            string disk = Local.WriteTextAndRandomDisk("disk.img", 4);
            RestorePoint plain = Local.BackUp(VmName, disk);
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            RestorePointCopy.Copy(Local.Repository, plain, remote, CancellationToken.None);
            RestorePoint point = remote.GetRestorePoint(plain.Id);
            string changed = point.Files[0].Chunks[1]!;
            string swapped = point.Files[0].Chunks[2]!;

            byte[] bytes = remote.Storage.ReadAll(ObjectRepository.ChunkKey(changed), 1024 * 1024);
            bytes[bytes.Length / 2] ^= 0x01;
            Overwrite(remote, ObjectRepository.ChunkKey(changed), bytes);
            Overwrite(remote, ObjectRepository.ChunkKey(swapped), remote.Storage.ReadAll(ObjectRepository.ChunkKey(point.Files[0].Chunks[3]!), 1024 * 1024));

            using ObjectRepository reopened = Reopen(remote);
            RestorePointVerification verification = RestorePointVerifier.Verify(reopened, point, CancellationToken.None);
            Assert.False(verification.IsValid);
            Assert.Equal(new[] { changed, swapped }.OrderBy(id => id), verification.Problems.Select(problem => problem.Hash).OrderBy(id => id));
            Assert.All(verification.Problems, problem => Assert.Equal(ChunkProblemKind.NotAuthentic, problem.ProblemValue));
            var error = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.ReadFirstFile(reopened, point));
            Assert.Equal("RestoreChunkNotAuthentic", error.ErrorId);

            // A plaintext manifest planted by someone who can write the bucket but has no key.
            string plainManifest = File.ReadAllText(Path.Combine(Local.RepositoryPath, "points", plain.Id + ".json"));
            Overwrite(remote, ObjectRepository.ManifestKey(point.Id), Encoding.UTF8.GetBytes(plainManifest));
            Assert.Equal("RestorePointNotAuthentic", Assert.Throws<VmQuiesceException>(() => reopened.GetRestorePoint(point.Id)).ErrorId);
        }

        [RgwFact]
        public void A_repository_file_swapped_for_an_unencrypted_one_in_the_bucket_is_not_authentic()
        {
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            Overwrite(remote, BackupRepository.MarkerName, Encoding.UTF8.GetBytes(BackupRepository.NewMarker(RepositoryFixture.ChunkSize, RepositoryEncryption.None)));

            var error = Assert.Throws<VmQuiesceException>(() => Reopen(remote));

            Assert.Equal("RepositoryNotAuthentic", error.ErrorId);
            Assert.Contains(remote.Location, error.Message);
        }

        [RgwFact]
        public void Without_its_key_on_this_host_an_encrypted_s3_repository_is_neither_read_nor_written()
        {
            string disk = Local.WriteTextAndRandomDisk("disk.img", 5);
            RestorePoint first = Local.BackUp(VmName, disk);
            File.WriteAllBytes(disk, RepositoryFixture.Random(2 * RepositoryFixture.ChunkSize, seed: 6));
            RestorePoint second = Local.BackUp(VmName, disk);
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), RepositoryFixture.ChunkSize, RepositoryKey.Generate());
            RestorePointCopy.Copy(Local.Repository, first, remote, CancellationToken.None);
            int objects = remote.Storage.List(string.Empty).Count();

            Assert.True(HostKeyStore.Remove(remote.Encryption.RepositoryId!));
            using ObjectRepository elsewhere = Reopen(remote);

            Assert.False(elsewhere.Encryption.HasKey);
            Assert.Equal("RepositoryKeyNotFound", Assert.Throws<VmQuiesceException>(() => elsewhere.Encryption.RequireKey()).ErrorId);
            Assert.Equal("RepositoryKeyNotFound", Assert.Throws<VmQuiesceException>(() => elsewhere.GetRestorePoint(first.Id)).ErrorId);
            Assert.Equal("RepositoryKeyNotFound", Assert.Throws<VmQuiesceException>(() => RestorePointCopy.Copy(Local.Repository, second, elsewhere, CancellationToken.None)).ErrorId);
            Assert.Equal(objects, elsewhere.Storage.List(string.Empty).Count());
        }
    }
}
