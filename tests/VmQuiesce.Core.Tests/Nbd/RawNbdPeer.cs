using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Sockets;
using System.Text;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Qemu;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>One request as read off the wire.</summary>
    internal sealed record RawRequest(ushort Flags, ushort Command, ulong Handle, ulong Offset, uint Length);

    /// <summary>One structured reply chunk as read off the wire.</summary>
    internal sealed record RawChunk(ushort Flags, ushort Type, ulong Handle, byte[] Payload)
    {
        public bool Done => (Flags & NbdProtocol.ReplyFlagDone) != 0;

        public uint ErrorCode => BigEndianBytes.ReadUInt32(Payload, 0);
    }

    /// <summary>
    /// Raw NBD framing over a socket, for tests that play a misbehaving peer: it writes exactly the bytes it
    /// is told to, right or wrong, and reads whatever comes back.
    /// </summary>
    internal sealed class RawNbdPeer : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;

        public RawNbdPeer(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
        }

        public static async Task<RawNbdPeer> ConnectAsync(NbdEndpoint endpoint)
        {
            Socket socket = endpoint.CreateSocket();
            await socket.ConnectAsync(endpoint.ToEndPoint());
            return new RawNbdPeer(socket);
        }

        public Task WriteAsync(byte[] bytes) => _stream.WriteAsync(bytes, 0, bytes.Length);

        public async Task<byte[]> ReadAsync(int count)
        {
            var buffer = new byte[count];
            for (int done = 0; done < count;)
            {
                int read = await _stream.ReadAsync(buffer.AsMemory(done, count - done));
                if (read == 0)
                {
                    throw new EndOfStreamException($"the peer closed the connection with {count - done} of {count} bytes unread");
                }

                done += read;
            }

            return buffer;
        }

        /// <summary>True when the peer has closed the connection (reads end), false when it sent something instead.</summary>
        public async Task<bool> IsClosedAsync()
        {
            try
            {
                var one = new byte[1];
                return await _stream.ReadAsync(one.AsMemory()) == 0;
            }
            catch (IOException)
            {
                return true;
            }
        }

        /// <summary>Reads and drops whatever comes until the peer closes: a fake server keeping its connection open until the client gives up.</summary>
        public async Task DrainUntilClosedAsync()
        {
            var buffer = new byte[64 * 1024];
            while (await _stream.ReadAsync(buffer.AsMemory()) > 0)
            {
            }
        }

        public void Close()
        {
            _socket.Shutdown(SocketShutdown.Both);
            _stream.Dispose();
        }

        public void Dispose() => _stream.Dispose();

        // ---- The server's side ----

        /// <summary>Greets as a fixed newstyle server and reads the client's flags.</summary>
        public async Task GreetAsClientExpectsAsync()
        {
            await WriteAsync(Bytes(w => w.UInt64(NbdProtocol.InitMagic).UInt64(NbdProtocol.OptionMagic).UInt16(NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes)));
            await ReadAsync(4);
        }

        public async Task<(uint Option, byte[] Data)> ReadOptionAsync()
        {
            byte[] header = await ReadAsync(16);
            uint length = BigEndianBytes.ReadUInt32(header, 12);
            return (BigEndianBytes.ReadUInt32(header, 8), await ReadAsync((int)length));
        }

        public Task SendOptionReplyAsync(uint option, uint type, byte[]? data = null) =>
            WriteAsync(Bytes(w => w.UInt64(NbdProtocol.OptionReplyMagic).UInt32(option).UInt32(type).UInt32((uint)(data?.Length ?? 0)).Bytes(data ?? Array.Empty<byte>())));

        /// <summary>
        /// A correct handshake up to transmission: structured replies accepted (or refused), the contexts
        /// asked for answered from <paramref name="contexts"/>, NBD_OPT_GO answered with an export of <paramref name="size"/> bytes.
        /// </summary>
        public async Task ServeHandshakeAsync(long size, IReadOnlyDictionary<string, uint> contexts, bool structured = true)
        {
            await GreetAsClientExpectsAsync();
            while (true)
            {
                (uint option, byte[] data) = await ReadOptionAsync();
                switch (option)
                {
                    case NbdProtocol.OptStructuredReply:
                        await SendOptionReplyAsync(option, structured ? NbdProtocol.RepAck : NbdProtocol.RepErrUnsupported);
                        break;
                    case NbdProtocol.OptSetMetaContext:
                    case NbdProtocol.OptListMetaContext:
                        var reader = new NbdMessageReader(data);
                        reader.LengthPrefixedString("export");
                        uint count = reader.UInt32("count");
                        for (uint i = 0; i < count; i++)
                        {
                            string query = reader.LengthPrefixedString("query");
                            if (contexts.TryGetValue(query, out uint id))
                            {
                                await SendOptionReplyAsync(option, NbdProtocol.RepMetaContext, Bytes(w => w.UInt32(id).Bytes(Encoding.UTF8.GetBytes(query))));
                            }
                        }

                        await SendOptionReplyAsync(option, NbdProtocol.RepAck);
                        break;
                    case NbdProtocol.OptGo:
                        await SendOptionReplyAsync(option, NbdProtocol.RepInfo, Bytes(w => w.UInt16(NbdProtocol.InfoExport).UInt64((ulong)size).UInt16((ushort)(NbdExportFlags.HasFlags | NbdExportFlags.ReadOnly))));
                        await SendOptionReplyAsync(option, NbdProtocol.RepAck);
                        return;
                    default:
                        await SendOptionReplyAsync(option, NbdProtocol.RepErrUnsupported);
                        break;
                }
            }
        }

        public async Task<RawRequest> ReadRequestAsync()
        {
            byte[] header = await ReadAsync(28);
            return new RawRequest(BigEndianBytes.ReadUInt16(header, 4), BigEndianBytes.ReadUInt16(header, 6), BigEndianBytes.ReadUInt64(header, 8), BigEndianBytes.ReadUInt64(header, 16), BigEndianBytes.ReadUInt32(header, 24));
        }

        public static byte[] Chunk(ushort flags, ushort type, ulong handle, byte[] payload, uint? claimedLength = null) =>
            Bytes(w => w.UInt32(NbdProtocol.StructuredReplyMagic).UInt16(flags).UInt16(type).UInt64(handle).UInt32(claimedLength ?? (uint)payload.Length).Bytes(payload));

        public static byte[] DataChunk(ulong handle, ulong offset, byte[] data, bool done = true) =>
            Chunk(done ? NbdProtocol.ReplyFlagDone : (ushort)0, NbdProtocol.ReplyTypeOffsetData, handle, Bytes(w => w.UInt64(offset).Bytes(data)));

        public static byte[] SimpleReply(uint error, ulong handle) => Bytes(w => w.UInt32(NbdProtocol.SimpleReplyMagic).UInt32(error).UInt64(handle));

        // ---- The client's side ----

        /// <summary>Reads the greeting and answers with fixed newstyle (and no zeroes).</summary>
        public async Task GreetAsServerExpectsAsync()
        {
            await ReadAsync(18);
            await WriteAsync(Bytes(w => w.UInt32(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes)));
        }

        public Task SendOptionAsync(uint option, byte[] data) =>
            WriteAsync(Bytes(w => w.UInt64(NbdProtocol.OptionMagic).UInt32(option).UInt32((uint)data.Length).Bytes(data)));

        /// <summary>Reads option replies up to and including the final one (an ACK or an error); returns them all.</summary>
        public async Task<List<(uint Type, byte[] Data)>> ReadOptionRepliesAsync()
        {
            var replies = new List<(uint Type, byte[] Data)>();
            while (true)
            {
                byte[] header = await ReadAsync(20);
                uint type = BigEndianBytes.ReadUInt32(header, 12);
                replies.Add((type, await ReadAsync((int)BigEndianBytes.ReadUInt32(header, 16))));
                if (type == NbdProtocol.RepAck || (type & NbdProtocol.RepErrorBit) != 0)
                {
                    return replies;
                }
            }
        }

        /// <summary>A correct client handshake into transmission, with or without structured replies and base:allocation.</summary>
        public async Task OpenExportAsync(string exportName, bool structured = true, bool baseAllocation = false)
        {
            await GreetAsServerExpectsAsync();
            if (structured)
            {
                await SendOptionAsync(NbdProtocol.OptStructuredReply, Array.Empty<byte>());
                await ReadOptionRepliesAsync();
            }

            if (baseAllocation)
            {
                await SendOptionAsync(NbdProtocol.OptSetMetaContext, Bytes(w => w.LengthPrefixed(exportName).UInt32(1).LengthPrefixed("base:allocation")));
                await ReadOptionRepliesAsync();
            }

            await SendOptionAsync(NbdProtocol.OptGo, Bytes(w => w.LengthPrefixed(exportName).UInt16(0)));
            List<(uint Type, byte[] Data)> replies = await ReadOptionRepliesAsync();
            if (replies[^1].Type != NbdProtocol.RepAck)
            {
                throw new InvalidOperationException($"NBD_OPT_GO failed with reply type 0x{replies[^1].Type:x8}");
            }
        }

        public Task SendRequestAsync(ushort command, ulong handle, ulong offset, uint length, ushort flags = 0, byte[]? payload = null) =>
            WriteAsync(Bytes(w => w.UInt32(NbdProtocol.RequestMagic).UInt16(flags).UInt16(command).UInt64(handle).UInt64(offset).UInt32(length).Bytes(payload ?? Array.Empty<byte>())));

        public async Task<RawChunk> ReadChunkAsync()
        {
            byte[] header = await ReadAsync(20);
            if (BigEndianBytes.ReadUInt32(header, 0) != NbdProtocol.StructuredReplyMagic)
            {
                throw new InvalidDataException($"expected a structured reply chunk, got magic 0x{BigEndianBytes.ReadUInt32(header, 0):x8}");
            }

            return new RawChunk(BigEndianBytes.ReadUInt16(header, 4), BigEndianBytes.ReadUInt16(header, 6), BigEndianBytes.ReadUInt64(header, 8), await ReadAsync((int)BigEndianBytes.ReadUInt32(header, 16)));
        }

        /// <summary>Chunks of one reply, up to the one marked done.</summary>
        public async Task<List<RawChunk>> ReadReplyAsync()
        {
            var chunks = new List<RawChunk>();
            do
            {
                chunks.Add(await ReadChunkAsync());
            }
            while (!chunks[^1].Done);
            return chunks;
        }

        /// <summary>A simple reply: (error, handle).</summary>
        public async Task<(uint Error, ulong Handle)> ReadSimpleReplyAsync()
        {
            byte[] header = await ReadAsync(16);
            if (BigEndianBytes.ReadUInt32(header, 0) != NbdProtocol.SimpleReplyMagic)
            {
                throw new InvalidDataException($"expected a simple reply, got magic 0x{BigEndianBytes.ReadUInt32(header, 0):x8}");
            }

            return (BigEndianBytes.ReadUInt32(header, 4), BigEndianBytes.ReadUInt64(header, 8));
        }

        public static byte[] Bytes(Action<NbdMessageWriter> write)
        {
            var writer = new NbdMessageWriter();
            write(writer);
            return writer.ToArray();
        }
    }

    /// <summary>A one-connection server on a unix socket that hands its client to a test's script.</summary>
    internal sealed class FakeNbdServer : IDisposable
    {
        private readonly TempFolder _folder = new TempFolder();
        private readonly Socket _listener;

        public FakeNbdServer(Func<RawNbdPeer, Task> script)
        {
            Endpoint = NbdEndpoint.UnixSocket(_folder.File("fake.sock"));
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(Endpoint.SocketPath!));
            _listener.Listen(1);
            Completion = Task.Run(async () =>
            {
                using var peer = new RawNbdPeer(await _listener.AcceptAsync());
                try
                {
                    await script(peer);
                }
                catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
                {
                    // The client closed its end first, which is what these tests provoke.
                }
            });
        }

        public NbdEndpoint Endpoint { get; }

        /// <summary>The script's end (a script that waits for the client to give up ends with the client), or its failure.</summary>
        public Task Completion { get; }

        public void Dispose()
        {
            _listener.Dispose();
            _folder.Dispose();
        }
    }
}
