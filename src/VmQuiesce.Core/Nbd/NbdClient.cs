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
    /// A managed NBD client: reads an export and asks its block status (base:allocation, QEMU's
    /// qemu:dirty-bitmap:NAME) over a unix socket or TCP.
    /// </summary>
    /// <remarks>
    /// Managed rather than libnbd: the part of the protocol a reader needs is small (fixed newstyle
    /// negotiation, NBD_OPT_GO, structured replies, block status), a managed client needs no native library
    /// in the module, loads in Windows PowerShell 5.1 as in PowerShell 7, works on Windows (TCP), and
    /// bounds everything the server says in one place. Requests are pipelined: up to
    /// <see cref="NbdClientOptions.MaxRequestsInFlight"/> are on the wire at once, their replies matched by
    /// handle, so one reader keeps the server busy. The I/O blocks (the handshake on the caller's thread, replies on one
    /// thread of the connection's own) rather than awaits: ReadyToRun cannot precompile the framework's async plumbing
    /// over our state machines, so each awaited step would be compiled on first use, on a backup's critical path. A server that breaks the protocol, goes silent past the
    /// request timeout or closes the connection fails the connection with an error naming it (ids
    /// NbdProtocolError, NbdRequestTimeout, NbdConnectionClosed) and every request in flight with it; a
    /// server's error for one request fails that request only (<see cref="NbdRequestException"/>).
    /// Nothing the server sends is allocated before its length has been bounded.
    /// </remarks>
    public sealed class NbdClient : IDisposable
    {
        /// <summary>Descriptors accepted in one block status chunk: 1 MiB of them (QEMU's server sends at most that many).</summary>
        private const int MaxExtentsPerChunk = 128 * 1024;

        /// <summary>An error chunk: code, message length, a message of at most 4096 bytes, an offset.</summary>
        private const int MaxErrorChunkLength = 6 + NbdProtocol.MaxStringBytes + 8;

        private readonly NbdStream _stream;
        private readonly NbdNegotiated _negotiated;
        private readonly string _server;
        private readonly TimeSpan _requestTimeout;
        private readonly SemaphoreSlim _slots;
        private readonly SemaphoreSlim _sendLock = new SemaphoreSlim(1, 1);
        private readonly Dictionary<ulong, NbdPendingRequest> _pending = new Dictionary<ulong, NbdPendingRequest>();
        private readonly byte[] _replyHeader = new byte[NbdProtocol.StructuredReplyHeaderLength];
        private readonly byte[] _scratch = new byte[64 * 1024];
        private readonly Task _receiver;
        private long _nextHandle;
        private VmQuiesceException? _failure;
        private bool _receiverEnded;
        private int _disposed;

        private NbdClient(NbdStream stream, NbdEndpoint endpoint, NbdNegotiated negotiated, NbdClientOptions options)
        {
            _stream = stream;
            _negotiated = negotiated;
            _server = endpoint.ToString();
            Endpoint = endpoint;
            _requestTimeout = options.RequestTimeout;
            _slots = new SemaphoreSlim(options.MaxRequestsInFlight, options.MaxRequestsInFlight);
            _receiver = OwnThread.Start(ReceiveLoop);
        }

        public NbdEndpoint Endpoint { get; }

        public string ExportName => _negotiated.ExportName;

        /// <summary>The export's size in bytes.</summary>
        public long Size => _negotiated.Size;

        public NbdExportFlags Flags => _negotiated.Flags;

        public bool IsReadOnly => (Flags & NbdExportFlags.ReadOnly) != 0;

        public NbdBlockSizes BlockSizes => _negotiated.BlockSizes;

        /// <summary>Whether the server sends structured replies (holes in reads, block status, errors with messages).</summary>
        public bool StructuredReplies => _negotiated.StructuredReplies;

        /// <summary>The metadata contexts selected for block status, as the server named them.</summary>
        public IReadOnlyList<string> MetaContexts => _negotiated.Contexts.Select(c => c.Name).ToList();

        /// <summary>The largest single request this client sends; larger reads are split.</summary>
        public int MaxRequestLength
        {
            get
            {
                long maximum = Math.Min(BlockSizes.Maximum, NbdProtocol.MaxReadLength);
                return (int)(maximum - (maximum % BlockSizes.Minimum));
            }
        }

        /// <summary>Connects, negotiates, opens the export and selects the metadata contexts the options name.</summary>
        public static NbdClient Connect(NbdEndpoint endpoint, NbdClientOptions options, CancellationToken cancel = default)
        {
            if (endpoint == null)
            {
                throw new ArgumentNullException(nameof(endpoint));
            }

            if (options == null)
            {
                throw new ArgumentNullException(nameof(options));
            }

            CheckOptions(options);
            string[] contexts = options.MetaContexts.ToArray();
            (NbdStream stream, NbdNegotiated negotiated) = Handshake(endpoint, options.ConnectTimeout, cancel,
                handshake => handshake.Negotiate(options.ExportName ?? string.Empty, contexts));
            return new NbdClient(stream, endpoint, negotiated, options);
        }

        /// <summary>
        /// The metadata contexts an export offers that match <paramref name="queries"/> ("qemu:dirty-bitmap:"
        /// lists every exported bitmap; none lists all), on a connection of its own that ends politely.
        /// </summary>
        public static IReadOnlyList<string> ListMetaContexts(NbdEndpoint endpoint, string exportName, IEnumerable<string>? queries = null, TimeSpan? timeout = null, CancellationToken cancel = default)
        {
            if (endpoint == null)
            {
                throw new ArgumentNullException(nameof(endpoint));
            }

            string[] queryList = (queries ?? Array.Empty<string>()).ToArray();
            (NbdStream stream, IReadOnlyList<string> names) = Handshake(endpoint, timeout ?? TimeSpan.FromSeconds(30), cancel,
                handshake => handshake.ListContexts(exportName ?? string.Empty, queryList));
            stream.Dispose();
            return names;
        }

        /// <summary>
        /// Reads <paramref name="count"/> bytes at <paramref name="offset"/> into <paramref name="buffer"/>.
        /// Holes the server reports arrive as zeroes. Reads larger than <see cref="MaxRequestLength"/> go out
        /// as several pipelined requests. When cancelled, nothing is written into the buffer after this task ends.
        /// </summary>
        public Task ReadAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel = default)
        {
            if (buffer == null)
            {
                throw new ArgumentNullException(nameof(buffer));
            }

            if (bufferOffset < 0 || count < 0 || bufferOffset > buffer.Length - count)
            {
                throw new ArgumentOutOfRangeException(nameof(count), $"{count} byte(s) from index {bufferOffset} do not fit in a buffer of {buffer.Length}.");
            }

            CheckRange(NbdProtocol.CmdRead, offset, count);
            if (count == 0)
            {
                return Task.CompletedTask;
            }

            int pieceLength = MaxRequestLength;
            if (count <= pieceLength)
            {
                return Send(new NbdReadRequest(offset, buffer, bufferOffset, count), cancel);
            }

            var pieces = new List<Task>();
            for (int done = 0; done < count; done += pieceLength)
            {
                int length = Math.Min(pieceLength, count - done);
                pieces.Add(Send(new NbdReadRequest(offset + done, buffer, bufferOffset + done, length), cancel));
            }

            return Task.WhenAll(pieces);
        }

        /// <summary>
        /// The status of the selected metadata contexts from <paramref name="offset"/>, for at most
        /// <paramref name="length"/> bytes (and at most 4 GiB in one request). The server may describe less:
        /// continue from <see cref="NbdBlockStatus.CoveredLength"/>.
        /// </summary>
        public Task<NbdBlockStatus> GetBlockStatusAsync(long offset, long length, CancellationToken cancel = default)
        {
            if (_negotiated.Contexts.Count == 0)
            {
                throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidOperation,
                    $"Block status needs metadata contexts, and none were selected on the connection to {_server}: name them in NbdClientOptions.MetaContexts.", ExportName);
            }

            if (length <= 0)
            {
                throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidArgument,
                    $"A block status request must cover at least one byte; {length} was asked at offset {offset}.", ExportName);
            }

            uint maximum = uint.MaxValue - (uint.MaxValue % BlockSizes.Minimum);
            long requestLength = Math.Min(Math.Min(length, maximum), offset >= 0 && offset <= Size ? Size - offset : length);
            CheckRange(NbdProtocol.CmdBlockStatus, offset, requestLength);
            return Send(new NbdBlockStatusRequest(offset, (uint)requestLength), cancel);
        }

        /// <summary>Sends NBD_CMD_DISC when the connection is healthy, then closes it; requests still in flight fail.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            if (Volatile.Read(ref _failure) == null && _sendLock.Wait(TimeSpan.FromSeconds(1)))
            {
                try
                {
                    byte[] header = RequestHeader(NbdProtocol.CmdDisconnect, 0, 0, 0, 0);
                    _stream.WriteAsync(header, 0, header.Length).Wait(TimeSpan.FromSeconds(1));
                }
                catch (AggregateException)
                {
                    // The connection is going away anyway.
                }
                finally
                {
                    _sendLock.Release();
                }
            }

            Fail(new VmQuiesceException("NbdConnectionClosed", FailureKind.InvalidOperation, $"The connection to the NBD server at {_server} was closed by this client.", ExportName));

            // The receive loop ends once the socket is gone; after it, nothing writes into callers' buffers.
            _receiver.Wait(TimeSpan.FromSeconds(10));
        }

        private static void CheckOptions(NbdClientOptions options)
        {
            if (options.MaxRequestsInFlight < 1 || options.MaxRequestsInFlight > 1024)
            {
                throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidArgument,
                    $"MaxRequestsInFlight is {options.MaxRequestsInFlight}; expected 1 to 1024.", options.MaxRequestsInFlight);
            }

            foreach (TimeSpan timeout in new[] { options.ConnectTimeout, options.RequestTimeout })
            {
                if (timeout != Timeout.InfiniteTimeSpan && (timeout <= TimeSpan.Zero || timeout.TotalMilliseconds > int.MaxValue))
                {
                    throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidArgument,
                        $"The NBD timeout {timeout} is out of range; expected a positive time up to 24 days, or infinite.", timeout);
                }
            }
        }

        private static (NbdStream Stream, T Result) Handshake<T>(NbdEndpoint endpoint, TimeSpan timeout, CancellationToken cancel, Func<NbdClientHandshake, T> negotiate)
        {
            string server = endpoint.ToString();
            using var timer = new CancellationTokenSource();
            if (timeout != Timeout.InfiniteTimeSpan)
            {
                timer.CancelAfter(timeout);
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel, timer.Token);
            NbdStream? stream = null;
            try
            {
                stream = NbdStream.Connect(endpoint, stop.Token);
                T result;
                using (stop.Token.Register(stream.Dispose))
                {
                    result = negotiate(new NbdClientHandshake(stream, server));
                }

                stop.Token.ThrowIfCancellationRequested();
                return (stream, result);
            }
            catch (Exception e) when (!(e is VmQuiesceException) || stop.IsCancellationRequested)
            {
                stream?.Dispose();
                cancel.ThrowIfCancellationRequested();
                if (timer.IsCancellationRequested)
                {
                    throw new VmQuiesceException("NbdConnectTimeout", FailureKind.OperationTimeout,
                        $"Connecting to the NBD server at {server} and negotiating did not finish within {timeout.TotalSeconds:0.#} s.", server, e);
                }

                if (stream == null && e is SocketException socketError)
                {
                    throw ConnectFailed(endpoint, socketError);
                }

                throw Translate(server, e, "during the handshake");
            }
            catch
            {
                stream?.Dispose();
                throw;
            }
        }

        private static VmQuiesceException ConnectFailed(NbdEndpoint endpoint, SocketException error)
        {
            string why = error.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => "nothing is listening there",
                SocketError.AccessDenied => "access is denied",
                SocketError.AddressNotAvailable when endpoint.IsUnixSocket && !File.Exists(endpoint.SocketPath) => "the socket file does not exist",
                _ => error.Message,
            };
            return new VmQuiesceException("NbdConnectFailed", FailureKind.ConnectionError, $"Cannot connect to the NBD server at {endpoint}: {why}.", endpoint.ToString(), error);
        }

        /// <summary>A broken protocol or a broken connection, as the error that names the server.</summary>
        private static VmQuiesceException Translate(string server, Exception error, string when)
        {
            return error switch
            {
                VmQuiesceException known => known,
                NbdProtocolViolation or FormatException => new VmQuiesceException("NbdProtocolError", FailureKind.ProtocolError,
                    $"The NBD server at {server} broke the protocol {when}: {error.Message}.", server, error),
                _ => new VmQuiesceException("NbdConnectionClosed", FailureKind.ConnectionError,
                    $"The connection to the NBD server at {server} broke {when}: {error.Message}.", server, error),
            };
        }

        private static byte[] RequestHeader(ushort command, ushort flags, ulong handle, long offset, uint length)
        {
            var header = new byte[NbdProtocol.RequestHeaderLength];
            BigEndianBytes.Write(header, 0, NbdProtocol.RequestMagic);
            BigEndianBytes.Write(header, 4, flags);
            BigEndianBytes.Write(header, 6, command);
            BigEndianBytes.Write(header, 8, handle);
            BigEndianBytes.Write(header, 16, (ulong)offset);
            BigEndianBytes.Write(header, 24, length);
            return header;
        }

        private void CheckRange(ushort command, long offset, long length)
        {
            if (offset < 0 || length < 0 || offset > Size - length)
            {
                throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidArgument,
                    $"{NbdProtocol.CommandName(command)} of {length} byte(s) at offset {offset} is outside the export '{ExportName}' of {Size} bytes.", ExportName);
            }

            uint alignment = BlockSizes.Minimum;
            if (alignment > 1 && (offset % alignment != 0 || (length % alignment != 0 && offset + length != Size)))
            {
                throw new VmQuiesceException("NbdRequestInvalid", FailureKind.InvalidArgument,
                    $"{NbdProtocol.CommandName(command)} of {length} byte(s) at offset {offset} is not aligned to the export's minimum block size of {alignment} bytes.", ExportName);
            }
        }

        /// <summary>
        /// Sends a request and returns its completion, which the receiving thread sets. With a slot free the request
        /// goes out on the caller's thread (which waits only for the write of its header); otherwise it goes out
        /// once a slot frees. Cancelling abandons the request: its reply is dropped.
        /// </summary>
        private Task<T> Send<T>(NbdPendingRequest<T> request, CancellationToken cancel)
        {
            if (Volatile.Read(ref _failure) is VmQuiesceException failure)
            {
                return Task.FromException<T>(failure);
            }

            if (cancel.IsCancellationRequested)
            {
                return Task.FromCanceled<T>(cancel);
            }

            return _slots.Wait(0) ? SendInSlot(request, cancel) : SendWhenSlotFreeAsync(request, cancel);
        }

        private async Task<T> SendWhenSlotFreeAsync<T>(NbdPendingRequest<T> request, CancellationToken cancel)
        {
            await _slots.WaitAsync(cancel).ConfigureAwait(false);
            return await SendInSlot(request, cancel).ConfigureAwait(false);
        }

        /// <summary>Sends a request in the slot the caller took (given back here if the request never goes out).</summary>
        private Task<T> SendInSlot<T>(NbdPendingRequest<T> request, CancellationToken cancel)
        {
            bool registered = false;
            try
            {
                _sendLock.Wait(cancel);
                try
                {
                    lock (_pending)
                    {
                        if (_receiverEnded)
                        {
                            ThrowIfFailed();
                        }

                        request.Handle = (ulong)Interlocked.Increment(ref _nextHandle);
                        _pending.Add(request.Handle, request);
                        registered = true;
                    }

                    // Before the header goes out, so the reply's Finish always finds it to let go.
                    request.Cancellation = cancel.Register(request.Abandon);
                    if (_requestTimeout != Timeout.InfiniteTimeSpan)
                    {
                        request.Deadline = new CancellationTokenSource(_requestTimeout);
                        request.Deadline.Token.Register(() => Fail(new VmQuiesceException("NbdRequestTimeout", FailureKind.OperationTimeout,
                            $"The NBD server at {_server} did not answer {request.Describe()} of export '{ExportName}' within {_requestTimeout.TotalSeconds:0.#} s; the connection was closed.", _server)));
                    }

                    byte[] header = RequestHeader(request.Command, 0, request.Handle, request.Offset, request.Length);
                    _stream.Write(header, 0, header.Length);
                }
                catch (Exception e) when (registered && (e is IOException || e is SocketException || e is ObjectDisposedException))
                {
                    // The receive loop ends the request with the connection's error.
                    Fail(Translate(_server, e, "while sending a request"));
                }
                finally
                {
                    _sendLock.Release();
                }

                return request.Task;
            }
            catch (VmQuiesceException e)
            {
                return Task.FromException<T>(e);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return Task.FromCanceled<T>(cancel);
            }
            finally
            {
                if (!registered)
                {
                    _slots.Release();
                }
            }
        }

        private void ThrowIfFailed()
        {
            VmQuiesceException? failure = Volatile.Read(ref _failure);
            if (failure != null)
            {
                throw failure;
            }
        }

        /// <summary>Fails the connection once: the socket closes, the receive loop ends and fails every request in flight.</summary>
        private void Fail(VmQuiesceException error)
        {
            if (Interlocked.CompareExchange(ref _failure, error, null) == null)
            {
                _stream.Dispose();
            }
        }

        private void ReceiveLoop()
        {
            try
            {
                while (true)
                {
                    try
                    {
                        _stream.ReadExact(_replyHeader, 0, 4);
                    }
                    catch (EndOfStreamException e)
                    {
                        Fail(new VmQuiesceException("NbdConnectionClosed", FailureKind.ConnectionError, $"The NBD server at {_server} closed the connection.", _server, e));
                        break;
                    }

                    uint magic = BigEndianBytes.ReadUInt32(_replyHeader, 0);
                    if (magic == NbdProtocol.SimpleReplyMagic)
                    {
                        ReceiveSimpleReply();
                    }
                    else if (magic == NbdProtocol.StructuredReplyMagic && StructuredReplies)
                    {
                        ReceiveChunk();
                    }
                    else
                    {
                        throw new NbdProtocolViolation($"a reply starts with 0x{magic:x8}, which is not a{(StructuredReplies ? " simple or structured" : " simple")} reply magic");
                    }
                }
            }
            catch (Exception e)
            {
                Fail(Translate(_server, e, "while replying"));
            }

            List<NbdPendingRequest> orphans;
            lock (_pending)
            {
                _receiverEnded = true;
                orphans = _pending.Values.ToList();
                _pending.Clear();
            }

            foreach (NbdPendingRequest request in orphans)
            {
                _slots.Release();
                request.Finish(_failure);
            }
        }

        private NbdPendingRequest Find(ulong handle)
        {
            lock (_pending)
            {
                if (_pending.TryGetValue(handle, out NbdPendingRequest? request))
                {
                    return request;
                }
            }

            throw new NbdProtocolViolation($"it replied to handle {handle}, which no request in flight has");
        }

        private void Complete(NbdPendingRequest request, Exception? error)
        {
            lock (_pending)
            {
                _pending.Remove(request.Handle);
            }

            _slots.Release();
            request.Finish(error);
        }

        private void ReceiveSimpleReply()
        {
            _stream.ReadExact(_replyHeader, 4, NbdProtocol.SimpleReplyHeaderLength - 4);
            uint error = BigEndianBytes.ReadUInt32(_replyHeader, 4);
            NbdPendingRequest request = Find(BigEndianBytes.ReadUInt64(_replyHeader, 8));
            if (error != 0)
            {
                Complete(request, RequestFailed(request, error, null, string.Empty));
                return;
            }

            if (request is NbdReadRequest read)
            {
                if (StructuredReplies)
                {
                    throw new NbdProtocolViolation("it answered a read with a simple reply although structured replies were negotiated");
                }

                ReceiveData(read, read.Offset, (int)read.Length);
                Complete(read, null);
                return;
            }

            throw new NbdProtocolViolation($"it answered {request.Describe()} with a simple reply without data, which only structured replies can carry");
        }

        private void ReceiveChunk()
        {
            _stream.ReadExact(_replyHeader, 4, NbdProtocol.StructuredReplyHeaderLength - 4);
            ushort flags = BigEndianBytes.ReadUInt16(_replyHeader, 4);
            ushort type = BigEndianBytes.ReadUInt16(_replyHeader, 6);
            NbdPendingRequest request = Find(BigEndianBytes.ReadUInt64(_replyHeader, 8));
            uint length = BigEndianBytes.ReadUInt32(_replyHeader, 16);
            bool done = (flags & NbdProtocol.ReplyFlagDone) != 0;
            switch (type)
            {
                case NbdProtocol.ReplyTypeNone:
                    if (length != 0 || !done)
                    {
                        throw new NbdProtocolViolation("it sent an NBD_REPLY_TYPE_NONE chunk with a payload or without the done flag");
                    }

                    break;
                case NbdProtocol.ReplyTypeOffsetData:
                    ReceiveOffsetData(AsRead(request, "NBD_REPLY_TYPE_OFFSET_DATA"), length);
                    break;
                case NbdProtocol.ReplyTypeOffsetHole:
                    ReceiveOffsetHole(AsRead(request, "NBD_REPLY_TYPE_OFFSET_HOLE"), length);
                    break;
                case NbdProtocol.ReplyTypeBlockStatus:
                    if (!(request is NbdBlockStatusRequest status))
                    {
                        throw new NbdProtocolViolation($"it answered {request.Describe()} with block status");
                    }

                    ReceiveBlockStatus(status, length);
                    break;
                default:
                    if ((type & NbdProtocol.ReplyTypeErrorBit) == 0)
                    {
                        throw new NbdProtocolViolation($"it sent the unknown reply chunk type {type}");
                    }

                    ReceiveErrorChunk(request, type, length);
                    break;
            }

            if (done)
            {
                Complete(request, Finished(request));
            }
        }

        private NbdReadRequest AsRead(NbdPendingRequest request, string chunkType) =>
            request as NbdReadRequest ?? throw new NbdProtocolViolation($"it answered {request.Describe()} with {chunkType}, which only reads take");

        /// <summary>The error a request ends with once its last chunk arrived: its own error, or a reply that does not add up.</summary>
        private Exception? Finished(NbdPendingRequest request)
        {
            if (request.Error != null)
            {
                return request.Error;
            }

            if (request is NbdReadRequest read && read.Covered.Total != read.Length)
            {
                throw new NbdProtocolViolation($"it ended its reply to {read.Describe()} having sent {read.Covered.Total} byte(s) of it");
            }

            if (request is NbdBlockStatusRequest status && status.Contexts.Count != _negotiated.Contexts.Count)
            {
                string[] missing = _negotiated.Contexts.Select(c => c.Name).Where(name => !status.Contexts.ContainsKey(name)).ToArray();
                throw new NbdProtocolViolation($"it ended its reply to {status.Describe()} without the context(s) {string.Join(", ", missing)}");
            }

            return null;
        }

        private void ReceiveOffsetData(NbdReadRequest read, uint length)
        {
            if (length < 9 || length - 8 > read.Length)
            {
                throw new NbdProtocolViolation($"it sent a data chunk of {length} bytes for {read.Describe()}");
            }

            _stream.ReadExact(_replyHeader, 0, 8);
            long offset = CheckContent(read, BigEndianBytes.ReadUInt64(_replyHeader, 0), length - 8, "data");
            ReceiveData(read, offset, (int)(length - 8));
        }

        private void ReceiveOffsetHole(NbdReadRequest read, uint length)
        {
            if (length != 12)
            {
                throw new NbdProtocolViolation($"it sent a hole chunk of {length} bytes (12 expected)");
            }

            _stream.ReadExact(_replyHeader, 0, 12);
            uint holeLength = BigEndianBytes.ReadUInt32(_replyHeader, 8);
            long offset = CheckContent(read, BigEndianBytes.ReadUInt64(_replyHeader, 0), holeLength, "hole");
            if (read.TryBeginWrite())
            {
                Array.Clear(read.Buffer, read.BufferOffset + (int)(offset - read.Offset), (int)holeLength);
                read.EndWrite();
            }
        }

        /// <summary>Checks that a content chunk lies in the request and overlaps nothing sent before; returns its offset.</summary>
        private static long CheckContent(NbdReadRequest read, ulong offset, uint length, string what)
        {
            if (length == 0 || offset < (ulong)read.Offset || offset > (ulong)read.End || length > (ulong)read.End - offset)
            {
                throw new NbdProtocolViolation($"it sent a {what} chunk of {length} byte(s) at offset {offset}, outside {read.Describe()}");
            }

            if (!read.Covered.TryAdd((long)offset, length))
            {
                throw new NbdProtocolViolation($"it sent a {what} chunk of {length} byte(s) at offset {offset} that overlaps data it already sent for {read.Describe()}");
            }

            return (long)offset;
        }

        /// <summary>Reads a payload into the caller's buffer, or drops it when the caller has given up.</summary>
        private void ReceiveData(NbdReadRequest read, long offset, int count)
        {
            if (!read.TryBeginWrite())
            {
                _stream.Skip(count, _scratch);
                return;
            }

            try
            {
                _stream.ReadExact(read.Buffer, read.BufferOffset + (int)(offset - read.Offset), count);
            }
            finally
            {
                read.EndWrite();
            }
        }

        private void ReceiveBlockStatus(NbdBlockStatusRequest status, uint length)
        {
            if (length < 12 || (length - 4) % 8 != 0 || (length - 4) / 8 > MaxExtentsPerChunk)
            {
                throw new NbdProtocolViolation($"it sent a block status chunk of {length} bytes (4 + 8 per extent, 1 to {MaxExtentsPerChunk} extents, expected)");
            }

            var payload = new byte[length];
            _stream.ReadExact(payload, 0, payload.Length);
            uint id = BigEndianBytes.ReadUInt32(payload, 0);
            string context = _negotiated.Contexts.FirstOrDefault(c => c.Id == id)?.Name
                ?? throw new NbdProtocolViolation($"it sent block status for context id {id}, which was not selected");

            if (status.Contexts.ContainsKey(context))
            {
                throw new NbdProtocolViolation($"it sent block status for '{context}' twice in one reply");
            }

            var extents = new List<NbdExtent>();
            long position = status.Offset;
            for (int at = 4; at < payload.Length && position < status.End; at += 8)
            {
                uint extentLength = BigEndianBytes.ReadUInt32(payload, at);
                if (extentLength == 0)
                {
                    throw new NbdProtocolViolation($"it sent an extent of length 0 for '{context}'");
                }

                // Like QEMU's client: an extent reaching past the request is cut at its end, and extents after it are ignored.
                long clamped = Math.Min(extentLength, status.End - position);
                extents.Add(new NbdExtent(position, clamped, BigEndianBytes.ReadUInt32(payload, at + 4)));
                position += clamped;
            }

            status.Contexts.Add(context, extents);
        }

        private void ReceiveErrorChunk(NbdPendingRequest request, ushort type, uint length)
        {
            if (length < 6 || length > MaxErrorChunkLength)
            {
                throw new NbdProtocolViolation($"it sent an error chunk of {length} bytes (6 to {MaxErrorChunkLength} expected)");
            }

            var payload = new byte[length];
            _stream.ReadExact(payload, 0, payload.Length);
            uint error = BigEndianBytes.ReadUInt32(payload, 0);
            ushort messageLength = BigEndianBytes.ReadUInt16(payload, 4);
            if (error == 0 || messageLength > length - 6)
            {
                throw new NbdProtocolViolation($"it sent an error chunk with error {error} and a message of {messageLength} bytes in {length - 6}");
            }

            // Shown to people only: undecodable bytes become replacement characters rather than failing the connection.
            string message = Encoding.UTF8.GetString(payload, 6, messageLength);
            long? errorOffset = null;
            if (type == NbdProtocol.ReplyTypeErrorOffset)
            {
                if (length != 6 + messageLength + 8)
                {
                    throw new NbdProtocolViolation($"it sent an error-offset chunk of {length} bytes for a message of {messageLength}");
                }

                ulong offset = BigEndianBytes.ReadUInt64(payload, 6 + messageLength);
                if (offset < (ulong)request.Offset || offset >= (ulong)request.End)
                {
                    throw new NbdProtocolViolation($"it reported an error at offset {offset}, outside {request.Describe()}");
                }

                errorOffset = (long)offset;
            }

            request.Error ??= RequestFailed(request, error, errorOffset, message);
        }

        private NbdRequestException RequestFailed(NbdPendingRequest request, uint error, long? errorOffset, string message)
        {
            string at = errorOffset.HasValue ? $" (at offset {errorOffset.Value})" : string.Empty;
            string said = message.Length > 0 ? $": \"{message}\"" : string.Empty;
            return new NbdRequestException(
                $"The NBD server at {_server} failed {request.Describe()} of export '{ExportName}'{at} with {NbdProtocol.ErrorName(error)}{said}.",
                ExportName, error, request.Offset, request.Length, errorOffset);
        }
    }
}
