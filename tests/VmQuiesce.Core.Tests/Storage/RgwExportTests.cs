using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.Nbd;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Restore points served over NBD straight from a repository on a real Ceph RGW, read by QEMU's and libnbd's own
    /// clients: every chunk one GET, verified (and opened with the key) before a byte of it is served.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwExportTests : RgwTestBase
    {
        private const string SharedLocks = "locks/shared-";

        public RgwExportTests(RgwServer server)
            : base(server)
        {
        }

        /// <summary>10 chunks and a half: data, two all-zero chunks (never stored), data, a zero chunk, a short last chunk of data.</summary>
        private string WriteLayeredDisk() => Local.WriteFile("disk.raw", RepositoryFixture.Concat(
            RepositoryFixture.Random(3 * Chunk, 1), new byte[2 * Chunk], RepositoryFixture.Random(4 * Chunk, 2), new byte[Chunk], RepositoryFixture.Random(Chunk / 2, 3)));

        [RgwFact]
        public void A_point_served_from_s3_compares_equal_to_its_image_in_qemu_img_shows_its_zero_chunks_as_holes_and_keeps_a_prune_out_while_served()
        {
            string disk = WriteLayeredDisk();
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), Chunk, key: null);
            RestorePoint point = RepositoryFixture.BackUp(remote, "web01", disk);

            RestorePointServer served = RestorePointServer.Start(remote, point);
            string uri = served.Disks.Single().Uri;
            HostCommandResult compare = NbdTools.TryRun("qemu-img", "compare", "-f", "raw", "-F", "raw", disk, uri);
            using JsonDocument map = JsonDocument.Parse(NbdTools.Run("nbdinfo", "--map", "--json", uri));
            var locksWhileServed = remote.Storage.List(SharedLocks).Select(item => item.Key).ToList();
            var prune = Assert.Throws<VmQuiesceException>(() => remote.Prune(remote.PlanRemoval(new[] { point.Id }, _ => { }), collectGarbage: true, removeStaleLock: false, System.Threading.CancellationToken.None));
            long chunksRead = served.ChunksRead;
            served.Stop();

            Assert.True(compare.ExitCode == 0, $"qemu-img compare: {compare.StandardOutput} {compare.StandardError}");
            var holes = map.RootElement.EnumerateArray().Where(e => e.GetProperty("type").GetInt32() == 3)
                .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64())).ToList();
            Assert.Equal(new[] { (3L * Chunk, 2L * Chunk), (9L * Chunk, (long)Chunk) }, holes);
            Assert.Equal(8, chunksRead); // each data chunk once (read ahead or not): zero chunks are never fetched
            Assert.Empty(served.Errors);
            Assert.Single(locksWhileServed);
            Assert.Equal("RepositoryLocked", prune.ErrorId);
            Assert.Empty(remote.Storage.List(SharedLocks)); // the lock object goes with the server
            Assert.Equal(point.Id, Assert.Single(remote.ListRestorePoints()).Id);
        }

        [RgwFact]
        public Task A_chunk_object_changed_in_the_bucket_is_an_io_error_on_its_range_and_nothing_wrong_is_served() =>
            AssertChangedChunkIsAnIoError(key: null, "is damaged");

        [RgwFact]
        public Task A_chunk_object_changed_in_an_encrypted_bucket_is_not_authentic_an_io_error_on_its_range_and_nothing_wrong_is_served() =>
            AssertChangedChunkIsAnIoError(RepositoryKey.Generate(), "is not authentic");

        private async Task AssertChangedChunkIsAnIoError(RepositoryKey? key, string said)
        {
            string disk = WriteLayeredDisk();
            byte[] content = File.ReadAllBytes(disk);
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(Server.NewStorage(), Chunk, key);
            RestorePoint point = RepositoryFixture.BackUp(remote, "db01", disk);
            string damaged = point.Files[0].Chunks[6]!;
            string objectKey = ObjectRepository.ChunkKey(damaged);
            byte[] stored = remote.Storage.ReadAll(objectKey, 2 * Chunk);
            stored[stored.Length / 2] ^= 0x01;
            remote.Storage.Replace(objectKey, new[] { new ArraySegment<byte>(stored) });
            using RestorePointServer served = RestorePointServer.Start(remote, point);
            using var folder = new TempFolder();

            HostCommandResult convert = NbdTools.TryRun("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Disks[0].Uri, folder.File("copy.raw"));
            using NbdClient client = NbdClient.Connect(served.Endpoint, new NbdClientOptions { ExportName = "disk0" });
            var buffer = new byte[Chunk];
            NbdRequestException failure = await Assert.ThrowsAsync<NbdRequestException>(() => client.ReadAsync(6L * Chunk, buffer, 0, Chunk));
            byte[] before = new byte[Chunk];
            await client.ReadAsync(5L * Chunk, before, 0, Chunk);

            Assert.NotEqual(0, convert.ExitCode);
            Assert.Contains("Input/output error", convert.StandardError, StringComparison.Ordinal);
            Assert.Equal(5u, failure.ErrorCode);
            Assert.Equal(6L * Chunk, failure.ErrorOffset);
            Assert.Contains(damaged, failure.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(buffer, b => b != 0); // not one byte of the changed chunk reached the client
            AssertBytes.Equal(content.AsSpan(5 * Chunk, Chunk), before);
            Assert.Contains(served.Errors, error => error.Message.Contains($"chunk {damaged} {said}", StringComparison.Ordinal) && error.Message.Contains(remote.Location, StringComparison.Ordinal));
        }
    }
}
