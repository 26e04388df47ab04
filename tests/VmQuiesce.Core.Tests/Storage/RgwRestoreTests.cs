using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Backup;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Restores straight from a repository on a real Ceph RGW through the one restore path: chunks fetched from the
    /// bucket are verified as from a folder, the output is sparse, the snapshot revert runs, and a bad object
    /// stops the restore before anything is replaced.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwRestoreTests : RgwTestBase
    {
        public RgwRestoreTests(RgwServer server)
            : base(server)
        {
        }

        [RgwFact]
        public void A_sparse_image_restores_from_s3_over_its_original_and_into_a_destination_stays_sparse()
        {
            string path = Path.Combine(Local.Root, "sparse.img");
            long size = 40L * Chunk;
            using (var file = new FileStream(path, FileMode.CreateNew))
            {
                file.SetLength(size);
                foreach (var (offset, length, seed) in new[] { (0L, Chunk, 1), (5L * Chunk, Chunk / 2, 2), (30L * Chunk, 3 * Chunk, 3) })
                {
                    file.Position = offset;
                    file.Write(RepositoryFixture.Random(length, seed), 0, length);
                }
            }

            string sha = RepositoryFixture.Sha256Of(path);
            using ObjectRepository remote = CopyToS3(Local.BackUp("web", path));
            RestorePoint point = remote.ListRestorePoints().Single();
            File.WriteAllBytes(path, RepositoryFixture.Random(100, 9));

            // An unencrypted bucket's manifest is whatever anyone with its credentials wrote: it does not choose the folders.
            Assert.Equal("RestoreManifestUntrusted", Assert.Throws<VmQuiesceException>(() => Restore(remote, new RestoreRequest(point) { Force = true })).ErrorId);
            RestoreResult over = Restore(remote, OverTheOriginal(point));
            string destination = Path.Combine(Local.Root, "elsewhere");
            RestoreResult into = Restore(remote, new RestoreRequest(point) { Destination = destination });

            string copy = Directory.GetFiles(destination, "*", SearchOption.AllDirectories).Single();
            foreach (string restored in new[] { path, copy })
            {
                Assert.Equal(sha, RepositoryFixture.Sha256Of(restored));
                Assert.Equal(size, new FileInfo(restored).Length);
                Assert.InRange(AllocatedBytes(restored), 1, (5L * Chunk) + (64 * 1024));
            }

            Assert.True(over.Files.Single().Replaced);
            Assert.Equal(RevertStatus.NotNeeded, into.RevertValue);
            Assert.Equal(new[] { "elsewhere", "sparse.img" }, Directory.GetFileSystemEntries(Local.Root).Select(Path.GetFileName).Where(name => name != "repo").OrderBy(name => name, StringComparer.Ordinal));
        }

        [RgwFact]
        public void A_qemu_point_from_s3_gets_its_internal_snapshot_applied()
        {
            string image = Path.Combine(Local.Root, "disk.qcow2");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", image, "4M" });
            HostCommand.RunChecked("qemu-io", new[] { "-c", "write -P 0x11 0 64k", image });
            HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-c", "vmquiesce-test", image });
            HostCommand.RunChecked("qemu-io", new[] { "-c", "write -P 0x22 0 64k", image });
            RestorePoint local = new BackupEngine(Local.Repository, workers: 2).Run(
                new ViewSource(StableFilesView.ForPaths(new[] { image }, new CapturedSnapshot("vmquiesce-test", null, "QemuInternal"))),
                new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;
            using ObjectRepository remote = CopyToS3(local);
            File.Delete(image);

            RestoreResult result = Restore(remote, OverTheOriginal(remote.GetRestorePoint(local.Id)));

            Assert.Equal(RevertStatus.Reverted, result.RevertValue);
            HostCommandResult before = HostCommand.Run("qemu-io", new[] { "-c", "read -P 0x11 0 64k", image });
            Assert.Contains("read 65536/65536", before.StandardOutput);
            Assert.DoesNotContain("verification failed", before.StandardOutput + before.StandardError);
        }

        [RgwFact]
        public void A_changed_chunk_object_stops_the_restore_before_anything_is_replaced()
        {
            string path = Local.WriteFile("a.img", RepositoryFixture.Random(3 * Chunk, 4));
            using ObjectRepository remote = CopyToS3(Local.BackUp("db", path));
            RestorePoint point = remote.ListRestorePoints().Single();
            string key = ObjectRepository.ChunkKey(point.Files[0].Chunks[2]!);
            byte[] stored = remote.Storage.ReadAll(key, 2 * Chunk);
            stored[^1] ^= 0xff;
            remote.Storage.Replace(key, new[] { new ArraySegment<byte>(stored) });
            byte[] current = RepositoryFixture.Random(10, 5);
            File.WriteAllBytes(path, current);

            var error = Assert.Throws<VmQuiesceException>(() => Restore(remote, OverTheOriginal(point)));

            Assert.Equal("RestoreChunkDamaged", error.ErrorId);
            Assert.Contains(point.Files[0].Chunks[2]!, error.Message);
            Assert.Contains(remote.Location, error.Remedy);
            Assert.Equal(current, File.ReadAllBytes(path));
            Assert.Equal(new[] { "a.img", "repo" }, Directory.GetFileSystemEntries(Local.Root).Select(Path.GetFileName).OrderBy(name => name, StringComparer.Ordinal));
        }

        [RgwFact]
        public void A_chunk_object_emptied_or_grown_past_any_chunk_stops_the_restore_before_anything_is_replaced()
        {
            // Chunks are read with a ranged GET (bytes 0 to one past the buffer): neither end of that range may hide a wrong length.
            string path = Local.WriteFile("a.img", RepositoryFixture.Random(3 * Chunk, 6));
            using ObjectRepository remote = CopyToS3(Local.BackUp("db", path));
            RestorePoint point = remote.ListRestorePoints().Single();
            byte[] current = RepositoryFixture.Random(10, 7);
            File.WriteAllBytes(path, current);
            foreach ((int index, byte[] content) in new[] { (0, Array.Empty<byte>()), (2, RepositoryFixture.Random(16 * Chunk, 8)) })
            {
                string key = ObjectRepository.ChunkKey(point.Files[0].Chunks[index]!);
                byte[] original = remote.Storage.ReadAll(key, 2 * Chunk);
                remote.Storage.Replace(key, new[] { new ArraySegment<byte>(content) });

                var error = Assert.Throws<VmQuiesceException>(() => Restore(remote, OverTheOriginal(point)));

                Assert.Equal("RestoreChunkDamaged", error.ErrorId);
                Assert.Contains(point.Files[0].Chunks[index]!, error.Message);
                Assert.Equal(current, File.ReadAllBytes(path));
                Assert.Equal(new[] { "a.img", "repo" }, Directory.GetFileSystemEntries(Local.Root).Select(Path.GetFileName).OrderBy(name => name, StringComparer.Ordinal));
                remote.Storage.Replace(key, new[] { new ArraySegment<byte>(original) });
            }

            Restore(remote, OverTheOriginal(point));
            Assert.Equal(RepositoryFixture.Random(3 * Chunk, 6), File.ReadAllBytes(path));
        }

        /// <summary>A restore of <paramref name="point"/> over its files (all in the local fixture's folder), named by -Destination.</summary>
        private RestoreRequest OverTheOriginal(RestorePoint point) => new RestoreRequest(point) { Force = true, Destination = Local.Root };

        private static RestoreResult Restore(IRestorePointSource repository, RestoreRequest request)
        {
            var engine = new RestoreEngine(repository);
            return engine.Run(engine.Plan(request, CancellationToken.None), null, CancellationToken.None);
        }

        private static long AllocatedBytes(string path) =>
            512 * long.Parse(HostCommand.RunChecked("stat", new[] { "-c", "%b", path }).StandardOutput.Trim(), System.Globalization.CultureInfo.InvariantCulture);

        /// <summary>A new S3 repository holding a copy of <paramref name="point"/>, and nothing else.</summary>
        private ObjectRepository CopyToS3(RestorePoint point)
        {
            ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), Chunk, key: null);
            RestorePointCopy.Copy(Local.Repository, point, remote, CancellationToken.None);
            return remote;
        }
    }
}
