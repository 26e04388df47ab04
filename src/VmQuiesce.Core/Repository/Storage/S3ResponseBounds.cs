using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Amazon.Runtime;
using Amazon.Runtime.EventStreams;
using Amazon.Runtime.Internal.Transform;
#if NETFRAMEWORK
using Amazon.Runtime.Internal;
#else
using System.Net.Http;
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

        /// <summary>
        /// The most bytes the body of one answer may hold: no bound for an object's bytes (the answer to a GET of an
        /// object itself, no sub-resource such as <c>list-type</c> in its query, that succeeded: their length is the
        /// caller's to bound, as <see cref="S3ObjectStorage.Read(string, byte[])"/> does on the header), else
        /// <see cref="MaxNonObjectBytes"/>, past which an answer that declares its length is refused at once.
        /// <paramref name="what"/> names the answer in messages.
        /// </summary>
        internal long? MaxBodyBytes(string method, Uri? uri, bool succeeded, int status, long? declaredLength, out string what)
        {
            what = $"the answer to {method} {uri?.AbsolutePath}";
            if (method == "GET" && succeeded && IsObjectRequest(uri))
            {
                return null;
            }

            if (declaredLength is long declared && declared > MaxNonObjectBytes)
            {
                throw new S3ResponseRefusedException(false, $"{what} ({status}) announced {S3ResponseRefusedException.Bytes(declared)} bytes, more than the {S3ResponseRefusedException.Bytes(MaxNonObjectBytes)} any such answer holds");
            }

            return MaxNonObjectBytes;
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

            long? maxBytes;
            string what;
            try
            {
                maxBytes = _limits.MaxBodyBytes(request.Method.Method, request.RequestUri, response.IsSuccessStatusCode, (int)response.StatusCode, response.Content.Headers.ContentLength, out what);
            }
            catch (S3ResponseRefusedException)
            {
                response.Dispose();
                throw;
            }

            response.Content = new BoundedContent(response.Content, body => new BoundedResponseStream(body, _limits, what, maxBytes));
            return response;
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
#endif

    /// <summary>
    /// A response body that must deliver <see cref="S3ResponseLimits.MinBytesPerStallTime"/> bytes (or end) in each
    /// <see cref="S3ResponseLimits.StallTime"/> its reader waits, and, when <c>maxBytes</c> is given, may hold no more
    /// than that. Only the time spent waiting in reads counts, not the reader's own pauses between them. A watchdog
    /// looks at the read in progress a few times per stall time and, past it, aborts the request (where that is what
    /// ends a read: .NET Framework's) and disposes the body, which closes the connection and so ends a read that waits
    /// on the network, synchronous or not. A body refused for any reason aborts its request the same way: closing
    /// one that is not read to its end would drain it there. Reads themselves only note when they start and end: the
    /// SDK and S3ObjectStorage read synchronously, many chunks at once, and a read that went through the cancellable
    /// asynchronous one instead held a second thread and cost a timer each (a 1 GiB restore from the test RGW took
    /// about 7% longer).
    /// </summary>
    internal sealed class BoundedResponseStream : Stream
    {
        private const long NotReading = 0;

        private readonly Stream _inner;
        private readonly TimeSpan _stallTime;
        private readonly long _stallTicks;
        private readonly int _minBytesPerStallTime;
        private readonly string _what;
        private readonly long? _maxBytes;
        private readonly Action? _abort;
        private readonly Timer _watchdog;
        private long _total;
        private long _windowBytes;

        // Stopwatch ticks: read by the watchdog, written by the reader.
        private long _windowWaited;
        private long _readStarted = NotReading;
        private int _cutOff;

        public BoundedResponseStream(Stream inner, S3ResponseLimits limits, string what, long? maxBytes, Action? abort = null)
        {
            _inner = inner;
            _abort = abort;
            _stallTime = limits.StallTime;
            _stallTicks = (long)(limits.StallTime.TotalSeconds * Stopwatch.Frequency);
            _minBytesPerStallTime = limits.MinBytesPerStallTime;
            _what = what;
            _maxBytes = maxBytes;
            TimeSpan look = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond, Math.Min(limits.StallTime.Ticks / 4, TimeSpan.TicksPerSecond)));
            // The timer holds the body weakly: a body its reader dropped without disposing it stops the timer with it.
            _watchdog = new Timer(Look, new WeakReference<BoundedResponseStream>(this), look, look);
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

        public override int Read(byte[] buffer, int offset, int count)
        {
            long started = StartRead();
            int read;
            try
            {
                read = _inner.Read(buffer, offset, count);
            }
            catch (Exception e) when (IsCutOff(e))
            {
                throw Stalled();
            }

            return EndRead(started, read);
        }

#if !NETFRAMEWORK
        // .NET Framework's Stream reads asynchronously through Read, on a pool thread.
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            long started = StartRead();
            int read;
            try
            {
                read = await _inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsCutOff(e))
            {
                throw Stalled();
            }

            return EndRead(started, read);
        }
#endif

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
                _watchdog.Dispose();
                _inner.Dispose();
            }

            base.Dispose(disposing);
        }

        private long StartRead()
        {
            if (Volatile.Read(ref _cutOff) != 0)
            {
                throw Stalled();
            }

            long started = Stopwatch.GetTimestamp();
            Volatile.Write(ref _readStarted, started);
            return started;
        }

        private int EndRead(long started, int read)
        {
            Volatile.Write(ref _readStarted, NotReading);
            if (Volatile.Read(ref _cutOff) != 0)
            {
                // The watchdog closed the body as this read returned: what it gave may be cut short.
                throw Stalled();
            }

            if (read == 0)
            {
                return 0;
            }

            _total += read;
            if (_maxBytes is long max && _total > max)
            {
                throw Refuse(new S3ResponseRefusedException(false, $"{_what} went on past {S3ResponseRefusedException.Bytes(max)} bytes, more than any such answer holds"));
            }

            long waited = Volatile.Read(ref _windowWaited) + (Stopwatch.GetTimestamp() - started);
            _windowBytes += read;
            if (_windowBytes >= _minBytesPerStallTime)
            {
                _windowBytes = 0;
                waited = 0;
            }
            else if (waited >= _stallTicks)
            {
                throw Stalled();
            }

            Volatile.Write(ref _windowWaited, waited);
            return read;
        }

        private static void Look(object? body)
        {
            if (((WeakReference<BoundedResponseStream>)body!).TryGetTarget(out BoundedResponseStream? stream))
            {
                stream.CutOffIfStalled();
            }
        }

        /// <summary>The watchdog: a read that has waited, with the window's earlier reads, past the stall time ends the body.</summary>
        private void CutOffIfStalled()
        {
            long started = Volatile.Read(ref _readStarted);
            if (started == NotReading || Volatile.Read(ref _windowWaited) + (Stopwatch.GetTimestamp() - started) < _stallTicks)
            {
                return;
            }

            if (Interlocked.Exchange(ref _cutOff, 1) == 0)
            {
                _watchdog.Dispose();
                _abort?.Invoke();
                _inner.Dispose();
            }
        }

        private bool IsCutOff(Exception e) =>
            Volatile.Read(ref _cutOff) != 0 && (e is OperationCanceledException || e is IOException || e is ObjectDisposedException || e is WebException);

        private S3ResponseRefusedException Stalled() =>
            Refuse(new S3ResponseRefusedException(true, $"{_what} sent fewer than {S3ResponseRefusedException.Bytes(_minBytesPerStallTime)} bytes of its body in {S3ResponseRefusedException.Seconds(_stallTime)} seconds"));

        private S3ResponseRefusedException Refuse(S3ResponseRefusedException refused)
        {
            _abort?.Invoke();
            return refused;
        }
    }

    /// <summary>
    /// An answer of the SDK's own HTTP layer whose body is read through <see cref="BoundedResponseStream"/>, which aborts
    /// the request with <c>abort</c> when it cuts the body off or refuses it: how the .NET Framework build bounds bodies,
    /// where the SDK takes no HTTP client of ours (<c>BoundedWebRequest</c>). Built for .NET as well, where tests drive it.
    /// </summary>
    internal sealed class BoundedResponseData : IWebResponseData
    {
        private readonly IWebResponseData _inner;

        private BoundedResponseData(IWebResponseData inner, IHttpResponseBody body)
        {
            _inner = inner;
            ResponseBody = body;
        }

        public long ContentLength => _inner.ContentLength;

        public string ContentType => _inner.ContentType;

        public HttpStatusCode StatusCode => _inner.StatusCode;

        public bool IsSuccessStatusCode => _inner.IsSuccessStatusCode;

        public IHttpResponseBody ResponseBody { get; }

        /// <summary>
        /// <paramref name="response"/> (the answer to <paramref name="method"/> <paramref name="uri"/>) with its body
        /// bounded as <see cref="S3ResponseLimits.MaxBodyBytes"/> says, or refused (and its request aborted) when it
        /// declares a length past the bound. A HEAD answer has no body: its length is the object's, which the caller
        /// bounds where it matters.
        /// </summary>
        public static IWebResponseData Bound(IWebResponseData response, S3ResponseLimits limits, string method, Uri? uri, Action abort)
        {
            if (method == "HEAD")
            {
                return response;
            }

            long? maxBytes;
            string what;
            try
            {
                maxBytes = limits.MaxBodyBytes(method, uri, response.IsSuccessStatusCode, (int)response.StatusCode, response.ContentLength >= 0 ? response.ContentLength : (long?)null, out what);
            }
            catch (S3ResponseRefusedException)
            {
                abort();
                response.ResponseBody.Dispose();
                throw;
            }

            return new BoundedResponseData(response, new BoundedResponseBody(response.ResponseBody, body => new BoundedResponseStream(body, limits, what, maxBytes, abort)));
        }

        public string[] GetHeaderNames() => _inner.GetHeaderNames();

        public bool IsHeaderPresent(string headerName) => _inner.IsHeaderPresent(headerName);

        public string GetHeaderValue(string headerName) => _inner.GetHeaderValue(headerName);

        public IEventStreamHeader GetEventStreamHeader(string headerName) => _inner.GetEventStreamHeader(headerName);

        public bool IsEventHeaderPresent(string headerName) => _inner.IsEventHeaderPresent(headerName);

        /// <summary>A body read through one wrapper, however often it is opened.</summary>
        private sealed class BoundedResponseBody : IHttpResponseBody
        {
            private readonly IHttpResponseBody _inner;
            private readonly Func<Stream, Stream> _wrap;
            private Stream? _opened;

            public BoundedResponseBody(IHttpResponseBody inner, Func<Stream, Stream> wrap)
            {
                _inner = inner;
                _wrap = wrap;
            }

            public Stream OpenResponse() => _opened ??= _wrap(_inner.OpenResponse());

            public async Task<Stream> OpenResponseAsync() => _opened ??= _wrap(await _inner.OpenResponseAsync().ConfigureAwait(false));

            public void Dispose()
            {
                _opened?.Dispose();
                _inner.Dispose();
            }
        }
    }

#if NETFRAMEWORK
    /// <summary>
    /// Makes the SDK's HttpWebRequest-based requests (<see cref="HttpWebRequestFactory"/> makes them the same way), with
    /// the bodies of their answers bounded: the .NET Framework build of the SDK takes no HTTP client of ours.
    /// </summary>
    internal sealed class BoundedWebRequestFactory : IHttpRequestFactory<Stream>
    {
        private readonly S3ResponseLimits _limits;

        public BoundedWebRequestFactory(S3ResponseLimits limits)
        {
            _limits = limits;
        }

        public IHttpRequest<Stream> CreateHttpRequest(Uri requestUri) => new BoundedWebRequest(requestUri, _limits);

        public void Dispose()
        {
        }
    }

    /// <summary>The SDK's request over HttpWebRequest, its answers (error answers too) put behind <see cref="BoundedResponseData"/>.</summary>
    internal sealed class BoundedWebRequest : HttpRequest
    {
        private readonly S3ResponseLimits _limits;

        public BoundedWebRequest(Uri requestUri, S3ResponseLimits limits)
            : base(requestUri)
        {
            _limits = limits;
        }

        public override IWebResponseData GetResponse()
        {
            try
            {
                return Bound(base.GetResponse());
            }
            catch (HttpErrorResponseException e)
            {
                throw Bound(e);
            }
        }

        public override async Task<IWebResponseData> GetResponseAsync(CancellationToken cancellationToken)
        {
            try
            {
                return Bound(await base.GetResponseAsync(cancellationToken).ConfigureAwait(false));
            }
            catch (HttpErrorResponseException e)
            {
                throw Bound(e);
            }
        }

        private IWebResponseData Bound(IWebResponseData response) => BoundedResponseData.Bound(response, _limits, Method, RequestUri, Abort);

        private HttpErrorResponseException Bound(HttpErrorResponseException e) => new HttpErrorResponseException(e.Message, e.InnerException, Bound(e.Response));
    }
#endif
}
