using System;
using System.Globalization;
using System.IO;
#if !NETFRAMEWORK
using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Threading;
using System.Threading.Tasks;
using Amazon.Runtime;
#endif

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// How much an S3 endpoint must send and may send: a response body that stalls is cut off, and an answer that is
    /// not an object's bytes (a listing, an error, small metadata) is refused past a size no such answer reaches, so a
    /// hostile or broken endpoint can neither hang a backup, restore or verify nor make it buffer gigabytes. Read at
    /// each response; tests make the bounds small.
    /// </summary>
    internal sealed class S3ResponseLimits
    {
        /// <summary>
        /// A body that delivers fewer than <see cref="MinBytesPerStallTime"/> bytes while its reader waits this long is
        /// cut off: no byte at all (a store that stopped), or a byte every few seconds (one that dribbles), alike.
        /// </summary>
        public TimeSpan StallTime { get; set; } = TimeSpan.FromSeconds(60);

        /// <summary>About a kilobyte a second: far below any link a repository is used over.</summary>
        public int MinBytesPerStallTime { get; set; } = 64 * 1024;

        /// <summary>
        /// The most bytes of an answer that is not an object's bytes. A listing page of 1000 keys of 1024 characters
        /// each, every character escaped, is some 6 MiB; an error answer or a PUT's is a few hundred bytes.
        /// </summary>
        public long MaxNonObjectBytes { get; set; } = 16L * 1024 * 1024;
    }

    /// <summary>A response body cut off or refused by <see cref="S3ResponseLimits"/>; turned into a VmQuiesceException naming the repository and object.</summary>
    internal sealed class S3ResponseRefusedException : Exception
    {
        public S3ResponseRefusedException(bool stalled, string message)
            : base(message)
        {
            Stalled = stalled;
        }

        /// <summary>True when the body stalled; false when it was too large.</summary>
        public bool Stalled { get; }

        public static S3ResponseRefusedException? Find(Exception e)
        {
            for (Exception? inner = e; inner != null; inner = inner.InnerException)
            {
                if (inner is S3ResponseRefusedException refused)
                {
                    return refused;
                }
            }

            return null;
        }

        internal static string Bytes(long count) => count.ToString(CultureInfo.InvariantCulture);

        internal static string Seconds(TimeSpan time) => time.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
    }

#if !NETFRAMEWORK
    /// <summary>
    /// The SDK's HTTP client (as its own factory builds it on .NET: SocketsHttpHandler, no redirects followed, no
    /// decompression, the configured proxy, timeouts and connection limit) with <see cref="ResponseBoundingHandler"/>
    /// in front. The SDK's <see cref="ClientConfig.Timeout"/> bounds a request only until the response headers
    /// arrive: it reads every body (an object's, a listing's, an error's) as a stream afterwards, unbounded.
    /// </summary>
    internal sealed class BoundedHttpClientFactory : HttpClientFactory
    {
        private readonly S3ResponseLimits _limits;

        public BoundedHttpClientFactory(S3ResponseLimits limits)
        {
            _limits = limits;
        }

        public override HttpClient CreateHttpClient(IClientConfig clientConfig)
        {
            var transport = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                AllowAutoRedirect = clientConfig.AllowAutoRedirect,
                AutomaticDecompression = DecompressionMethods.None,
            };
            if (clientConfig.ConnectTimeout is TimeSpan connectTimeout)
            {
                transport.ConnectTimeout = connectTimeout;
            }

            if (clientConfig.MaxConnectionsPerServer is int connections)
            {
                transport.MaxConnectionsPerServer = connections;
            }

            IWebProxy? proxy = clientConfig.GetWebProxy();
            if (proxy != null)
            {
                transport.Proxy = proxy;
                if (clientConfig.ProxyCredentials != null)
                {
                    proxy.Credentials = clientConfig.ProxyCredentials;
                }
            }

            var client = new HttpClient(new ResponseBoundingHandler(_limits) { InnerHandler = transport });
            if (clientConfig.Timeout is TimeSpan timeout)
            {
                client.Timeout = timeout;
            }

            return client;
        }
    }

    /// <summary>
    /// Puts every response body behind <see cref="BoundedResponseStream"/>, and refuses at once an answer that is not an
    /// object's bytes whose declared length is past <see cref="S3ResponseLimits.MaxNonObjectBytes"/>. An object's bytes
    /// are the answer to a GET of an object (no sub-resource such as <c>list-type</c> in its query) that succeeded;
    /// their length is the caller's to bound (<see cref="S3ObjectStorage.Read(string, byte[])"/> checks it on the header).
    /// </summary>
    internal sealed class ResponseBoundingHandler : DelegatingHandler
    {
        private readonly S3ResponseLimits _limits;

        public ResponseBoundingHandler(S3ResponseLimits limits)
        {
            _limits = limits;
        }

        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Bound(request, base.Send(request, cancellationToken));

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Bound(request, await base.SendAsync(request, cancellationToken).ConfigureAwait(false));

        private HttpResponseMessage Bound(HttpRequestMessage request, HttpResponseMessage response)
        {
            if (request.Method == HttpMethod.Head)
            {
                // No body; its Content-Length is the object's, which the caller bounds where it matters.
                return response;
            }

            string what = $"the answer to {request.Method} {request.RequestUri?.AbsolutePath}";
            bool objectBytes = request.Method == HttpMethod.Get && response.IsSuccessStatusCode && IsObjectRequest(request.RequestUri);
            long? maxBytes = objectBytes ? (long?)null : _limits.MaxNonObjectBytes;
            if (maxBytes is long max && response.Content.Headers.ContentLength is long declared && declared > max)
            {
                response.Dispose();
                throw new S3ResponseRefusedException(false, $"{what} ({(int)response.StatusCode}) announced {S3ResponseRefusedException.Bytes(declared)} bytes, more than the {S3ResponseRefusedException.Bytes(max)} any such answer holds");
            }

            response.Content = new BoundedContent(response.Content, body => new BoundedResponseStream(body, _limits, what, maxBytes));
            return response;
        }

        /// <summary>True for a request of an object itself: a query naming no sub-resource (the SDK may add <c>x-id</c>, the operation's name).</summary>
        private static bool IsObjectRequest(Uri? uri)
        {
            string query = uri?.Query ?? string.Empty;
            foreach (string pair in query.TrimStart('?').Split(new[] { '&' }, StringSplitOptions.RemoveEmptyEntries))
            {
                if (!pair.StartsWith("x-id=", StringComparison.Ordinal))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>A response's content, its headers as they came, whose body is read through a wrapper.</summary>
    internal sealed class BoundedContent : HttpContent
    {
        private readonly HttpContent _inner;
        private readonly Func<Stream, Stream> _wrap;

        public BoundedContent(HttpContent inner, Func<Stream, Stream> wrap)
        {
            _inner = inner;
            _wrap = wrap;
            foreach (var header in inner.Headers)
            {
                Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }

        protected override async Task<Stream> CreateContentReadStreamAsync() => _wrap(await _inner.ReadAsStreamAsync().ConfigureAwait(false));

        protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => _wrap(_inner.ReadAsStream(cancellationToken));

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            using Stream body = await CreateContentReadStreamAsync().ConfigureAwait(false);
            await body.CopyToAsync(stream).ConfigureAwait(false);
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>
    /// A response body that must deliver <see cref="S3ResponseLimits.MinBytesPerStallTime"/> bytes (or end) in each
    /// <see cref="S3ResponseLimits.StallTime"/> its reader waits, and, when <c>maxBytes</c> is given, may hold no more
    /// than that. Only the time spent waiting in reads counts, not the reader's own pauses between them. A read past
    /// its time is cancelled, which closes the connection: the supported way to end a read that waits on the network.
    /// </summary>
    internal sealed class BoundedResponseStream : Stream
    {
        private readonly Stream _inner;
        private readonly TimeSpan _stallTime;
        private readonly int _minBytesPerStallTime;
        private readonly string _what;
        private readonly long? _maxBytes;
        private long _total;
        private long _windowBytes;
        private TimeSpan _windowWaited;

        public BoundedResponseStream(Stream inner, S3ResponseLimits limits, string what, long? maxBytes)
        {
            _inner = inner;
            _stallTime = limits.StallTime;
            _minBytesPerStallTime = limits.MinBytesPerStallTime;
            _what = what;
            _maxBytes = maxBytes;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        // The SDK and S3ObjectStorage read synchronously. The read waits on the asynchronous one, which alone can be
        // cancelled; no synchronization context is captured anywhere on the way, so the wait cannot deadlock.
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_stallTime - _windowWaited);
            long started = Stopwatch.GetTimestamp();
            int read;
            try
            {
                read = await _inner.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested && (e is OperationCanceledException || e is IOException || e is ObjectDisposedException))
            {
                throw Stalled();
            }

            if (read == 0)
            {
                return 0;
            }

            _total += read;
            if (_maxBytes is long max && _total > max)
            {
                throw new S3ResponseRefusedException(false, $"{_what} went on past {S3ResponseRefusedException.Bytes(max)} bytes, more than any such answer holds");
            }

            _windowWaited += TimeSpan.FromSeconds((Stopwatch.GetTimestamp() - started) / (double)Stopwatch.Frequency);
            _windowBytes += read;
            if (_windowBytes >= _minBytesPerStallTime)
            {
                _windowBytes = 0;
                _windowWaited = TimeSpan.Zero;
            }
            else if (_windowWaited >= _stallTime)
            {
                throw Stalled();
            }

            return read;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
            }

            base.Dispose(disposing);
        }

        private S3ResponseRefusedException Stalled() =>
            new S3ResponseRefusedException(true, $"{_what} sent fewer than {S3ResponseRefusedException.Bytes(_minBytesPerStallTime)} bytes of its body in {S3ResponseRefusedException.Seconds(_stallTime)} seconds");
    }
#endif
}
