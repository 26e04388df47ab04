using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// An S3 endpoint that says whatever a test wants: an HTTP/1.1 server on a loopback port of its own that hands each
    /// request of the AWS SDK to <see cref="Answer"/> and writes back the reply exactly as given, lies included (a
    /// listing outside the prefix, a token that repeats, a Content-Length the body does not have, a redirect). It
    /// checks no signature and keeps no objects: what a hostile or broken store answers is the test's to write.
    /// </summary>
    public sealed class S3Double : IDisposable
    {
        public const string Bucket = "bucket";

        private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private readonly ConcurrentQueue<Request> _requests = new ConcurrentQueue<Request>();
        private readonly Task _accepting;

        public S3Double(Func<Request, Reply> answer)
        {
            Answer = answer;
            _listener.Start();
            Endpoint = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");
            _accepting = Task.Run(AcceptAsync);
        }

        public Func<Request, Reply> Answer { get; set; }

        public Uri Endpoint { get; }

        /// <summary>Every request answered so far, in order.</summary>
        public IReadOnlyList<Request> Requests => _requests.ToList();

        /// <summary>A storage over s3://bucket/<paramref name="prefix"/> at this endpoint, configured as for the real RGW.</summary>
        public S3ObjectStorage NewStorage(string prefix = "repo") => new S3ObjectStorage(S3RepositoryAddress.Parse($"s3://{Bucket}/{prefix}"), new S3ConnectionSettings
        {
            Endpoint = Endpoint,
            AccessKeyId = "double-access-key",
            SecretAccessKey = new NetworkCredential(string.Empty, "double-secret-double-secret-double-secret").SecurePassword,
        });

        /// <summary>A ListObjectsV2 page of <paramref name="objects"/> (full keys and sizes), truncated when <paramref name="nextToken"/> is given.</summary>
        public static Reply ListPage(IEnumerable<(string Key, long Size)> objects, string? nextToken = null)
        {
            var xml = new StringBuilder("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
            xml.Append("<Name>").Append(Bucket).Append("</Name><IsTruncated>").Append(nextToken == null ? "false" : "true").Append("</IsTruncated>");
            if (nextToken != null)
            {
                xml.Append("<NextContinuationToken>").Append(WebUtility.HtmlEncode(nextToken)).Append("</NextContinuationToken>");
            }

            foreach ((string key, long size) in objects)
            {
                xml.Append("<Contents><Key>").Append(WebUtility.HtmlEncode(key)).Append("</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"0\"</ETag><Size>")
                    .Append(size.ToString(CultureInfo.InvariantCulture)).Append("</Size><StorageClass>STANDARD</StorageClass></Contents>");
            }

            return Reply.Xml(200, xml.Append("</ListBucketResult>").ToString());
        }

        /// <summary>An S3 error answer.</summary>
        public static Reply Error(int status, string code) =>
            Reply.Xml(status, $"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message><RequestId>double</RequestId></Error>");

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            try
            {
                _accepting.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is ObjectDisposedException || e is SocketException || e is OperationCanceledException)
            {
            }

            _stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            var connections = new List<Task>();
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    TcpClient client = await _listener.AcceptTcpClientAsync().ConfigureAwait(false);
                    connections.Add(Task.Run(() => ServeAsync(client)));
                }
            }
            catch (Exception e) when (e is ObjectDisposedException || e is SocketException)
            {
                // Stopped.
            }

            await Task.WhenAll(connections).ConfigureAwait(false);
        }

        private async Task ServeAsync(TcpClient client)
        {
            using (client)
            using (_stop.Token.Register(client.Dispose))
            {
                try
                {
                    NetworkStream stream = client.GetStream();
                    while (await ReadRequestAsync(stream).ConfigureAwait(false) is Request request)
                    {
                        _requests.Enqueue(request);
                        Reply reply = Answer(request);
                        await reply.WriteAsync(stream, request.Method == "HEAD", _stop.Token).ConfigureAwait(false);
                        if (reply.CloseAfter)
                        {
                            return;
                        }
                    }
                }
                catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException || e is OperationCanceledException)
                {
                    // The client went away (it refused what it was sent) or the double stopped.
                }
            }
        }

        private static async Task<Request?> ReadRequestAsync(NetworkStream stream)
        {
            var head = new List<byte>();
            var one = new byte[1];
            while (!(head.Count >= 4 && head[head.Count - 4] == '\r' && head[head.Count - 3] == '\n' && head[head.Count - 2] == '\r' && head[head.Count - 1] == '\n'))
            {
                if (await stream.ReadAsync(one, 0, 1).ConfigureAwait(false) == 0)
                {
                    return null;
                }

                head.Add(one[0]);
            }

            string[] lines = Encoding.ASCII.GetString(head.ToArray()).Split(new[] { "\r\n" }, StringSplitOptions.RemoveEmptyEntries);
            string[] requestLine = lines[0].Split(' ');
            var headers = lines.Skip(1).Select(line => line.Split(new[] { ':' }, 2)).ToDictionary(pair => pair[0].Trim(), pair => pair[1].Trim(), StringComparer.OrdinalIgnoreCase);
            if (headers.TryGetValue("Expect", out string? expect) && expect.Equals("100-continue", StringComparison.OrdinalIgnoreCase))
            {
                byte[] proceed = Encoding.ASCII.GetBytes("HTTP/1.1 100 Continue\r\n\r\n");
                await stream.WriteAsync(proceed, 0, proceed.Length).ConfigureAwait(false);
            }

            var body = new byte[headers.TryGetValue("Content-Length", out string? length) ? int.Parse(length, CultureInfo.InvariantCulture) : 0];
            if (stream.ReadFully(body, body.Length) != body.Length)
            {
                return null;
            }

            string target = requestLine[1];
            int question = target.IndexOf('?');
            string path = Uri.UnescapeDataString(question < 0 ? target : target.Substring(0, question));
            var query = new Dictionary<string, string>(StringComparer.Ordinal);
            if (question >= 0)
            {
                foreach (string pair in target.Substring(question + 1).Split('&'))
                {
                    int equals = pair.IndexOf('=');
                    query[Uri.UnescapeDataString(equals < 0 ? pair : pair.Substring(0, equals))] = equals < 0 ? string.Empty : Uri.UnescapeDataString(pair.Substring(equals + 1));
                }
            }

            return new Request(requestLine[0], path, query, headers, body);
        }

        /// <summary>One request as the double read it: method, path ("/bucket/key", unescaped), query and headers.</summary>
        public sealed class Request
        {
            public Request(string method, string path, IReadOnlyDictionary<string, string> query, IReadOnlyDictionary<string, string> headers, byte[] body)
            {
                Method = method;
                Path = path;
                Query = query;
                Headers = headers;
                Body = body;
            }

            public string Method { get; }

            public string Path { get; }

            public IReadOnlyDictionary<string, string> Query { get; }

            public IReadOnlyDictionary<string, string> Headers { get; }

            public byte[] Body { get; }

            public bool IsList => Method == "GET" && Query.TryGetValue("list-type", out string? type) && type == "2";

            /// <summary>The continuation token a listing sent, or null on its first page.</summary>
            public string? ContinuationToken => Query.TryGetValue("continuation-token", out string? token) ? token : null;

            /// <summary>
            /// Which of the SDK's attempts at a call this is (its amz-sdk-request header: "attempt=2; max=4"), or 0 when it
            /// says none. .NET's HTTP client may send one attempt more than once, on new connections, so count attempts, not requests.
            /// </summary>
            public int SdkAttempt => Headers.TryGetValue("amz-sdk-request", out string? said) && Regex.Match(said, @"attempt=(\d+)") is { Success: true } found
                ? int.Parse(found.Groups[1].Value, CultureInfo.InvariantCulture)
                : 0;
        }

        /// <summary>
        /// What the double writes back: a status, headers, and a body. Content-Length is the body's unless
        /// <see cref="ContentLength"/> says otherwise (a lie the test wants told); null there and no body writes
        /// none, and the connection then closes after the reply.
        /// </summary>
        public sealed class Reply
        {
            public Reply(int status, byte[]? body = null, params (string Name, string Value)[] headers)
            {
                Status = status;
                Body = body ?? Array.Empty<byte>();
                Headers = headers;
                ContentLength = Body.Length;
            }

            public int Status { get; }

            public byte[] Body { get; }

            public IReadOnlyList<(string Name, string Value)> Headers { get; }

            /// <summary>The Content-Length header sent; null sends none (the body then ends when the connection closes).</summary>
            public long? ContentLength { get; set; }

            /// <summary>Closes the connection after the reply: set when the body sent is not the length announced, or nothing is sent.</summary>
            public bool CloseAfter => ContentLength != Body.Length || HangUp || StallAfter != null;

            /// <summary>Writes nothing at all and closes the connection: a store or proxy that fails mid-request.</summary>
            public bool HangUp { get; private set; }

            public static Reply Nothing() => new Reply(0) { HangUp = true };

            /// <summary>Sends this many bytes of the body, then nothing more until the client closes the connection (or the double stops): a store that hangs mid-answer.</summary>
            public int? StallAfter { get; set; }

            /// <summary>Sends the body <see cref="DribbleBytes"/> at a time, this long apart: a store (or one in the middle) that dribbles.</summary>
            public TimeSpan DribbleInterval { get; set; }

            public int DribbleBytes { get; set; } = 1;

            public static Reply Xml(int status, string xml) => new Reply(status, Encoding.UTF8.GetBytes(xml), ("Content-Type", "application/xml"));

            internal async Task WriteAsync(Stream stream, bool headOnly, CancellationToken stop)
            {
                if (HangUp)
                {
                    return;
                }

                var head = new StringBuilder($"HTTP/1.1 {Status} {(HttpStatusCode)Status}\r\n");
                head.Append("x-amz-request-id: double\r\nDate: ").Append(DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n");
                if (ContentLength is long length)
                {
                    head.Append("Content-Length: ").Append(length.ToString(CultureInfo.InvariantCulture)).Append("\r\n");
                }

                if (CloseAfter)
                {
                    head.Append("Connection: close\r\n");
                }

                foreach ((string name, string value) in Headers)
                {
                    head.Append(name).Append(": ").Append(value).Append("\r\n");
                }

                byte[] bytes = Encoding.ASCII.GetBytes(head.Append("\r\n").ToString());
                await stream.WriteAsync(bytes, 0, bytes.Length).ConfigureAwait(false);
                if (!headOnly)
                {
                    int sent = Math.Min(Body.Length, StallAfter ?? Body.Length);
                    int piece = DribbleInterval > TimeSpan.Zero ? DribbleBytes : sent;
                    for (int at = 0; at < sent; at += piece)
                    {
                        if (at > 0)
                        {
                            await Task.Delay(DribbleInterval, stop).ConfigureAwait(false);
                        }

                        await stream.WriteAsync(Body, at, Math.Min(piece, sent - at), stop).ConfigureAwait(false);
                        await stream.FlushAsync(stop).ConfigureAwait(false);
                    }

                    if (StallAfter != null)
                    {
                        // Hold the connection open, sending nothing, until the client gives up on it.
                        await stream.FlushAsync(stop).ConfigureAwait(false);
                        while (await stream.ReadAsync(new byte[1], 0, 1, stop).ConfigureAwait(false) > 0)
                        {
                        }
                    }
                }

                await stream.FlushAsync().ConfigureAwait(false);
            }
        }
    }
}
