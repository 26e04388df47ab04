using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>What a range of an export holds, as its backend knows it.</summary>
    public enum NbdExtentKind
    {
        /// <summary>Bytes that must be read.</summary>
        Data,

        /// <summary>Allocated, reads as zeroes (a zero chunk): served without reading.</summary>
        Zero,

        /// <summary>Not allocated, reads as zeroes (a hole): served without reading.</summary>
        Hole,
    }

    /// <summary>One consecutive piece of a <see cref="INbdExportBackend.DescribeAsync"/> answer.</summary>
    public readonly struct NbdBackendExtent
    {
        public NbdBackendExtent(long length, NbdExtentKind kind)
        {
            Length = length;
            Kind = kind;
        }

        public long Length { get; }

        public NbdExtentKind Kind { get; }

        public override string ToString() => string.Format(CultureInfo.InvariantCulture, "{0} {1}", Length, Kind);
    }

    /// <summary>
    /// Where the bytes of one export come from: a repository's restore point, a file, a test's memory.
    /// The server calls it concurrently (several clients, pipelined requests), always within
    /// [0, <see cref="Size"/>), and never asks for more than 1 MiB of data in one read.
    /// </summary>
    public interface INbdExportBackend
    {
        /// <summary>The export's size in bytes; fixed for the export's lifetime.</summary>
        long Size { get; }

        /// <summary>
        /// Describes the range from <paramref name="offset"/> as consecutive extents starting there: at least
        /// one, each of at least one byte, together at most <paramref name="length"/> bytes (fewer is fine: the
        /// server asks again from where the answer ends). Holes and zero ranges are then served without a read.
        /// Reporting <see cref="NbdExtentKind.Data"/> is always correct, only slower.
        /// </summary>
        Task<IReadOnlyList<NbdBackendExtent>> DescribeAsync(long offset, long length, CancellationToken cancel);

        /// <summary>
        /// Reads exactly <paramref name="count"/> bytes at <paramref name="offset"/>, all inside one range
        /// described as data. Throwing (for a damaged chunk: any exception, best a <see cref="VmQuiesceException"/>
        /// naming the chunk) makes the server answer this range with an I/O error, never with the buffer.
        /// </summary>
        Task ReadAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel);
    }

    /// <summary>
    /// A backend that holds the bytes it serves in buffers of its own (a cache of verified chunks): the server sends a
    /// read reply straight from them instead of copying them into a buffer of its own first.
    /// </summary>
    internal interface INbdLendingBackend : INbdExportBackend
    {
        /// <summary>
        /// The bytes from <paramref name="offset"/>: at least one, at most <paramref name="count"/>, all inside one
        /// range described as data; they stay as they are until the lease is disposed. Throws as
        /// <see cref="INbdExportBackend.ReadAsync"/> does, and then lends nothing.
        /// </summary>
        Task<NbdLease> LendAsync(long offset, int count, CancellationToken cancel);
    }

    /// <summary>Bytes lent for one reply: <see cref="Buffer"/>[<see cref="Offset"/>, +<see cref="Count"/>), given back on Dispose.</summary>
    internal sealed class NbdLease : IDisposable
    {
        private Action? _giveBack;

        public NbdLease(byte[] buffer, int offset, int count, Action giveBack)
        {
            Buffer = buffer;
            Offset = offset;
            Count = count;
            _giveBack = giveBack;
        }

        public byte[] Buffer { get; }

        public int Offset { get; }

        public int Count { get; }

        public void Dispose() => Interlocked.Exchange(ref _giveBack, null)?.Invoke();
    }

    /// <summary>A named, read-only export: a name clients ask for and the backend that serves it.</summary>
    public sealed class NbdExport
    {
        public NbdExport(string name, INbdExportBackend backend, string? description = null)
        {
            if (name == null || Encoding.UTF8.GetByteCount(name) > NbdProtocol.MaxStringBytes || name.IndexOf('\0') >= 0)
            {
                throw new VmQuiesceException("NbdExportInvalid", FailureKind.InvalidArgument,
                    $"The NBD export name '{name}' is not valid: expected text of at most {NbdProtocol.MaxStringBytes} UTF-8 bytes without NUL.", name);
            }

            Backend = backend ?? throw new ArgumentNullException(nameof(backend));
            if (backend.Size < 0)
            {
                throw new VmQuiesceException("NbdExportInvalid", FailureKind.InvalidArgument, $"The NBD export '{name}' has a negative size ({backend.Size}).", name);
            }

            Name = name;
            Description = description;
        }

        public string Name { get; }

        public string? Description { get; }

        public INbdExportBackend Backend { get; }

        /// <summary>The I/O size clients should prefer (NBD_INFO_BLOCK_SIZE); a repository's chunk size, for instance. A power of 2, at least 512.</summary>
        public uint PreferredBlockSize { get; set; } = 4096;

        /// <summary>
        /// False: NBD_OPT_LIST does not name the export and it is never the default export, so only a client that
        /// was told its name reaches it (a secret name is then the key, as on loopback TCP, which every local user reaches).
        /// </summary>
        public bool Listed { get; set; } = true;
    }

    /// <summary>Something that went wrong while serving: a client breaking the protocol, a backend failing a read.</summary>
    public sealed class NbdServerError
    {
        public NbdServerError(string client, string? exportName, string message, Exception? exception)
        {
            Client = client;
            ExportName = exportName;
            Message = message;
            Exception = exception;
        }

        /// <summary>Which connection ("client 3", or "client 3 (127.0.0.1:51234)" over TCP).</summary>
        public string Client { get; }

        public string? ExportName { get; }

        public string Message { get; }

        public Exception? Exception { get; }

        public override string ToString() => Client + (ExportName != null ? " (export '" + ExportName + "')" : string.Empty) + ": " + Message;
    }

    /// <summary>Limits and hooks of an <see cref="NbdServer"/>.</summary>
    public sealed class NbdServerOptions
    {
        /// <summary>Connections served at once; further ones are closed at once (and reported).</summary>
        public int MaxConnections { get; set; } = 16;

        /// <summary>Requests of one connection processed at once; past it the server stops reading that connection's socket.</summary>
        public int MaxRequestsInFlightPerConnection { get; set; } = 16;

        /// <summary>Memory for read data, shared by all connections, in 1 MiB buffers: what bounds the server's memory.</summary>
        public int ReadBufferBytes { get; set; } = 32 * 1024 * 1024;

        /// <summary>A client must finish its handshake in this time.</summary>
        public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>Called (on a pool thread) for each protocol violation and backend failure; exceptions it throws are ignored.</summary>
        public Action<NbdServerError>? OnError { get; set; }

        /// <summary>For tests: called once the unix socket is bound, before the server listens.</summary>
        internal Action? AfterBind { get; set; }
    }
}
