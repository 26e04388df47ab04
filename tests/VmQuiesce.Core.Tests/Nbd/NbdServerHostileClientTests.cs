using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>
    /// The server against clients that send what they should not: each gets the protocol's error reply, or
    /// loses its own connection when nothing else is possible; the server goes on serving everyone else,
    /// within its memory bound, and says what happened.
    /// </summary>
    public sealed class NbdServerHostileClientTests
    {
        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

        /// <summary>Requests the server must refuse with an error reply, leaving the connection usable.</summary>
        public static IEnumerable<object[]> RefusedRequests() => new[]
        {
            new object[] { "read past the end", NbdProtocol.CmdRead, (ushort)0, 16L * 1024 * 1024 - 100, 200u, NbdProtocol.ErrInvalid },
            new object[] { "read starting past the end", NbdProtocol.CmdRead, (ushort)0, long.MaxValue, 1u, NbdProtocol.ErrInvalid },
            new object[] { "read over 32 MiB", NbdProtocol.CmdRead, (ushort)0, 0L, (32u * 1024 * 1024) + 1, NbdProtocol.ErrInvalid },
            new object[] { "read of nothing", NbdProtocol.CmdRead, (ushort)0, 0L, 0u, NbdProtocol.ErrInvalid },
            new object[] { "read with an unknown flag", NbdProtocol.CmdRead, (ushort)0x8000, 0L, 512u, NbdProtocol.ErrInvalid },
            new object[] { "read with FUA not offered", NbdProtocol.CmdRead, NbdProtocol.CmdFlagFua, 0L, 512u, NbdProtocol.ErrInvalid },
            new object[] { "unknown command", (ushort)42, (ushort)0, 0L, 512u, NbdProtocol.ErrInvalid },
            new object[] { "trim", NbdProtocol.CmdTrim, (ushort)0, 0L, 4096u, NbdProtocol.ErrPermission },
            new object[] { "write zeroes", NbdProtocol.CmdWriteZeroes, (ushort)0, 0L, 4096u, NbdProtocol.ErrPermission },
            new object[] { "block status without contexts", NbdProtocol.CmdBlockStatus, (ushort)0, 0L, 4096u, NbdProtocol.ErrInvalid },
            new object[] { "flush with a length", NbdProtocol.CmdFlush, (ushort)0, 0L, 4096u, NbdProtocol.ErrInvalid },
        };

        [LinuxTheory]
        [MemberData(nameof(RefusedRequests))]
        public async Task ARequestItCannotServeGetsAnErrorReplyAndTheConnectionGoesOn(string what, ushort command, ushort flags, long offset, uint length, uint error)
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.OpenExportAsync("disk");

            await client.SendRequestAsync(command, 1, (ulong)offset, length, flags);
            List<RawChunk> reply = await client.ReadReplyAsync().WaitAsync(Patience);

            RawChunk chunk = Assert.Single(reply);
            Assert.Equal(1ul, chunk.Handle);
            Assert.Equal(NbdProtocol.ReplyTypeError, chunk.Type);
            Assert.True(error == chunk.ErrorCode, $"{what}: error {chunk.ErrorCode}, expected {error}");
            await AssertStillServesAsync(client, image);
        }

        [LinuxFact]
        public async Task AWriteIsRefusedAndItsDataSkippedSoTheNextRequestIsReadRight()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.OpenExportAsync("disk");

            // The payload holds what looks like a request: a server that did not skip it would answer it.
            byte[] disguised = RawNbdPeer.Bytes(w => w.UInt32(NbdProtocol.RequestMagic).UInt16(0).UInt16(NbdProtocol.CmdFlush).UInt64(99).UInt64(0).UInt32(0));
            await client.SendRequestAsync(NbdProtocol.CmdWrite, 1, 0, (uint)disguised.Length, payload: disguised);
            RawChunk refused = Assert.Single(await client.ReadReplyAsync().WaitAsync(Patience));
            Assert.Equal(NbdProtocol.ErrPermission, refused.ErrorCode);
            await AssertStillServesAsync(client, image);
        }

        /// <summary>Violations that leave the server no way to answer: the connection ends, the server says why, and serves others.</summary>
        public static IEnumerable<object[]> FatalViolations() => new[]
        {
            new object[] { "bad request magic", "request magic" },
            new object[] { "write too large to skip", "write of" },
            new object[] { "huge option", "bytes of data" },
            new object[] { "option flood", "more than 64 options" },
            new object[] { "unknown client flags", "unknown client flags" },
        };

        [LinuxTheory]
        [MemberData(nameof(FatalViolations))]
        public async Task AViolationItCannotAnswerEndsThatConnectionOnly(string violation, string reported)
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using RawNbdPeer bystander = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await bystander.OpenExportAsync("disk");
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);

            switch (violation)
            {
                case "bad request magic":
                    await client.OpenExportAsync("disk");
                    await client.WriteAsync(new byte[28]);
                    break;
                case "write too large to skip":
                    await client.OpenExportAsync("disk");
                    await client.SendRequestAsync(NbdProtocol.CmdWrite, 1, 0, 1u << 30);
                    break;
                case "huge option":
                    await client.GreetAsServerExpectsAsync();
                    await client.WriteAsync(RawNbdPeer.Bytes(w => w.UInt64(NbdProtocol.OptionMagic).UInt32(NbdProtocol.OptGo).UInt32(1u << 30)));
                    break;
                case "option flood":
                    await client.GreetAsServerExpectsAsync();
                    for (int i = 0; i < 65; i++)
                    {
                        await client.SendOptionAsync(1000, Array.Empty<byte>());
                    }

                    break;
                case "unknown client flags":
                    await client.ReadAsync(18);
                    await client.WriteAsync(RawNbdPeer.Bytes(w => w.UInt32(0x80)));
                    break;
            }

            Assert.True(await ClosedAfterAnyRepliesAsync(client).WaitAsync(Patience));
            Assert.Contains(served.Errors, e => e.Message.Contains(reported, StringComparison.Ordinal) && e.Message.Contains("broke the protocol", StringComparison.Ordinal));
            await AssertStillServesAsync(bystander, image);
        }

        [LinuxFact]
        public async Task AClientThatDoesNotFinishTheHandshakeIsClosedAfterTheTimeout()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage(), new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(1) });
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.GreetAsServerExpectsAsync();

            Assert.True(await client.IsClosedAsync().WaitAsync(Patience));
            Assert.Contains(served.Errors, e => e.Message.Contains("did not finish the handshake within 1 s", StringComparison.Ordinal));
        }

        [LinuxFact]
        public async Task MalformedOptionsGetErrorRepliesAndTheHandshakeGoesOn()
        {
            using var served = new ServedExport(NbdServerToolTests.LayeredImage());
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.GreetAsServerExpectsAsync();

            async Task<uint> AskAsync(uint option, byte[] data)
            {
                await client.SendOptionAsync(option, data);
                return (await client.ReadOptionRepliesAsync().WaitAsync(Patience))[^1].Type;
            }

            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptGo, RawNbdPeer.Bytes(w => w.UInt32(500).Bytes(Encoding.ASCII.GetBytes("disk")).UInt16(0))));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptGo, RawNbdPeer.Bytes(w => w.LengthPrefixed("disk").UInt16(3).UInt16(1))));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptGo, RawNbdPeer.Bytes(w => w.UInt32(2).Bytes(new byte[] { 0xC3, 0x28 }).UInt16(0))));
            Assert.Equal(NbdProtocol.RepErrUnknown, await AskAsync(NbdProtocol.OptInfo, RawNbdPeer.Bytes(w => w.LengthPrefixed("other").UInt16(0))));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptSetMetaContext, RawNbdPeer.Bytes(w => w.LengthPrefixed("disk").UInt32(1).LengthPrefixed("base:allocation"))));
            Assert.Equal(NbdProtocol.RepErrPolicy, await AskAsync(NbdProtocol.OptStartTls, Array.Empty<byte>()));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptList, new byte[3]));
            Assert.Equal(NbdProtocol.RepAck, await AskAsync(NbdProtocol.OptStructuredReply, Array.Empty<byte>()));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptStructuredReply, Array.Empty<byte>()));
            Assert.Equal(NbdProtocol.RepErrInvalid, await AskAsync(NbdProtocol.OptSetMetaContext, RawNbdPeer.Bytes(w => w.LengthPrefixed("disk").UInt32(1_000_000))));
            Assert.Equal(NbdProtocol.RepAck, await AskAsync(NbdProtocol.OptSetMetaContext, RawNbdPeer.Bytes(w => w.LengthPrefixed("disk").UInt32(1).LengthPrefixed("base:allocation"))));
            Assert.Equal(NbdProtocol.RepAck, await AskAsync(NbdProtocol.OptGo, RawNbdPeer.Bytes(w => w.LengthPrefixed("disk").UInt16(0))));

            await client.SendRequestAsync(NbdProtocol.CmdBlockStatus, 5, 0, 4096, NbdProtocol.CmdFlagRequestOne);
            RawChunk status = Assert.Single(await client.ReadReplyAsync().WaitAsync(Patience));
            Assert.Equal(NbdProtocol.ReplyTypeBlockStatus, status.Type);
            Assert.Equal(12, status.Payload.Length); // one context id, one extent
        }

        [LinuxFact]
        public async Task AnUnfragmentedReadIsOneDataChunkWithItsHolesAsZeroesUpToTheBufferSize()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.OpenExportAsync("disk");

            await client.SendRequestAsync(NbdProtocol.CmdRead, 1, 0, 128 * 1024, NbdProtocol.CmdFlagDontFragment);
            RawChunk data = Assert.Single(await client.ReadReplyAsync().WaitAsync(Patience));
            Assert.Equal(NbdProtocol.ReplyTypeOffsetData, data.Type);
            AssertBytes.Equal(image.Data.AsSpan(0, 128 * 1024), data.Payload.AsSpan(8));

            await client.SendRequestAsync(NbdProtocol.CmdRead, 2, 0, (1024 * 1024) + 1, NbdProtocol.CmdFlagDontFragment);
            RawChunk tooLarge = Assert.Single(await client.ReadReplyAsync().WaitAsync(Patience));
            Assert.Equal(NbdProtocol.ErrOverflow, tooLarge.ErrorCode);
        }

        [LinuxFact]
        public async Task WithoutStructuredRepliesAFailureAfterTheReplyBeganClosesTheConnectionRatherThanSendOtherBytes()
        {
            var image = MemoryExportBackend.Create(1024, _ => NbdExtentKind.Data);
            image.DamagedBlocks.Add(0);
            image.DamagedBlocks.Add(600); // in the third 1 MiB piece of the long read below
            using var served = new ServedExport(image);
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.OpenExportAsync("disk", structured: false);

            // Damaged before the reply begins: an error reply, the connection goes on.
            await client.SendRequestAsync(NbdProtocol.CmdRead, 1, 0, 8192);
            Assert.Equal((NbdProtocol.ErrIo, 1ul), await client.ReadSimpleReplyAsync().WaitAsync(Patience));
            await client.SendRequestAsync(NbdProtocol.CmdRead, 2, 8192, 4096);
            Assert.Equal((0u, 2ul), await client.ReadSimpleReplyAsync().WaitAsync(Patience));
            byte[] sent = await client.ReadAsync(4096);
            AssertBytes.Equal(image.Data.AsSpan(8192, 4096), sent);

            // Damaged after it began: the bytes sent are the export's, then the connection ends.
            await client.SendRequestAsync(NbdProtocol.CmdRead, 3, 8192, 3 * 1024 * 1024);
            Assert.Equal((0u, 3ul), await client.ReadSimpleReplyAsync().WaitAsync(Patience));
            byte[] sentBeforeTheFailure = await client.ReadAsync(2 * 1024 * 1024);
            AssertBytes.Equal(image.Data.AsSpan(8192, 2 * 1024 * 1024), sentBeforeTheFailure);
            Assert.True(await client.IsClosedAsync().WaitAsync(Patience));
            Assert.Contains(served.Errors, e => e.Message.Contains("after its reply had begun", StringComparison.Ordinal));
        }

        [LinuxFact]
        public async Task ManyPipelinedLargeReadsStayWithinTheReadBuffersAndTheInFlightLimit()
        {
            var image = MemoryExportBackend.Create(8 * 1024, _ => NbdExtentKind.Data); // 32 MiB
            var options = new NbdServerOptions { ReadBufferBytes = 4 * 1024 * 1024, MaxRequestsInFlightPerConnection = 4 };
            using var served = new ServedExport(image, options);
            using RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint);
            await client.OpenExportAsync("disk");

            // 16 reads of 32 MiB: 512 MiB asked for at once, without reading a reply yet.
            const int Reads = 16;
            for (ulong handle = 1; handle <= Reads; handle++)
            {
                await client.SendRequestAsync(NbdProtocol.CmdRead, handle, 0, 32 * 1024 * 1024);
            }

            var received = new Dictionary<ulong, long>();
            while (received.Count(r => r.Value == 32 * 1024 * 1024) < Reads)
            {
                RawChunk chunk = await client.ReadChunkAsync().WaitAsync(Patience);
                Assert.Equal(NbdProtocol.ReplyTypeOffsetData, chunk.Type);
                ulong offset = BigEndianBytes.ReadUInt64(chunk.Payload, 0);
                AssertBytes.Equal(image.Data.AsSpan((int)offset, chunk.Payload.Length - 8), chunk.Payload.AsSpan(8));
                received[chunk.Handle] = received.GetValueOrDefault(chunk.Handle) + chunk.Payload.Length - 8;
            }

            Assert.InRange(served.Server.Buffers.PeakRented, 1, 4);
            Assert.InRange(image.MaxConcurrentReads, 1, 4);
            Assert.Empty(served.Errors);
        }

        [LinuxFact]
        public async Task AClientThatHangsUpMidRequestLeavesNothingBehind()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            using var served = new ServedExport(image);
            using (RawNbdPeer client = await RawNbdPeer.ConnectAsync(served.Endpoint))
            {
                await client.OpenExportAsync("disk");
                await client.WriteAsync(RawNbdPeer.Bytes(w => w.UInt32(NbdProtocol.RequestMagic).UInt16(0)));
            }

            using (RawNbdPeer reader = await RawNbdPeer.ConnectAsync(served.Endpoint))
            {
                await reader.OpenExportAsync("disk");
                await reader.SendRequestAsync(NbdProtocol.CmdRead, 1, 0, 16 * 1024 * 1024);
            }

            await served.WaitForConnectionCountAsync(0);
            using NbdClient next = await served.ConnectAsync();
            Assert.Equal(image.Size, next.Size);
            Assert.DoesNotContain(served.Errors, e => e.Message.Contains("broke the protocol", StringComparison.Ordinal));
        }

        /// <summary>Reads what the server still sends (replies already under way) until it closes; false if it goes on past 1 MiB of it.</summary>
        private static async Task<bool> ClosedAfterAnyRepliesAsync(RawNbdPeer client)
        {
            for (int i = 0; i < 1024 * 1024; i++)
            {
                if (await client.IsClosedAsync())
                {
                    return true;
                }
            }

            return false;
        }

        private static async Task AssertStillServesAsync(RawNbdPeer client, MemoryExportBackend image)
        {
            await client.SendRequestAsync(NbdProtocol.CmdRead, 77, 0, 65536);
            List<RawChunk> reply = await client.ReadReplyAsync().WaitAsync(Patience);
            Assert.All(reply, chunk => Assert.Equal(77ul, chunk.Handle));
            RawChunk data = Assert.Single(reply);
            AssertBytes.Equal(image.Data.AsSpan(0, 65536), data.Payload.AsSpan(8));
        }
    }
}
