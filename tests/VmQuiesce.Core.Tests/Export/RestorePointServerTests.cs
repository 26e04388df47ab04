using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Nbd;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>Restore points served over NBD from the repository, read by QEMU's and libnbd's own clients.</summary>
    public sealed class RestorePointServerTests : IDisposable
    {
        private const int Chunk = RepositoryFixture.ChunkSize;
        private readonly RepositoryFixture _fixture = new RepositoryFixture();

        public void Dispose() => _fixture.Dispose();

        /// <summary>10 chunks and a half: data, two all-zero chunks (never stored), data, a zero chunk, a short last chunk of data.</summary>
        private (RestorePoint Point, byte[] Content) BackUpLayeredDisk()
        {
            byte[] content = RepositoryFixture.Concat(
                RepositoryFixture.Random(3 * Chunk, 1), new byte[2 * Chunk], RepositoryFixture.Random(4 * Chunk, 2), new byte[Chunk], RepositoryFixture.Random(Chunk / 2, 3));
            string disk = _fixture.WriteFile("disk.raw", content);
            return (_fixture.BackUp("web01", disk), content);
        }

        [NbdToolFact("qemu-img", "nbdinfo")]
        public void QemuImgReadsThePointByteForByteAndNbdinfoSeesItsZeroChunksAsHoles()
        {
            (RestorePoint point, byte[] content) = BackUpLayeredDisk();
            using RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point);
            using var folder = new TempFolder();
            string uri = served.Disks.Single().Uri;

            NbdTools.Run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, folder.File("copy.raw"));
            using JsonDocument map = JsonDocument.Parse(NbdTools.Run("nbdinfo", "--map", "--json", uri));

            AssertBytes.Equal(content, File.ReadAllBytes(folder.File("copy.raw")));
            var holes = map.RootElement.EnumerateArray().Where(e => e.GetProperty("type").GetInt32() == 3)
                .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64())).ToList();
            Assert.Equal(new[] { (3L * Chunk, 2L * Chunk), (9L * Chunk, (long)Chunk) }, holes);
            Assert.Equal(8, served.ChunksRead); // each data chunk once: zero chunks are never read
            Assert.Empty(served.Errors);
            Assert.Equal("disk0", served.Disks.Single().ExportName);
            Assert.Equal("disk.raw", served.Disks.Single().Path);
        }

        [NbdToolFact("nbdcopy")]
        public void ServingAPointFarLargerThanTheCacheToManyReadersAtOnceAllocatesNoMoreChunkBuffersThanTheCacheHolds()
        {
            byte[] content = RepositoryFixture.Random(96 * Chunk, 11);
            RestorePoint point = _fixture.BackUp("big01", _fixture.WriteFile("big.raw", content));
            using RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point, new RestorePointServerOptions { CacheChunks = 3 });
            using var folder = new TempFolder();

            // 4 connections of 16 requests of 2 chunks each: readers wait for buffers far more often than not.
            NbdTools.Run("nbdcopy", "--connections=4", "--requests=16", "--request-size=131072", served.Disks[0].Uri, folder.File("copy.raw"));

            AssertBytes.Equal(content, File.ReadAllBytes(folder.File("copy.raw")));
            Assert.True(served.ChunksRead >= 96, $"{served.ChunksRead} chunks read");
            Assert.InRange(served.ChunkBuffers, 1, 3); // a buffer per chunk read would be 96 or more
            Assert.Empty(served.Errors);
        }

        [NbdToolFact("qemu-img")]
        public void ReadsAreSentStraightFromTheChunkCacheNotCopiedIntoTheServersReadBuffers()
        {
            (RestorePoint point, byte[] content) = BackUpLayeredDisk();
            using RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point, new RestorePointServerOptions { CacheChunks = 2 });
            using var folder = new TempFolder();

            NbdTools.Run("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Disks.Single().Uri, folder.File("copy.raw"));

            AssertBytes.Equal(content, File.ReadAllBytes(folder.File("copy.raw")));
            Assert.Equal(0, served.PeakReadBuffersRented);
            Assert.InRange(served.ChunkBuffers, 1, 2);
            Assert.Empty(served.Errors);
        }

        [NbdToolFact("qemu-img", "nbdcopy")]
        public async Task ADamagedChunkIsAnIoErrorOnItsRangeNamingTheChunkAndNothingWrongIsServed()
        {
            (RestorePoint point, byte[] content) = BackUpLayeredDisk();
            string damagedHash = point.Files[0].Chunks[6]!;
            string chunkFile = _fixture.ChunkFiles().Single(path => Path.GetFileName(path) == damagedHash);
            byte[] stored = File.ReadAllBytes(chunkFile);
            stored[stored.Length / 2] ^= 0x01;
            File.WriteAllBytes(chunkFile, stored);
            var reported = new System.Collections.Concurrent.ConcurrentQueue<NbdServerError>();
            using RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point, new RestorePointServerOptions { OnError = reported.Enqueue });
            using var folder = new TempFolder();

            HostCommandResult convert = NbdTools.TryRun("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Disks[0].Uri, folder.File("copy.raw"));
            Assert.NotEqual(0, convert.ExitCode);
            Assert.Contains("Input/output error", convert.StandardError, StringComparison.Ordinal);
            Assert.NotEqual(0, NbdTools.TryRun("nbdcopy", served.Disks[0].Uri, folder.File("copy2.raw")).ExitCode);

            using NbdClient client = NbdClient.Connect(served.Endpoint, new NbdClientOptions { ExportName = "disk0" });
            var buffer = new byte[Chunk];
            NbdRequestException failure = await Assert.ThrowsAsync<NbdRequestException>(() => client.ReadAsync(6L * Chunk, buffer, 0, Chunk));
            Assert.Equal(5u, failure.ErrorCode);
            Assert.Equal(6L * Chunk, failure.ErrorOffset);
            Assert.Contains(damagedHash, failure.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(buffer, b => b != 0); // not one byte of the damaged chunk reached the client

            // The chunks around it are served as they were backed up.
            await client.ReadAsync(5L * Chunk, buffer, 0, Chunk);
            AssertBytes.Equal(content.AsSpan(5 * Chunk, Chunk), buffer);
            Assert.Contains(served.Errors, error => error.Message.Contains($"chunk {damagedHash} is damaged", StringComparison.Ordinal) && error.Message.Contains($"bytes {6L * Chunk} to {(7L * Chunk) - 1}", StringComparison.Ordinal));
            Assert.Equal(served.Errors.Count, reported.Count);
        }

        [NbdToolFact("qemu-img")]
        public void AQcow2PointIsServedAsQcow2ForQemuToLayerItsQcow2DriverOver()
        {
            string raw = _fixture.WriteFile("guest.raw", RepositoryFixture.Concat(RepositoryFixture.Random(Chunk * 3, 7), new byte[Chunk * 5]));
            string qcow2 = Path.Combine(_fixture.Root, "guest.qcow2");
            HostCommand.RunChecked("qemu-img", new[] { "convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2 });
            RestorePoint point = _fixture.BackUp("db01", qcow2);
            using RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point);
            using var folder = new TempFolder();

            NbdTools.Run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", served.Disks[0].Uri, folder.File("guest-view.raw"));

            AssertBytes.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(folder.File("guest-view.raw")));
        }

        [LinuxFact]
        public void APruneWaitsWhileAPointIsServedAndTheSocketAndLockGoWhenItStops()
        {
            (RestorePoint point, _) = BackUpLayeredDisk();
            RestorePointServer served = RestorePointServer.Start(_fixture.Repository, point);
            string socket = served.Endpoint.SocketPath!;
            Assert.Contains(served, RestorePointServer.Running);

            var busy = Assert.Throws<VmQuiesceException>(() => _fixture.Repository.LockExclusive("test prune").Dispose());
            Assert.Equal("RepositoryLocked", busy.ErrorId);
            Assert.Equal(Convert.ToUInt32("600", 8), VmQuiesce.Core.Platform.UnixFiles.Stat(socket).Mode & 0xFFF);

            served.Stop();
            Assert.False(File.Exists(socket));
            Assert.DoesNotContain(served, RestorePointServer.Running);
            _fixture.Repository.LockExclusive("test prune").Dispose();
        }

        [NbdToolFact("qemu-img")]
        public void A_source_that_is_only_a_restore_point_source_is_served_under_its_own_shared_lock_released_when_the_server_stops()
        {
            (RestorePoint point, byte[] content) = BackUpLayeredDisk();
            var source = new PlainSource(_fixture.Repository);
            using var folder = new TempFolder();

            using (RestorePointServer served = RestorePointServer.Start(source, point))
            {
                NbdTools.Run("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Disks[0].Uri, folder.File("copy.raw"));
                Assert.Equal((1, 1), (source.Taken, source.Held));
                Assert.Equal("RepositoryLocked", Assert.Throws<VmQuiesceException>(() => _fixture.Repository.LockExclusive("test prune").Dispose()).ErrorId);
            }

            AssertBytes.Equal(content, File.ReadAllBytes(folder.File("copy.raw")));
            Assert.Equal((1, 0), (source.Taken, source.Held));
            _fixture.Repository.LockExclusive("test prune").Dispose();
        }

        /// <summary>A repository seen only through <see cref="IRestorePointSource"/> (as a third party's would be), counting its shared locks.</summary>
        private sealed class PlainSource : IRestorePointSource
        {
            private readonly IRestorePointSource _inner;

            public PlainSource(IRestorePointSource inner) => _inner = inner;

            public int Taken { get; private set; }

            public int Held { get; private set; }

            public string Location => _inner.Location;

            public int ChunkSize => _inner.ChunkSize;

            public VmQuiesce.Core.Repository.Keys.RepositoryEncryption Encryption => _inner.Encryption;

            public System.Collections.Generic.IReadOnlyList<RestorePoint> ListRestorePoints(Action<VmQuiesceException>? problem = null) => _inner.ListRestorePoints(problem);

            public RestorePoint GetRestorePoint(string id) => _inner.GetRestorePoint(id);

            public string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ChunkCheck check, System.Collections.Concurrent.ConcurrentDictionary<string, bool>? good, out bool missing) =>
                _inner.ReadVerifiedChunk(hash, buffer, expectedLength, check, good, out missing);

            public IDisposable LockShared(string purpose, Action<string> warn)
            {
                IDisposable held = _inner.LockShared(purpose, warn);
                Taken++;
                Held++;
                return new Release(() =>
                {
                    held.Dispose();
                    Held--;
                });
            }

            private sealed class Release : IDisposable
            {
                private Action? _release;

                public Release(Action release) => _release = release;

                public void Dispose()
                {
                    _release?.Invoke();
                    _release = null;
                }
            }
        }

        [NbdToolFact("nbdinfo")]
        public async Task AnUnlistedExportIsNotListedNorTheDefaultAndIsReachedOnlyByItsName()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage(), exportName: "disk0-5e3b1d");
            served.Server.Exports.Single().Listed = false;

            HostCommandResult list = NbdTools.TryRun("nbdinfo", "--list", "--json", $"nbd+unix:///?socket={served.Endpoint.SocketPath}");
            await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(served.Endpoint, new NbdClientOptions { ExportName = string.Empty })));
            using NbdClient named = await served.ConnectAsync();

            Assert.DoesNotContain("disk0-5e3b1d", list.StandardOutput, StringComparison.Ordinal);
            Assert.Equal(served.Server.Exports.Single().Backend.Size, named.Size);
        }
    }
}
