using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>
    /// The client against servers that lie, stall or break off: each ends in an error naming the server and
    /// what it did, within the test's patience (never a hang), without allocating what the server claims.
    /// </summary>
    public sealed class NbdClientHostileServerTests
    {
        private const long Size = 1024 * 1024;
        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
        private static readonly Dictionary<string, uint> Contexts = new() { ["base:allocation"] = 7, ["qemu:dirty-bitmap:b1"] = 9 };

        /// <summary>Misbehaviours during the handshake, each as the bytes the server sends from the start.</summary>
        private static readonly Dictionary<string, Func<RawNbdPeer, Task>> BrokenHandshakes = new()
        {
            ["not nbd"] = peer => peer.WriteAsync(Encoding.ASCII.GetBytes("HTTP/1.1 400 Bad Request\r\n\r\n")),
            ["oldstyle"] = peer => peer.WriteAsync(RawNbdPeer.Bytes(w => w.UInt64(NbdProtocol.InitMagic).UInt64(NbdProtocol.OldstyleMagic).UInt64(Size).UInt32(1).Bytes(new byte[124]))),
            ["huge option reply"] = async peer =>
            {
                await peer.GreetAsClientExpectsAsync();
                await peer.ReadOptionAsync();
                await peer.WriteAsync(RawNbdPeer.Bytes(w => w.UInt64(NbdProtocol.OptionReplyMagic).UInt32(NbdProtocol.OptStructuredReply).UInt32(NbdProtocol.RepAck).UInt32(0xFFFFFFF0)));
            },
            ["endless contexts"] = async peer =>
            {
                await peer.GreetAsClientExpectsAsync();
                await peer.ReadOptionAsync();
                await peer.SendOptionReplyAsync(NbdProtocol.OptStructuredReply, NbdProtocol.RepAck);
                await peer.ReadOptionAsync();
                byte[] reply = RawNbdPeer.Bytes(w => w.UInt64(NbdProtocol.OptionReplyMagic).UInt32(NbdProtocol.OptSetMetaContext).UInt32(NbdProtocol.RepMetaContext).UInt32(19).UInt32(1).Bytes(Encoding.ASCII.GetBytes("base:allocation")));
                await peer.WriteAsync(Enumerable.Repeat(reply, 1025).SelectMany(r => r).ToArray());
            },
            ["context not asked for"] = async peer =>
            {
                await peer.GreetAsClientExpectsAsync();
                await peer.ReadOptionAsync();
                await peer.SendOptionReplyAsync(NbdProtocol.OptStructuredReply, NbdProtocol.RepAck);
                await peer.ReadOptionAsync();
                await peer.SendOptionReplyAsync(NbdProtocol.OptSetMetaContext, NbdProtocol.RepMetaContext, RawNbdPeer.Bytes(w => w.UInt32(3).Bytes(Encoding.ASCII.GetBytes("qemu:dirty-bitmap:other"))));
                await peer.SendOptionReplyAsync(NbdProtocol.OptSetMetaContext, NbdProtocol.RepAck);
            },
            ["wrong option answered"] = async peer =>
            {
                await peer.GreetAsClientExpectsAsync();
                await peer.ReadOptionAsync();
                await peer.SendOptionReplyAsync(NbdProtocol.OptGo, NbdProtocol.RepAck);
            },
            ["go without export info"] = async peer =>
            {
                await NegotiateUntilGoAsync(peer);
                await peer.SendOptionReplyAsync(NbdProtocol.OptGo, NbdProtocol.RepAck);
            },
            ["bad block sizes"] = async peer =>
            {
                await NegotiateUntilGoAsync(peer);
                await peer.SendOptionReplyAsync(NbdProtocol.OptGo, NbdProtocol.RepInfo, RawNbdPeer.Bytes(w => w.UInt16(NbdProtocol.InfoBlockSize).UInt32(3).UInt32(4096).UInt32(1 << 20)));
            },
            ["export larger than 2^63"] = async peer =>
            {
                await NegotiateUntilGoAsync(peer);
                await peer.SendOptionReplyAsync(NbdProtocol.OptGo, NbdProtocol.RepInfo, RawNbdPeer.Bytes(w => w.UInt16(NbdProtocol.InfoExport).UInt64(ulong.MaxValue).UInt16(1)));
            },
            ["closes mid greeting"] = async peer =>
            {
                await peer.WriteAsync(RawNbdPeer.Bytes(w => w.UInt64(NbdProtocol.InitMagic).UInt32(0x49484156)));
                peer.Close();
            },
        };

        /// <summary>Misbehaviours in reply to one read of 4096 bytes at offset 8192 (contexts base:allocation and a bitmap selected).</summary>
        private static readonly Dictionary<string, Func<RawNbdPeer, RawRequest, Task>> BrokenReplies = new()
        {
            ["unknown handle"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle + 1000, r.Offset, new byte[r.Length])),
            ["bad magic"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Bytes(w => w.UInt32(0xDEADBEEF).UInt32(0).UInt64(r.Handle))),
            ["simple reply to a structured read"] = (peer, r) => peer.WriteAsync(RawNbdPeer.SimpleReply(0, r.Handle).Concat(new byte[r.Length]).ToArray()),
            ["data outside the request"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle, r.Offset + 4, new byte[r.Length])),
            ["data before the request"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle, r.Offset - 1, new byte[10])),
            ["overlapping chunks"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle, r.Offset, new byte[2048], done: false)
                .Concat(RawNbdPeer.DataChunk(r.Handle, r.Offset + 1024, new byte[3072])).ToArray()),
            ["done before all data"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle, r.Offset, new byte[r.Length / 2])),
            ["huge data chunk"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, r.Handle, Array.Empty<byte>(), 0xFFFFFFF0)),
            ["hole of wrong length"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetHole, r.Handle, RawNbdPeer.Bytes(w => w.UInt64(r.Offset).UInt32(r.Length).UInt32(0)))),
            ["empty hole"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetHole, r.Handle, RawNbdPeer.Bytes(w => w.UInt64(r.Offset).UInt32(0)))),
            ["block status for a read"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeBlockStatus, r.Handle, RawNbdPeer.Bytes(w => w.UInt32(7).UInt32(r.Length).UInt32(0)))),
            ["unknown chunk type"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, 77, r.Handle, new byte[4])),
            ["none chunk with payload"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeNone, r.Handle, new byte[4])),
            ["error message longer than its chunk"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, r.Handle, RawNbdPeer.Bytes(w => w.UInt32(5).UInt16(200).Bytes(new byte[10])))),
            ["huge error chunk"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, r.Handle, Array.Empty<byte>(), 1 << 30)),
            ["error offset outside the request"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeErrorOffset, r.Handle, RawNbdPeer.Bytes(w => w.UInt32(5).UInt16(0).UInt64(0)))),
            ["error zero"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeError, r.Handle, RawNbdPeer.Bytes(w => w.UInt32(0).UInt16(0)))),
        };

        /// <summary>Misbehaviours in reply to one block status of 64 KiB at offset 0, with two contexts selected.</summary>
        private static readonly Dictionary<string, Func<RawNbdPeer, RawRequest, Task>> BrokenStatus = new()
        {
            ["too many extents"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeBlockStatus, r.Handle, Array.Empty<byte>(), 4 + (8 * ((128 * 1024) + 1)))),
            ["extent of length zero"] = (peer, r) => peer.WriteAsync(Status(r, 7, done: true, (0, 0))),
            ["unknown context"] = (peer, r) => peer.WriteAsync(Status(r, 8, done: true, (r.Length, 0))),
            ["context twice"] = (peer, r) => peer.WriteAsync(Status(r, 7, done: false, (r.Length, 0)).Concat(Status(r, 7, done: true, (r.Length, 0))).ToArray()),
            ["context missing"] = (peer, r) => peer.WriteAsync(Status(r, 7, done: true, (r.Length, 0))),
            ["ragged payload"] = (peer, r) => peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeBlockStatus, r.Handle, new byte[15])),
            ["status for a read's data"] = (peer, r) => peer.WriteAsync(RawNbdPeer.DataChunk(r.Handle, r.Offset, new byte[16])),
            ["simple success"] = (peer, r) => peer.WriteAsync(RawNbdPeer.SimpleReply(0, r.Handle)),
        };

        /// <summary>What each error message must say: the check that caught it, not another one further on.</summary>
        private static readonly Dictionary<string, string> Says = new()
        {
            ["not nbd"] = "does not greet as an NBD server",
            ["oldstyle"] = "oldstyle handshake",
            ["huge option reply"] = "claims 4294967280 bytes",
            ["endless contexts"] = "more than 1024 metadata contexts",
            ["context not asked for"] = "which was not asked for",
            ["wrong option answered"] = "it answered NBD_OPT_GO when NBD_OPT_STRUCTURED_REPLY was asked",
            ["go without export info"] = "without sending NBD_INFO_EXPORT",
            ["bad block sizes"] = "minimum block size 3",
            ["export larger than 2^63"] = "more than 2^63 - 1",
            ["closes mid greeting"] = "broke during the handshake",
            ["unknown handle"] = "which no request in flight has",
            ["bad magic"] = "0xdeadbeef",
            ["simple reply to a structured read"] = "simple reply although structured replies",
            ["data outside the request"] = "outside NBD_CMD_READ",
            ["data before the request"] = "outside NBD_CMD_READ",
            ["overlapping chunks"] = "overlaps data it already sent",
            ["done before all data"] = "having sent 2048 byte(s)",
            ["huge data chunk"] = "data chunk of 4294967280 bytes",
            ["hole of wrong length"] = "hole chunk of 16 bytes",
            ["empty hole"] = "a hole chunk of 0 byte(s)",
            ["block status for a read"] = "with block status",
            ["unknown chunk type"] = "unknown reply chunk type 77",
            ["none chunk with payload"] = "NBD_REPLY_TYPE_NONE chunk",
            ["error message longer than its chunk"] = "a message of 200 bytes",
            ["huge error chunk"] = "error chunk of 1073741824 bytes",
            ["error offset outside the request"] = "error at offset 0, outside",
            ["error zero"] = "with error 0",
            ["too many extents"] = "block status chunk of 1048588 bytes",
            ["extent of length zero"] = "extent of length 0",
            ["unknown context"] = "context id 8, which was not selected",
            ["context twice"] = "twice in one reply",
            ["context missing"] = "without the context(s) qemu:dirty-bitmap:b1",
            ["ragged payload"] = "block status chunk of 15 bytes",
            ["status for a read's data"] = "which only reads take",
            ["simple success"] = "simple reply without data",
        };

        /// <summary>Answers structured replies and base:allocation correctly, and returns once NBD_OPT_GO has been asked.</summary>
        private static async Task NegotiateUntilGoAsync(RawNbdPeer peer)
        {
            await peer.GreetAsClientExpectsAsync();
            await peer.ReadOptionAsync();
            await peer.SendOptionReplyAsync(NbdProtocol.OptStructuredReply, NbdProtocol.RepAck);
            await peer.ReadOptionAsync();
            await peer.SendOptionReplyAsync(NbdProtocol.OptSetMetaContext, NbdProtocol.RepMetaContext, RawNbdPeer.Bytes(w => w.UInt32(7).Bytes(Encoding.ASCII.GetBytes("base:allocation"))));
            await peer.SendOptionReplyAsync(NbdProtocol.OptSetMetaContext, NbdProtocol.RepAck);
            await peer.ReadOptionAsync();
        }

        public static IEnumerable<object[]> HandshakeCases() => BrokenHandshakes.Keys.Select(k => new object[] { k });

        public static IEnumerable<object[]> ReplyCases() => BrokenReplies.Keys.Select(k => new object[] { k });

        public static IEnumerable<object[]> StatusCases() => BrokenStatus.Keys.Select(k => new object[] { k });

        [LinuxTheory]
        [MemberData(nameof(HandshakeCases))]
        public async Task ABrokenHandshakeIsAnErrorNamingTheServer(string misbehaviour)
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await BrokenHandshakes[misbehaviour](peer);
                await peer.DrainUntilClosedAsync();
            });
            var options = new NbdClientOptions { ExportName = "disk" };
            options.MetaContexts.Add("base:allocation");

            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(server.Endpoint, options)).WaitAsync(Patience));

            Assert.Equal(misbehaviour == "closes mid greeting" ? "NbdConnectionClosed" : "NbdProtocolError", error.ErrorId);
            Assert.Contains(server.Endpoint.SocketPath!, error.Message, StringComparison.Ordinal);
            Assert.Contains(Says[misbehaviour], error.Message, StringComparison.Ordinal);
            await server.Completion.WaitAsync(Patience); // the client closed its end
        }

        [UnixFact]
        public async Task AServerThatStopsTalkingDuringTheHandshakeTimesOut()
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.GreetAsClientExpectsAsync();
                await peer.DrainUntilClosedAsync();
            });

            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() =>
                Task.Run(() => NbdClient.Connect(server.Endpoint, new NbdClientOptions { ConnectTimeout = TimeSpan.FromSeconds(1) })).WaitAsync(Patience));

            Assert.Equal("NbdConnectTimeout", error.ErrorId);
            await server.Completion.WaitAsync(Patience);
        }

        [LinuxTheory]
        [MemberData(nameof(ReplyCases))]
        public async Task ABrokenReplyFailsTheConnectionAndEveryRequestInFlight(string misbehaviour)
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts);
                RawRequest[] requests = { await peer.ReadRequestAsync(), await peer.ReadRequestAsync() };
                await BrokenReplies[misbehaviour](peer, requests.Single(r => r.Offset == 8192));
                await peer.DrainUntilClosedAsync();
            });
            using NbdClient client = await ConnectAsync(server);

            Task waiting = client.ReadAsync(0, new byte[10], 0, 10);
            var buffer = new byte[4096];
            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(8192, buffer, 0, buffer.Length).WaitAsync(Patience));

            Assert.Equal("NbdProtocolError", error.ErrorId);
            Assert.Contains(server.Endpoint.SocketPath!, error.Message, StringComparison.Ordinal);
            Assert.Contains(Says[misbehaviour], error.Message, StringComparison.Ordinal);
            VmQuiesceException other = await Assert.ThrowsAsync<VmQuiesceException>(() => waiting.WaitAsync(Patience));
            Assert.Same(error, other);
            VmQuiesceException after = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(0, buffer, 0, 10));
            Assert.Same(error, after);
            await server.Completion.WaitAsync(Patience);
        }

        [LinuxTheory]
        [MemberData(nameof(StatusCases))]
        public async Task ABrokenBlockStatusReplyFailsTheConnection(string misbehaviour)
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts);
                await BrokenStatus[misbehaviour](peer, await peer.ReadRequestAsync());
                await peer.DrainUntilClosedAsync();
            });
            using NbdClient client = await ConnectAsync(server);

            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() => client.GetBlockStatusAsync(0, 65536).WaitAsync(Patience));

            Assert.Equal("NbdProtocolError", error.ErrorId);
            Assert.Contains(Says[misbehaviour], error.Message, StringComparison.Ordinal);
            await server.Completion.WaitAsync(Patience);
        }

        [UnixFact]
        public async Task AStreamCutInTheMiddleOfAReplyClosesTheConnection()
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts);
                RawRequest read = await peer.ReadRequestAsync();
                await peer.WriteAsync(RawNbdPeer.DataChunk(read.Handle, read.Offset, new byte[read.Length]).Take(200).ToArray());
                peer.Close();
            });
            using NbdClient client = await ConnectAsync(server);

            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(0, new byte[4096], 0, 4096).WaitAsync(Patience));

            Assert.Equal("NbdConnectionClosed", error.ErrorId);
            Assert.Contains(server.Endpoint.SocketPath!, error.Message, StringComparison.Ordinal);
        }

        [UnixFact]
        public async Task AServerThatNeverAnswersFailsTheRequestAfterTheTimeout()
        {
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts);
                await peer.ReadRequestAsync();
                await peer.DrainUntilClosedAsync();
            });
            using NbdClient client = await ConnectAsync(server, TimeSpan.FromSeconds(1));

            VmQuiesceException error = await Assert.ThrowsAsync<VmQuiesceException>(() => client.ReadAsync(0, new byte[4096], 0, 4096).WaitAsync(Patience));

            Assert.Equal("NbdRequestTimeout", error.ErrorId);
            Assert.Contains("NBD_CMD_READ of 4096 byte(s) at offset 0", error.Message, StringComparison.Ordinal);
            await server.Completion.WaitAsync(Patience);
        }

        [UnixFact]
        public async Task AServerErrorFailsOnlyItsRequestAndChunksMayComeInAnyOrder()
        {
            var data = new byte[8192];
            new Random(3).NextBytes(data);
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts);
                RawRequest[] requests = { await peer.ReadRequestAsync(), await peer.ReadRequestAsync(), await peer.ReadRequestAsync() };
                RawRequest failing = requests.Single(r => r.Command == NbdProtocol.CmdRead && r.Offset == 0);
                RawRequest second = requests.Single(r => r.Command == NbdProtocol.CmdRead && r.Offset == 65536);
                RawRequest status = requests.Single(r => r.Command == NbdProtocol.CmdBlockStatus);

                // Replies interleaved, the read's chunks back to front, a hole among them; extents past the request are cut.
                await peer.WriteAsync(RawNbdPeer.DataChunk(second.Handle, second.Offset + 4096, data.Skip(4096).ToArray(), done: false));
                await peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeErrorOffset, failing.Handle,
                    RawNbdPeer.Bytes(w => w.UInt32(NbdProtocol.ErrIo).UInt16(14).Bytes(Encoding.ASCII.GetBytes("chunk 3 broken")).UInt64(failing.Offset + 512))));
                await peer.WriteAsync(RawNbdPeer.Chunk(0, NbdProtocol.ReplyTypeOffsetHole, second.Handle, RawNbdPeer.Bytes(w => w.UInt64(second.Offset + 1024).UInt32(3072))));
                await peer.WriteAsync(Status(status, 7, done: false, (4096, 3), (1 << 20, 0)));
                await peer.WriteAsync(Status(status, 9, done: true, (1 << 20, 1)));
                await peer.WriteAsync(RawNbdPeer.DataChunk(second.Handle, second.Offset, data.Take(1024).ToArray(), done: false));
                await peer.WriteAsync(RawNbdPeer.Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeNone, second.Handle, Array.Empty<byte>()));
                await peer.DrainUntilClosedAsync();
            });
            using NbdClient client = await ConnectAsync(server);

            Task failingRead = client.ReadAsync(0, new byte[4096], 0, 4096);
            var buffer = new byte[8192];
            Array.Fill(buffer, (byte)0xEE);
            Task secondRead = client.ReadAsync(65536, buffer, 0, buffer.Length);
            Task<NbdBlockStatus> status = client.GetBlockStatusAsync(0, 65536);

            NbdRequestException error = await Assert.ThrowsAsync<NbdRequestException>(() => failingRead.WaitAsync(Patience));
            Assert.Equal(5u, error.ErrorCode);
            Assert.Equal(512, error.ErrorOffset);
            Assert.Contains("chunk 3 broken", error.Message, StringComparison.Ordinal);
            await secondRead.WaitAsync(Patience);
            AssertBytes.Equal(data.Take(1024).Concat(new byte[3072]).Concat(data.Skip(4096)).ToArray(), buffer);
            NbdBlockStatus result = await status.WaitAsync(Patience);
            Assert.Equal(new[] { new NbdExtent(0, 4096, 3), new NbdExtent(4096, 65536 - 4096, 0) }, result["base:allocation"]);
            Assert.Equal(new[] { new NbdExtent(0, 65536, 1) }, result["qemu:dirty-bitmap:b1"]);
            Assert.Equal(65536, result.CoveredLength);
        }

        [UnixFact]
        public async Task WithoutStructuredRepliesReadsUseSimpleRepliesAndBlockStatusIsRefusedClearly()
        {
            var data = new byte[4096];
            new Random(5).NextBytes(data);
            using var server = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts, structured: false);
                RawRequest read = await peer.ReadRequestAsync();
                await peer.WriteAsync(RawNbdPeer.SimpleReply(0, read.Handle).Concat(data).ToArray());
                RawRequest failing = await peer.ReadRequestAsync();
                await peer.WriteAsync(RawNbdPeer.SimpleReply(NbdProtocol.ErrIo, failing.Handle));
                await peer.DrainUntilClosedAsync();
            });
            using NbdClient client = NbdClient.Connect(server.Endpoint, new NbdClientOptions { ExportName = "disk" });
            Assert.False(client.StructuredReplies);

            var buffer = new byte[4096];
            await client.ReadAsync(0, buffer, 0, buffer.Length).WaitAsync(Patience);
            Assert.Equal(data, buffer);
            NbdRequestException error = await Assert.ThrowsAsync<NbdRequestException>(() => client.ReadAsync(4096, buffer, 0, 10).WaitAsync(Patience));
            Assert.Equal(5u, error.ErrorCode);
            client.Dispose();
            await server.Completion.WaitAsync(Patience);

            using var plain = new FakeNbdServer(async peer =>
            {
                await peer.ServeHandshakeAsync(Size, Contexts, structured: false);
                await peer.DrainUntilClosedAsync();
            });
            var options = new NbdClientOptions { ExportName = "disk" };
            options.MetaContexts.Add("base:allocation");
            VmQuiesceException refused = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(plain.Endpoint, options)).WaitAsync(Patience));
            Assert.Equal("NbdMetaContextUnavailable", refused.ErrorId);
        }

        private static Task<NbdClient> ConnectAsync(FakeNbdServer server, TimeSpan? requestTimeout = null)
        {
            var options = new NbdClientOptions { ExportName = "disk", RequestTimeout = requestTimeout ?? Patience };
            options.MetaContexts.Add("base:allocation");
            options.MetaContexts.Add("qemu:dirty-bitmap:b1");
            return Task.Run(() => NbdClient.Connect(server.Endpoint, options)).WaitAsync(Patience);
        }

        private static byte[] Status(RawRequest request, uint context, bool done, params (long Length, uint Flags)[] extents) =>
            RawNbdPeer.Chunk(done ? NbdProtocol.ReplyFlagDone : (ushort)0, NbdProtocol.ReplyTypeBlockStatus, request.Handle,
                RawNbdPeer.Bytes(w =>
                {
                    w.UInt32(context);
                    foreach ((long length, uint flags) in extents)
                    {
                        w.UInt32((uint)length).UInt32(flags);
                    }
                }));
    }
}
