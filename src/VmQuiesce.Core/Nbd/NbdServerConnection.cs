using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// One client of an <see cref="NbdServer"/>: the fixed newstyle handshake, then requests, each processed
    /// on its own task (replies go out as they are ready, chunks of different replies interleaved under one
    /// send lock). Everything the client sends is bounded: a malformed option gets an error reply, a malformed
    /// request an error reply (EINVAL, EPERM, ...), and what cannot be answered (a wrong magic, an option or
    /// write payload too large to skip, a handshake that takes too long) ends this connection only.
    /// </summary>
    internal sealed class NbdServerConnection
    {
        private const uint BaseAllocationId = 1;
        private const int MaxOptionLength = 64 * 1024;
        private const int MaxOptions = 64;

        /// <summary>Extents in one block status reply, at most (a client then asks again from where it ends).</summary>
        private const int MaxExtentsPerReply = 16 * 1024;

        private readonly NbdServer _server;
        private readonly NbdStream _stream;
        private readonly SemaphoreSlim _slots;
        private readonly SemaphoreSlim _sendLock = new SemaphoreSlim(1, 1);
        private readonly object _gate = new object();
        private readonly CancellationTokenSource _closing = new CancellationTokenSource();
        private TaskCompletionSource<bool>? _idle;
        private int _active;
        private bool _structured;
        private string? _contextsExport;
        private bool _baseAllocation;
        private NbdExport? _export;
        private volatile bool _stopping;

        public NbdServerConnection(NbdServer server, NbdStream stream, string name)
        {
            _server = server;
            _stream = stream;
            Name = name;
            _slots = new SemaphoreSlim(server.Options.MaxRequestsInFlightPerConnection, server.Options.MaxRequestsInFlightPerConnection);
        }

        public string Name { get; }

        public bool InTransmission => _export != null;

        /// <summary>Runs the connection until the client leaves, breaks the protocol, or the server stops.</summary>
        public async Task RunAsync()
        {
            bool disconnectRequested = false;
            try
            {
                bool transmit;
                using (var timer = new CancellationTokenSource(_server.Options.HandshakeTimeout))
                using (timer.Token.Register(() =>
                {
                    Report($"did not finish the handshake within {_server.Options.HandshakeTimeout.TotalSeconds:0.#} s; the connection was closed.");
                    Close();
                }))
                {
                    transmit = await HandshakeAsync().ConfigureAwait(false);
                }

                if (transmit && !_stream.IsDisposed)
                {
                    disconnectRequested = await TransmitAsync().ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is NbdProtocolViolation || e is FormatException)
            {
                Report($"broke the protocol: {e.Message}; the connection was closed.", e);
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
            {
                // The client went away, the handshake timed out (reported then), or the server is stopping.
            }
            finally
            {
                if (disconnectRequested)
                {
                    await WhenIdleAsync().ConfigureAwait(false); // NBD_CMD_DISC: answer what is in progress first
                }

                Close();
                await WhenIdleAsync().ConfigureAwait(false);
                _closing.Dispose();
            }
        }

        /// <summary>From now on requests are answered with ESHUTDOWN and options with NBD_REP_ERR_SHUTDOWN.</summary>
        public void RefuseNewRequests() => _stopping = true;

        /// <summary>Refuses new requests, waits for those in progress up to <paramref name="drain"/>, then closes.</summary>
        public async Task StopAsync(TimeSpan drain)
        {
            _stopping = true;
            if (InTransmission)
            {
                await Task.WhenAny(WhenIdleAsync(), Task.Delay(drain)).ConfigureAwait(false);
            }

            Close();
        }

        /// <summary>Closes the socket and tells the backend to give up on reads for this connection.</summary>
        private void Close()
        {
            _stream.Dispose();
            try
            {
                _closing.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Already closed and cleaned up.
            }
        }

        private Task WhenIdleAsync()
        {
            lock (_gate)
            {
                if (_active == 0)
                {
                    return Task.CompletedTask;
                }

                _idle ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                return _idle.Task;
            }
        }

        private void Report(string message, Exception? exception = null) => _server.Report(new NbdServerError(Name, _export?.Name, message, exception));

        private NbdExport? FindExport(string name) => _server.FindExport(name);

        // ---- Handshake ----

        private async Task<bool> HandshakeAsync()
        {
            var greeting = new byte[18];
            BigEndianBytes.Write(greeting, 0, NbdProtocol.InitMagic);
            BigEndianBytes.Write(greeting, 8, NbdProtocol.OptionMagic);
            BigEndianBytes.Write(greeting, 16, (ushort)(NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes));
            await _stream.WriteAsync(greeting, 0, greeting.Length).ConfigureAwait(false);

            var header = new byte[NbdProtocol.OptionHeaderLength];
            await _stream.ReadExactAsync(header, 0, 4).ConfigureAwait(false);
            uint clientFlags = BigEndianBytes.ReadUInt32(header, 0);
            if ((clientFlags & ~(NbdProtocol.ClientFlagFixedNewstyle | NbdProtocol.ClientFlagNoZeroes)) != 0)
            {
                throw new NbdProtocolViolation($"it sent unknown client flags 0x{clientFlags:x8}");
            }

            bool noZeroes = (clientFlags & NbdProtocol.ClientFlagNoZeroes) != 0;
            for (int count = 0; ; count++)
            {
                await _stream.ReadExactAsync(header, 0, header.Length).ConfigureAwait(false);
                if (BigEndianBytes.ReadUInt64(header, 0) != NbdProtocol.OptionMagic)
                {
                    throw new NbdProtocolViolation("an option does not start with IHAVEOPT");
                }

                uint option = BigEndianBytes.ReadUInt32(header, 8);
                uint length = BigEndianBytes.ReadUInt32(header, 12);
                if (length > MaxOptionLength)
                {
                    throw new NbdProtocolViolation($"it sent {NbdProtocol.OptionName(option)} with {length} bytes of data (at most {MaxOptionLength} accepted)");
                }

                if (count >= MaxOptions)
                {
                    throw new NbdProtocolViolation($"it sent more than {MaxOptions} options without choosing an export");
                }

                var data = new byte[length];
                await _stream.ReadExactAsync(data, 0, data.Length).ConfigureAwait(false);
                if (_stopping && option != NbdProtocol.OptAbort)
                {
                    await SendOptionReplyAsync(option, NbdProtocol.RepErrShutdown, "the server is stopping").ConfigureAwait(false);
                    continue;
                }

                switch (option)
                {
                    case NbdProtocol.OptExportName:
                        return await ExportNameAsync(data, noZeroes).ConfigureAwait(false);
                    case NbdProtocol.OptAbort:
                        await SendOptionReplyAsync(option, NbdProtocol.RepAck).ConfigureAwait(false);
                        return false;
                    case NbdProtocol.OptList:
                        await ListExportsAsync(data).ConfigureAwait(false);
                        break;
                    case NbdProtocol.OptStartTls:
                        await SendOptionReplyAsync(option, NbdProtocol.RepErrPolicy, "TLS is not offered: this server listens on a unix socket or on loopback only").ConfigureAwait(false);
                        break;
                    case NbdProtocol.OptInfo:
                    case NbdProtocol.OptGo:
                        if (await InfoAsync(option, data).ConfigureAwait(false) && option == NbdProtocol.OptGo)
                        {
                            return true;
                        }

                        break;
                    case NbdProtocol.OptStructuredReply:
                        if (data.Length != 0 || _structured)
                        {
                            await SendOptionReplyAsync(option, NbdProtocol.RepErrInvalid, data.Length != 0 ? "NBD_OPT_STRUCTURED_REPLY takes no data" : "structured replies are already on").ConfigureAwait(false);
                        }
                        else
                        {
                            _structured = true;
                            await SendOptionReplyAsync(option, NbdProtocol.RepAck).ConfigureAwait(false);
                        }

                        break;
                    case NbdProtocol.OptListMetaContext:
                    case NbdProtocol.OptSetMetaContext:
                        await MetaContextAsync(option, data).ConfigureAwait(false);
                        break;
                    default:
                        await SendOptionReplyAsync(option, NbdProtocol.RepErrUnsupported, $"{NbdProtocol.OptionName(option)} is not supported").ConfigureAwait(false);
                        break;
                }
            }
        }

        private async Task<bool> ExportNameAsync(byte[] data, bool noZeroes)
        {
            string name;
            try
            {
                name = new NbdMessageReader(data).RestAsString("export name");
            }
            catch (FormatException e)
            {
                throw new NbdProtocolViolation("NBD_OPT_EXPORT_NAME: " + e.Message);
            }

            NbdExport? export = FindExport(name);
            if (export == null)
            {
                // This option has no error reply: the protocol says to close the connection.
                Report($"asked for the export '{name}', which does not exist (NBD_OPT_EXPORT_NAME); the connection was closed.");
                return false;
            }

            var reply = new byte[noZeroes ? 10 : 134];
            BigEndianBytes.Write(reply, 0, (ulong)export.Backend.Size);
            BigEndianBytes.Write(reply, 8, (ushort)ExportFlags());
            await _stream.WriteAsync(reply, 0, reply.Length).ConfigureAwait(false);
            Enter(export);
            return true;
        }

        private void Enter(NbdExport export)
        {
            if (!string.Equals(_contextsExport, export.Name, StringComparison.Ordinal))
            {
                // Contexts chosen for another export do not carry over.
                _baseAllocation = false;
            }

            _export = export;
        }

        private NbdExportFlags ExportFlags() =>
            NbdExportFlags.HasFlags | NbdExportFlags.ReadOnly | NbdExportFlags.SendFlush | NbdExportFlags.SendCache | NbdExportFlags.CanMultiConnection
            | (_structured ? NbdExportFlags.SendDontFragment : NbdExportFlags.None);

        private async Task ListExportsAsync(byte[] data)
        {
            if (data.Length != 0)
            {
                await SendOptionReplyAsync(NbdProtocol.OptList, NbdProtocol.RepErrInvalid, "NBD_OPT_LIST takes no data").ConfigureAwait(false);
                return;
            }

            foreach (NbdExport export in _server.Exports.Where(export => export.Listed))
            {
                await SendOptionReplyAsync(NbdProtocol.OptList, NbdProtocol.RepServer, new NbdMessageWriter().LengthPrefixed(export.Name).ToArray()).ConfigureAwait(false);
            }

            await SendOptionReplyAsync(NbdProtocol.OptList, NbdProtocol.RepAck).ConfigureAwait(false);
        }

        /// <summary>NBD_OPT_INFO / NBD_OPT_GO; true when the export exists and was described.</summary>
        private async Task<bool> InfoAsync(uint option, byte[] data)
        {
            string name;
            var requested = new HashSet<ushort>();
            try
            {
                var reader = new NbdMessageReader(data);
                name = reader.LengthPrefixedString("export name");
                ushort count = reader.UInt16("number of information requests");
                for (int i = 0; i < count; i++)
                {
                    requested.Add(reader.UInt16("information request"));
                }

                reader.ExpectEnd(NbdProtocol.OptionName(option));
            }
            catch (FormatException e)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepErrInvalid, e.Message).ConfigureAwait(false);
                return false;
            }

            NbdExport? export = FindExport(name);
            if (export == null)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepErrUnknown, $"there is no export named '{name}'").ConfigureAwait(false);
                return false;
            }

            await SendOptionReplyAsync(option, NbdProtocol.RepInfo,
                new NbdMessageWriter().UInt16(NbdProtocol.InfoExport).UInt64((ulong)export.Backend.Size).UInt16((ushort)ExportFlags()).ToArray()).ConfigureAwait(false);
            if (requested.Contains(NbdProtocol.InfoName))
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepInfo,
                    new NbdMessageWriter().UInt16(NbdProtocol.InfoName).Bytes(Encoding.UTF8.GetBytes(export.Name)).ToArray()).ConfigureAwait(false);
            }

            if (requested.Contains(NbdProtocol.InfoDescription) && !string.IsNullOrEmpty(export.Description))
            {
                byte[] description = Encoding.UTF8.GetBytes(export.Description);
                Array.Resize(ref description, Math.Min(description.Length, NbdProtocol.MaxStringBytes));
                await SendOptionReplyAsync(option, NbdProtocol.RepInfo, new NbdMessageWriter().UInt16(NbdProtocol.InfoDescription).Bytes(description).ToArray()).ConfigureAwait(false);
            }

            if (requested.Contains(NbdProtocol.InfoBlockSize))
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepInfo,
                    new NbdMessageWriter().UInt16(NbdProtocol.InfoBlockSize).UInt32(1).UInt32(export.PreferredBlockSize).UInt32(NbdProtocol.MaxReadLength).ToArray()).ConfigureAwait(false);
            }

            await SendOptionReplyAsync(option, NbdProtocol.RepAck).ConfigureAwait(false);
            if (option == NbdProtocol.OptGo)
            {
                Enter(export);
            }

            return true;
        }

        private async Task MetaContextAsync(uint option, byte[] data)
        {
            if (!_structured)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepErrInvalid, "metadata contexts need structured replies; send NBD_OPT_STRUCTURED_REPLY first").ConfigureAwait(false);
                return;
            }

            string name;
            var queries = new List<string>();
            try
            {
                var reader = new NbdMessageReader(data);
                name = reader.LengthPrefixedString("export name");
                uint count = reader.UInt32("number of queries");
                if (count > reader.Remaining / 4)
                {
                    throw new FormatException($"{count} queries cannot fit in {reader.Remaining} bytes");
                }

                for (uint i = 0; i < count; i++)
                {
                    queries.Add(reader.LengthPrefixedString("query"));
                }

                reader.ExpectEnd(NbdProtocol.OptionName(option));
            }
            catch (FormatException e)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepErrInvalid, e.Message).ConfigureAwait(false);
                return;
            }

            if (FindExport(name) == null)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepErrUnknown, $"there is no export named '{name}'").ConfigureAwait(false);
                return;
            }

            // One context exists: base:allocation. Listing takes its namespace ("base:") or nothing (all).
            bool listing = option == NbdProtocol.OptListMetaContext;
            bool matched = (listing && queries.Count == 0)
                || queries.Any(query => query == NbdProtocol.BaseAllocation || (listing && query == "base:"));
            if (matched)
            {
                await SendOptionReplyAsync(option, NbdProtocol.RepMetaContext,
                    new NbdMessageWriter().UInt32(listing ? 0 : BaseAllocationId).Bytes(Encoding.UTF8.GetBytes(NbdProtocol.BaseAllocation)).ToArray()).ConfigureAwait(false);
            }

            if (!listing)
            {
                _contextsExport = name;
                _baseAllocation = matched;
            }

            await SendOptionReplyAsync(option, NbdProtocol.RepAck).ConfigureAwait(false);
        }

        private Task SendOptionReplyAsync(uint option, uint type, string message) => SendOptionReplyAsync(option, type, Encoding.UTF8.GetBytes(message));

        private async Task SendOptionReplyAsync(uint option, uint type, byte[]? data = null)
        {
            data ??= Array.Empty<byte>();
            var reply = new byte[NbdProtocol.OptionReplyHeaderLength + data.Length];
            BigEndianBytes.Write(reply, 0, NbdProtocol.OptionReplyMagic);
            BigEndianBytes.Write(reply, 8, option);
            BigEndianBytes.Write(reply, 12, type);
            BigEndianBytes.Write(reply, 16, (uint)data.Length);
            Buffer.BlockCopy(data, 0, reply, NbdProtocol.OptionReplyHeaderLength, data.Length);
            await _stream.WriteAsync(reply, 0, reply.Length).ConfigureAwait(false);
        }

        // ---- Transmission ----

        /// <summary>Serves requests; true when the client asked to disconnect (NBD_CMD_DISC), false when it hung up.</summary>
        private async Task<bool> TransmitAsync()
        {
            var header = new byte[NbdProtocol.RequestHeaderLength];
            var scratch = new byte[64 * 1024];
            while (true)
            {
                try
                {
                    await _stream.ReadExactAsync(header, 0, 4).ConfigureAwait(false);
                }
                catch (EndOfStreamException)
                {
                    return false; // the client hung up between requests (a hard disconnect)
                }

                await _stream.ReadExactAsync(header, 4, header.Length - 4).ConfigureAwait(false);
                if (BigEndianBytes.ReadUInt32(header, 0) != NbdProtocol.RequestMagic)
                {
                    throw new NbdProtocolViolation($"a request starts with 0x{BigEndianBytes.ReadUInt32(header, 0):x8} instead of the request magic");
                }

                var request = new NbdServerRequest(BigEndianBytes.ReadUInt16(header, 4), BigEndianBytes.ReadUInt16(header, 6), BigEndianBytes.ReadUInt64(header, 8), BigEndianBytes.ReadUInt64(header, 16), BigEndianBytes.ReadUInt32(header, 24));
                if (request.Command == NbdProtocol.CmdDisconnect)
                {
                    return true;
                }

                if (request.Command == NbdProtocol.CmdWrite)
                {
                    // The data follows the header whatever the answer: skip it to stay in step, if it is sane.
                    if (request.Length > NbdProtocol.MaxReadLength)
                    {
                        throw new NbdProtocolViolation($"it sent a write of {request.Length} bytes (at most {NbdProtocol.MaxReadLength} are skipped)");
                    }

                    await _stream.SkipAsync(request.Length, scratch).ConfigureAwait(false);
                }

                await _slots.WaitAsync().ConfigureAwait(false);
                lock (_gate)
                {
                    _active++;
                }

                _ = Task.Run(() => ProcessAsync(request));
            }
        }

        private async Task ProcessAsync(NbdServerRequest request)
        {
            try
            {
                string? invalid = _stopping ? null : Validate(request);
                if (_stopping)
                {
                    await SendErrorAsync(request, NbdProtocol.ErrShutdown, "the server is stopping").ConfigureAwait(false);
                }
                else if (invalid != null)
                {
                    await SendErrorAsync(request, request.Command == NbdProtocol.CmdWrite || request.Command == NbdProtocol.CmdTrim || request.Command == NbdProtocol.CmdWriteZeroes
                        ? NbdProtocol.ErrPermission : NbdProtocol.ErrInvalid, invalid).ConfigureAwait(false);
                }
                else if (request.Command == NbdProtocol.CmdRead)
                {
                    await (_structured ? ReadStructuredAsync(request) : ReadSimpleAsync(request)).ConfigureAwait(false);
                }
                else if (request.Command == NbdProtocol.CmdBlockStatus)
                {
                    await BlockStatusAsync(request).ConfigureAwait(false);
                }
                else
                {
                    await SendSimpleReplyAsync(request.Handle, 0).ConfigureAwait(false); // flush and cache: nothing to do on a read-only export
                }
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
            {
                Close(); // the client is gone, or a reply could not be finished: the connection ends
            }
            catch (Exception e)
            {
                Report($"failed {request.Describe()}: {e.Message}; the connection was closed.", e);
                Close();
            }
            finally
            {
                TaskCompletionSource<bool>? idle = null;
                lock (_gate)
                {
                    if (--_active == 0)
                    {
                        idle = _idle;
                        _idle = null;
                    }
                }

                idle?.TrySetResult(true);
                _slots.Release();
            }
        }

        /// <summary>Why the request cannot be served (the error message), or null.</summary>
        private string? Validate(NbdServerRequest request)
        {
            long size = _export!.Backend.Size;
            bool inRange = request.Offset <= (ulong)size && request.Length <= (ulong)size - request.Offset;
            string range = inRange ? string.Empty : $"{request.Describe()} reaches past the end of the export ({size} bytes)";
            switch (request.Command)
            {
                case NbdProtocol.CmdRead:
                    ushort readFlags = _structured ? NbdProtocol.CmdFlagDontFragment : (ushort)0;
                    return (request.Flags & ~readFlags) != 0 ? $"flags 0x{request.Flags:x4} are not valid for a read"
                        : request.Length == 0 ? "a read must be of at least one byte"
                        : request.Length > NbdProtocol.MaxReadLength ? $"a read of {request.Length} bytes is larger than the maximum of {NbdProtocol.MaxReadLength}"
                        : !inRange ? range : null;
                case NbdProtocol.CmdBlockStatus:
                    return !_structured || !_baseAllocation ? "block status needs structured replies and the base:allocation context, negotiated first"
                        : (request.Flags & ~NbdProtocol.CmdFlagRequestOne) != 0 ? $"flags 0x{request.Flags:x4} are not valid for block status"
                        : request.Length == 0 ? "block status must cover at least one byte"
                        : !inRange ? range : null;
                case NbdProtocol.CmdFlush:
                    return request.Flags != 0 || request.Offset != 0 || request.Length != 0 ? "a flush takes no flags, offset or length" : null;
                case NbdProtocol.CmdCache:
                    return request.Flags != 0 ? $"flags 0x{request.Flags:x4} are not valid for cache" : !inRange ? range : null;
                case NbdProtocol.CmdWrite:
                case NbdProtocol.CmdTrim:
                case NbdProtocol.CmdWriteZeroes:
                    return $"the export is read-only: {NbdProtocol.CommandName(request.Command)} is refused";
                default:
                    return $"{NbdProtocol.CommandName(request.Command)} is not a known command";
            }
        }

        /// <summary>Asks the backend, and checks its answer: a backend bug must not become a protocol violation.</summary>
        private async Task<IReadOnlyList<NbdBackendExtent>> DescribeAsync(long offset, long length)
        {
            IReadOnlyList<NbdBackendExtent> extents = await _export!.Backend.DescribeAsync(offset, length, _closing.Token).ConfigureAwait(false);
            long total = 0;
            foreach (NbdBackendExtent extent in extents ?? Array.Empty<NbdBackendExtent>())
            {
                if (extent.Length <= 0 || extent.Length > length - total)
                {
                    throw new InvalidOperationException($"the export's backend described {offset}+{length} with an extent of {extent.Length} bytes after {total}");
                }

                total += extent.Length;
            }

            if (total == 0)
            {
                throw new InvalidOperationException($"the export's backend described nothing of {offset}+{length}");
            }

            return extents!;
        }

        /// <summary>Fills buffer[0, count) with the export's bytes from <paramref name="offset"/>: zeroes where it has none, data read.</summary>
        private async Task FillAsync(long offset, byte[] buffer, int count)
        {
            long position = offset;
            while (position < offset + count)
            {
                foreach (NbdBackendExtent extent in await DescribeAsync(position, offset + count - position).ConfigureAwait(false))
                {
                    int at = (int)(position - offset);
                    if (extent.Kind == NbdExtentKind.Data)
                    {
                        await _export!.Backend.ReadAsync(position, buffer, at, (int)extent.Length, _closing.Token).ConfigureAwait(false);
                    }
                    else
                    {
                        Array.Clear(buffer, at, (int)extent.Length);
                    }

                    position += extent.Length;
                }
            }
        }

        private async Task ReadStructuredAsync(NbdServerRequest request)
        {
            long offset = (long)request.Offset;
            long end = offset + request.Length;
            if ((request.Flags & NbdProtocol.CmdFlagDontFragment) != 0)
            {
                await ReadUnfragmentedAsync(request).ConfigureAwait(false);
                return;
            }

            long position = offset;
            while (position < end)
            {
                IReadOnlyList<NbdBackendExtent>? extents = null;
                if (!await TryAsync(request, position, async () => extents = await DescribeAsync(position, end - position).ConfigureAwait(false)).ConfigureAwait(false))
                {
                    return;
                }

                foreach (NbdBackendExtent extent in extents!)
                {
                    long extentEnd = position + extent.Length;
                    if (extent.Kind != NbdExtentKind.Data)
                    {
                        await SendHoleChunkAsync(request.Handle, position, (uint)extent.Length, done: extentEnd == end).ConfigureAwait(false);
                        position = extentEnd;
                        continue;
                    }

                    while (position < extentEnd)
                    {
                        long pieceOffset = position;
                        int most = (int)Math.Min(_server.Buffers.BufferSize, extentEnd - position);
                        NbdLease? piece = null;
                        if (!await TryAsync(request, pieceOffset, async () => piece = await ReadPieceAsync(pieceOffset, most).ConfigureAwait(false)).ConfigureAwait(false))
                        {
                            return;
                        }

                        using (piece!)
                        {
                            await SendDataChunkAsync(request.Handle, position, piece!.Buffer, piece.Offset, piece.Count, done: position + piece.Count == end).ConfigureAwait(false);
                            position += piece.Count;
                        }
                    }
                }
            }
        }

        /// <summary>
        /// Up to <paramref name="count"/> bytes of data from <paramref name="offset"/>: lent by a backend that keeps
        /// them in buffers of its own (sent from there, no copy), otherwise read into a buffer of the pool.
        /// </summary>
        private async Task<NbdLease> ReadPieceAsync(long offset, int count)
        {
            if (_export!.Backend is INbdLendingBackend lender)
            {
                NbdLease lent = await lender.LendAsync(offset, count, _closing.Token).ConfigureAwait(false);
                if (lent.Count < 1 || lent.Count > count || lent.Offset < 0 || lent.Offset > lent.Buffer.Length - lent.Count)
                {
                    lent.Dispose();
                    throw new InvalidOperationException($"the export's backend lent {lent.Count} bytes at {lent.Offset} of a {lent.Buffer.Length}-byte buffer for {count} bytes at offset {offset}");
                }

                return lent;
            }

            byte[] buffer = await _server.Buffers.RentAsync().ConfigureAwait(false);
            try
            {
                await _export.Backend.ReadAsync(offset, buffer, 0, count, _closing.Token).ConfigureAwait(false);
            }
            catch
            {
                _server.Buffers.Return(buffer);
                throw;
            }

            return new NbdLease(buffer, 0, count, () => _server.Buffers.Return(buffer));
        }

        /// <summary>NBD_CMD_FLAG_DF: one content chunk, holes as explicit zeroes; the protocol lets a server refuse what it cannot buffer.</summary>
        private async Task ReadUnfragmentedAsync(NbdServerRequest request)
        {
            long offset = (long)request.Offset;
            byte[] buffer = await _server.Buffers.RentAsync().ConfigureAwait(false);
            try
            {
                if (request.Length > buffer.Length)
                {
                    await SendErrorAsync(request, NbdProtocol.ErrOverflow, $"an unfragmented read can be at most {buffer.Length} bytes").ConfigureAwait(false);
                    return;
                }

                if (await TryAsync(request, offset, () => FillAsync(offset, buffer, (int)request.Length)).ConfigureAwait(false))
                {
                    await SendDataChunkAsync(request.Handle, offset, buffer, 0, (int)request.Length, done: true).ConfigureAwait(false);
                }
            }
            finally
            {
                _server.Buffers.Return(buffer);
            }
        }

        /// <summary>
        /// Without structured replies a read is one header and then all its bytes: a failure found before the
        /// header is an error reply; after it, the protocol leaves only closing the connection, never sending
        /// bytes that are not the export's.
        /// </summary>
        private async Task ReadSimpleAsync(NbdServerRequest request)
        {
            long offset = (long)request.Offset;
            byte[] buffer = await _server.Buffers.RentAsync().ConfigureAwait(false);
            try
            {
                int first = (int)Math.Min(buffer.Length, request.Length);
                if (!await TryAsync(request, offset, () => FillAsync(offset, buffer, first)).ConfigureAwait(false))
                {
                    return;
                }

                await _sendLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    byte[] header = SimpleReplyHeader(request.Handle, 0);
                    await _stream.WriteAsync(header, 0, header.Length).ConfigureAwait(false);
                    await _stream.WriteAsync(buffer, 0, first).ConfigureAwait(false);
                    for (long position = offset + first; position < offset + request.Length;)
                    {
                        int piece = (int)Math.Min(buffer.Length, offset + request.Length - position);
                        try
                        {
                            await FillAsync(position, buffer, piece).ConfigureAwait(false);
                        }
                        catch (Exception e)
                        {
                            Report($"failed {request.Describe()} at offset {position}, after its reply had begun; the connection was closed: {e.Message}", e);
                            Close();
                            return;
                        }

                        await _stream.WriteAsync(buffer, 0, piece).ConfigureAwait(false);
                        position += piece;
                    }
                }
                finally
                {
                    _sendLock.Release();
                }
            }
            finally
            {
                _server.Buffers.Return(buffer);
            }
        }

        /// <summary>Runs a backend step; when it fails, answers the request with EIO at <paramref name="offset"/> and returns false.</summary>
        private async Task<bool> TryAsync(NbdServerRequest request, long offset, Func<Task> step)
        {
            try
            {
                await step().ConfigureAwait(false);
                return true;
            }
            catch (Exception e)
            {
                // Only backend work runs in the step: whatever it throws (a damaged chunk, a disk error) is an I/O error on this range.
                if (!_closing.IsCancellationRequested)
                {
                    Report($"could not serve {request.Describe()}: reading offset {offset} failed: {e.Message}", e);
                }

                await SendErrorAsync(request, NbdProtocol.ErrIo, e.Message, offset).ConfigureAwait(false);
                return false;
            }
        }

        private async Task BlockStatusAsync(NbdServerRequest request)
        {
            long offset = (long)request.Offset;
            long end = offset + request.Length;
            bool one = (request.Flags & NbdProtocol.CmdFlagRequestOne) != 0;
            var lengths = new List<uint>();
            var flags = new List<uint>();
            long position = offset;
            while (position < end && lengths.Count < (one ? 1 : MaxExtentsPerReply))
            {
                IReadOnlyList<NbdBackendExtent>? extents = null;
                if (!await TryAsync(request, position, async () => extents = await DescribeAsync(position, end - position).ConfigureAwait(false)).ConfigureAwait(false))
                {
                    return;
                }

                foreach (NbdBackendExtent extent in extents!)
                {
                    uint state = extent.Kind == NbdExtentKind.Hole ? NbdExtentFlags.Hole | NbdExtentFlags.Zero
                        : extent.Kind == NbdExtentKind.Zero ? NbdExtentFlags.Zero : 0;
                    int last = lengths.Count - 1;
                    if (last >= 0 && flags[last] == state)
                    {
                        lengths[last] += (uint)extent.Length; // the request length is 32-bit, so the sum is too
                    }
                    else if (lengths.Count < (one ? 1 : MaxExtentsPerReply))
                    {
                        lengths.Add((uint)extent.Length);
                        flags.Add(state);
                    }
                    else
                    {
                        break;
                    }

                    position += extent.Length;
                }
            }

            var payload = new byte[4 + (8 * lengths.Count)];
            BigEndianBytes.Write(payload, 0, BaseAllocationId);
            for (int i = 0; i < lengths.Count; i++)
            {
                BigEndianBytes.Write(payload, 4 + (8 * i), lengths[i]);
                BigEndianBytes.Write(payload, 8 + (8 * i), flags[i]);
            }

            await SendChunkAsync(request.Handle, NbdProtocol.ReplyTypeBlockStatus, true, payload, null, 0, 0).ConfigureAwait(false);
        }

        // ---- Replies ----

        private Task SendErrorAsync(NbdServerRequest request, uint error, string message, long? offset = null)
        {
            if (!_structured)
            {
                return SendSimpleReplyAsync(request.Handle, error);
            }

            byte[] text = Encoding.UTF8.GetBytes(message);
            int messageLength = Math.Min(text.Length, NbdProtocol.MaxStringBytes);
            var payload = new NbdMessageWriter().UInt32(error).UInt16((ushort)messageLength).Bytes(text.Take(messageLength).ToArray());
            if (offset.HasValue)
            {
                payload.UInt64((ulong)offset.Value);
            }

            return SendChunkAsync(request.Handle, offset.HasValue ? NbdProtocol.ReplyTypeErrorOffset : NbdProtocol.ReplyTypeError, true, payload.ToArray(), null, 0, 0);
        }

        private static byte[] SimpleReplyHeader(ulong handle, uint error)
        {
            var header = new byte[NbdProtocol.SimpleReplyHeaderLength];
            BigEndianBytes.Write(header, 0, NbdProtocol.SimpleReplyMagic);
            BigEndianBytes.Write(header, 4, error);
            BigEndianBytes.Write(header, 8, handle);
            return header;
        }

        private async Task SendSimpleReplyAsync(ulong handle, uint error)
        {
            byte[] header = SimpleReplyHeader(handle, error);
            await _sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(header, 0, header.Length).ConfigureAwait(false);
            }
            finally
            {
                _sendLock.Release();
            }
        }

        private Task SendHoleChunkAsync(ulong handle, long offset, uint length, bool done) =>
            SendChunkAsync(handle, NbdProtocol.ReplyTypeOffsetHole, done, new NbdMessageWriter().UInt64((ulong)offset).UInt32(length).ToArray(), null, 0, 0);

        private Task SendDataChunkAsync(ulong handle, long offset, byte[] data, int dataOffset, int count, bool done) =>
            SendChunkAsync(handle, NbdProtocol.ReplyTypeOffsetData, done, new NbdMessageWriter().UInt64((ulong)offset).ToArray(), data, dataOffset, count);

        /// <summary>One structured reply chunk: header, <paramref name="payload"/>, then <paramref name="count"/> bytes of <paramref name="data"/> from <paramref name="dataOffset"/> when given.</summary>
        private async Task SendChunkAsync(ulong handle, ushort type, bool done, byte[] payload, byte[]? data, int dataOffset, int count)
        {
            var message = new byte[NbdProtocol.StructuredReplyHeaderLength + payload.Length];
            BigEndianBytes.Write(message, 0, NbdProtocol.StructuredReplyMagic);
            BigEndianBytes.Write(message, 4, done ? NbdProtocol.ReplyFlagDone : (ushort)0);
            BigEndianBytes.Write(message, 6, type);
            BigEndianBytes.Write(message, 8, handle);
            BigEndianBytes.Write(message, 16, (uint)(payload.Length + count));
            Buffer.BlockCopy(payload, 0, message, NbdProtocol.StructuredReplyHeaderLength, payload.Length);
            await _sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(message, 0, message.Length).ConfigureAwait(false);
                if (data != null)
                {
                    await _stream.WriteAsync(data, dataOffset, count).ConfigureAwait(false);
                }
            }
            finally
            {
                _sendLock.Release();
            }
        }
    }

    /// <summary>One request as the client sent it.</summary>
    internal sealed class NbdServerRequest
    {
        public NbdServerRequest(ushort flags, ushort command, ulong handle, ulong offset, uint length)
        {
            Flags = flags;
            Command = command;
            Handle = handle;
            Offset = offset;
            Length = length;
        }

        public ushort Flags { get; }

        public ushort Command { get; }

        public ulong Handle { get; }

        public ulong Offset { get; }

        public uint Length { get; }

        public string Describe() => $"{NbdProtocol.CommandName(Command)} of {Length} byte(s) at offset {Offset}";
    }
}
