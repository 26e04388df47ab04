using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>VmQuiesce's NBD client and server together: pipelining, concurrency, cancellation, stopping, limits.</summary>
    public sealed class NbdClientServerTests
    {
        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

        [UnixFact]
        public async Task ReadsHolesAsZeroesAndReportsTheLayoutAsBaseAllocation()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using NbdClient client = await served.ConnectAsync("base:allocation");

            Assert.Equal(image.Size, client.Size);
            Assert.True(client.IsReadOnly);
            Assert.True((client.Flags & NbdExportFlags.CanMultiConnection) != 0);
            Assert.Equal(new[] { "base:allocation" }, client.MetaContexts);
            Assert.Equal(1u, client.BlockSizes.Minimum);

            Dictionary<string, List<NbdExtent>> status = await NbdClientQemuTests.ReadWholeStatusAsync(client);
            Assert.Equal(NbdServerToolTests.ExpectedMap(image).Select(e => new NbdExtent(e.Offset, e.Length, e.Flags)), status["base:allocation"]);

            var random = new Random(11);
            var buffer = new byte[3 * 1024 * 1024];
            for (int i = 0; i < 40; i++)
            {
                int length = random.Next(1, buffer.Length);
                long offset = (long)(random.NextDouble() * (image.Size - length));
                Array.Fill(buffer, (byte)0xEE);
                await client.ReadAsync(offset, buffer, 0, length);
                AssertBytes.Equal(image.Data.AsSpan((int)offset, length), buffer.AsSpan(0, length));
            }

            Assert.Empty(served.Errors);
        }

        [UnixFact]
        public async Task SplitsReadsLargerThanTheMaximumAndPipelinesThem()
        {
            var image = MemoryExportBackend.Create(12 * 1024, block => block % 5 == 0 ? NbdExtentKind.Hole : NbdExtentKind.Data); // 48 MiB
            using var served = new ServedExport(image);
            using NbdClient client = await served.ConnectAsync();
            Assert.Equal(32 * 1024 * 1024, client.MaxRequestLength);

            var whole = new byte[image.Size];
            await client.ReadAsync(0, whole, 0, whole.Length);

            AssertBytes.Equal(image.Data, whole);
        }

        [UnixFact]
        public async Task KeepsManyRequestsInFlightThatTheServerProcessesConcurrently()
        {
            var image = MemoryExportBackend.Create(64, _ => NbdExtentKind.Data);
            image.Gate = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var served = new ServedExport(image, new NbdServerOptions { MaxRequestsInFlightPerConnection = 16 });
            using NbdClient client = await served.ConnectAsync(new NbdClientOptions { MaxRequestsInFlight = 16 });

            // 24 reads: 16 go out at once and all reach the backend together; 8 wait for a slot.
            var buffers = Enumerable.Range(0, 24).Select(_ => new byte[4096]).ToArray();
            Task[] reads = buffers.Select((buffer, i) => client.ReadAsync(4096L * i, buffer, 0, buffer.Length)).ToArray();
            for (int i = 0; i < 16; i++)
            {
                Assert.True(await image.ReadsAtGate.WaitAsync(Patience), $"only {i} reads reached the backend");
            }

            Assert.Equal(16, image.MaxConcurrentReads);
            Assert.All(reads, read => Assert.False(read.IsCompleted));
            image.Gate.SetResult(true);
            await Task.WhenAll(reads).WaitAsync(Patience);
            Assert.Equal(16, image.MaxConcurrentReads);
            for (int i = 0; i < buffers.Length; i++)
            {
                AssertBytes.Equal(image.Data.AsSpan(4096 * i, 4096), buffers[i]);
            }
        }

        [UnixFact]
        public async Task ServesSeveralClientsAtOnceEachWithPipelinedReads()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            NbdClient[] clients = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => served.ConnectAsync()));
            try
            {
                Assert.Equal(6, served.Server.ConnectionCount);
                await Task.WhenAll(clients.Select((client, c) => Task.Run(async () =>
                {
                    var random = new Random(c);
                    var pending = new List<(Task Read, byte[] Buffer, long Offset)>();
                    for (int i = 0; i < 64; i++)
                    {
                        int length = random.Next(1, 512 * 1024);
                        long offset = (long)(random.NextDouble() * (image.Size - length));
                        var buffer = new byte[length];
                        pending.Add((client.ReadAsync(offset, buffer, 0, length), buffer, offset));
                    }

                    foreach ((Task read, byte[] buffer, long offset) in pending)
                    {
                        await read;
                        AssertBytes.Equal(image.Data.AsSpan((int)offset, buffer.Length), buffer);
                    }
                }))).WaitAsync(TimeSpan.FromSeconds(120));
            }
            finally
            {
                foreach (NbdClient client in clients)
                {
                    client.Dispose();
                }
            }

            Assert.Empty(served.Errors);
        }

        [UnixFact]
        public async Task ACancelledReadReturnsAtOnceAndItsLateReplyNeverReachesTheBuffer()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            image.Gate = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var served = new ServedExport(image);
            using NbdClient client = await served.ConnectAsync();

            var buffer = new byte[65536];
            using var cancel = new CancellationTokenSource();
            Task read = client.ReadAsync(0, buffer, 0, buffer.Length, cancel.Token);
            Assert.True(await image.ReadsAtGate.WaitAsync(Patience));
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(Patience));

            // The server still answers; the client reads and drops that reply, and the connection goes on.
            image.Gate.SetResult(true);
            var next = new byte[65536];
            await client.ReadAsync(0, next, 0, next.Length).WaitAsync(Patience);
            AssertBytes.Equal(image.Data.AsSpan(0, 65536), next);
            Assert.All(buffer, b => Assert.Equal(0, b));
        }

        [UnixFact]
        public async Task StopAnswersWhatIsInProgressRefusesNewRequestsThenClosesAndRemovesTheSocket()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            image.Gate = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            var served = new ServedExport(image);
            try
            {
                NbdClient client = await served.ConnectAsync();
                var buffer = new byte[4096];
                Task inProgress = client.ReadAsync(0, buffer, 0, buffer.Length);
                Assert.True(await image.ReadsAtGate.WaitAsync(Patience));

                Task stop = served.Server.StopAsync(Patience);
                Assert.False(stop.IsCompleted);
                NbdRequestException refused = await Assert.ThrowsAsync<NbdRequestException>(() => client.ReadAsync(8192, new byte[10], 0, 10).WaitAsync(Patience));
                Assert.Equal(108u, refused.ErrorCode); // ESHUTDOWN
                await Assert.ThrowsAnyAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(served.Endpoint, new NbdClientOptions { ExportName = "disk" })));

                image.Gate.SetResult(true);
                await inProgress.WaitAsync(Patience);
                AssertBytes.Equal(image.Data.AsSpan(0, 4096), buffer);
                await stop.WaitAsync(Patience);
                Assert.False(File.Exists(served.Endpoint.SocketPath));
                Assert.Equal(0, served.Server.ConnectionCount);
                VmQuiesceException closed = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(0, buffer, 0, 10).WaitAsync(Patience));
                Assert.Equal("NbdConnectionClosed", closed.ErrorId);
                client.Dispose();
            }
            finally
            {
                served.Dispose();
            }
        }

        [UnixFact]
        public async Task RefusesConnectionsPastTheLimitAndSaysSo()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage(), new NbdServerOptions { MaxConnections = 1 });
            using NbdClient first = await served.ConnectAsync();

            VmQuiesceException refused = await Assert.ThrowsAsync<VmQuiesceException>(() => served.ConnectAsync());
            Assert.Equal("NbdConnectionClosed", refused.ErrorId);
            Assert.Contains(served.Errors, e => e.Message.Contains("1 connections are open already", StringComparison.Ordinal));

            first.Dispose();
            await served.WaitForConnectionCountAsync(0);
            using NbdClient second = await served.ConnectAsync();
            Assert.Equal(served.Name, second.ExportName);
        }

        [UnixFact]
        public async Task NamesExportsListsContextsAndServesTheOnlyExportAsTheDefault()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage());

            Assert.Equal(new[] { "base:allocation" }, NbdClient.ListMetaContexts(served.Endpoint, "disk"));
            Assert.Equal(new[] { "base:allocation" }, NbdClient.ListMetaContexts(served.Endpoint, "disk", new[] { "base:" }));
            Assert.Empty(NbdClient.ListMetaContexts(served.Endpoint, "disk", new[] { "qemu:dirty-bitmap:" }));
            using (NbdClient byDefault = NbdClient.Connect(served.Endpoint, new NbdClientOptions()))
            {
                Assert.Equal(served.Server.Exports.Single().Backend.Size, byDefault.Size);
            }

            VmQuiesceException unknown = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(served.Endpoint, new NbdClientOptions { ExportName = "other" })));
            Assert.Equal("NbdExportNotFound", unknown.ErrorId);
            var bitmap = new NbdClientOptions { ExportName = "disk" };
            bitmap.MetaContexts.Add("qemu:dirty-bitmap:b1");
            VmQuiesceException noContext = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(served.Endpoint, bitmap)));
            Assert.Equal("NbdMetaContextUnavailable", noContext.ErrorId);
        }

        [UnixFact]
        public async Task RejectsRequestsOutsideTheExportBeforeSendingThem()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage());
            using NbdClient client = await served.ConnectAsync();

            VmQuiesceException past = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(client.Size - 10, new byte[20], 0, 20));
            Assert.Equal("NbdRequestInvalid", past.ErrorId);
            VmQuiesceException noContexts = await Assert.ThrowsAsync<VmQuiesceException>(() => client.GetBlockStatusAsync(0, 4096));
            Assert.Equal("NbdRequestInvalid", noContexts.ErrorId);
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.ReadAsync(0, new byte[10], 5, 10));
        }

        [UnixFact]
        public void RefusesASocketPathThatExistsAndAServerAddressThatIsNotLoopback()
        {
            using var folder = new TempFolder();
            string taken = folder.File("taken.sock");
            File.WriteAllText(taken, "not a socket");
            var export = new NbdExport("disk", NbdServerToolTests.LayeredImage());

            VmQuiesceException inUse = Assert.Throws<VmQuiesceException>(() => NbdServer.Start(NbdEndpoint.UnixSocket(taken), new[] { export }));
            Assert.Equal("NbdSocketPathInUse", inUse.ErrorId);
            Assert.Equal("not a socket", File.ReadAllText(taken));
            VmQuiesceException open = Assert.Throws<VmQuiesceException>(() => NbdServer.Start(NbdEndpoint.Tcp("0.0.0.0", 0), new[] { export }));
            Assert.Equal("NbdAddressInvalid", open.ErrorId);
            VmQuiesceException duplicate = Assert.Throws<VmQuiesceException>(() => NbdServer.Start(NbdEndpoint.LoopbackTcp(), new[] { export, export }));
            Assert.Equal("NbdExportInvalid", duplicate.ErrorId);
            var odd = new NbdExport("odd", NbdServerToolTests.LayeredImage()) { PreferredBlockSize = 1000 };
            VmQuiesceException blockSize = Assert.Throws<VmQuiesceException>(() => NbdServer.Start(NbdEndpoint.LoopbackTcp(), new[] { odd }));
            Assert.Equal("NbdExportInvalid", blockSize.ErrorId);
        }

        [UnixFact]
        public async Task TheSocketIsOpenToItsOwnerOnly()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage());
            UnixFileMode mode = File.GetUnixFileMode(served.Endpoint.SocketPath!);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
            using NbdClient client = await served.ConnectAsync();
            Assert.Equal(served.Name, client.ExportName);
        }

        [ThrowawayUserFact]
        public void ASocketSwappedForALinkOnceBoundDoesNotHaveTheLinksTargetMadeOwnerOnly()
        {
            using var user = ThrowawayUser.Create();
            using var folder = new TempFolder();
            using var outside = new TempFolder();
            File.SetUnixFileMode(folder.Path, (UnixFileMode)0x1FF); // 0777: another user may rename and add names
            string socket = folder.File("nbd.sock");
            string victim = outside.File("victim");
            File.WriteAllText(victim, "root's, readable by all\n");
            File.SetUnixFileMode(victim, (UnixFileMode)0x1A4); // 0644
            var options = new NbdServerOptions
            {
                AfterBind = () =>
                {
                    Assert.Equal(0, user.Run("/bin/mv", socket, socket + ".moved").ExitCode);
                    Assert.Equal(0, user.Run("/bin/ln", "-s", victim, socket).ExitCode);
                },
            };

            using (NbdServer.Start(NbdEndpoint.UnixSocket(socket), new[] { new NbdExport("disk", NbdServerToolTests.LayeredImage()) }, options))
            {
                Assert.Equal((UnixFileMode)0x1A4, File.GetUnixFileMode(victim));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket + ".moved"));
            }

            Assert.Equal((UnixFileMode)0x1A4, File.GetUnixFileMode(victim));
        }

        [Fact]
        public async Task ServesOverLoopbackTcpWhereUnixSocketsAreNotAnOption()
        {
            Assert.Equal(!HostPlatform.IsWindows, NbdServer.LocalEndpoint("/run/vmquiesce/x.sock").IsUnixSocket);
            var export = new NbdExport("disk", NbdServerToolTests.LayeredImage());
            using NbdServer server = NbdServer.Start(NbdEndpoint.LoopbackTcp(), new[] { export });
            Assert.False(server.Endpoint.IsUnixSocket);
            Assert.NotEqual(0, server.Endpoint.Port);
            Assert.Equal($"nbd://127.0.0.1:{server.Endpoint.Port}/disk", server.GetUri("disk"));

            using NbdClient client = NbdClient.Connect(server.Endpoint, new NbdClientOptions { ExportName = "disk" });
            var buffer = new byte[8192];
            await client.ReadAsync(0, buffer, 0, buffer.Length);
            AssertBytes.Equal(((MemoryExportBackend)export.Backend).Data.AsSpan(0, 8192), buffer);
        }
    }
}
