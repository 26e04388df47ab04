using System;
using System.IO;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Amazon.Runtime.EventStreams;
using Amazon.Runtime.Internal.Transform;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// How the .NET Framework build bounds S3 answers (the SDK takes no HTTP client of ours there): its requests put each
    /// answer behind <see cref="BoundedResponseData"/>, which these tests drive on .NET with answers whose bodies behave
    /// as .NET Framework's do: a read waiting on the network ends only when the request is aborted, not when the body
    /// is closed, and closing a body not read to its end would drain it.
    /// </summary>
    public sealed class BoundedResponseDataTests : IDisposable
    {
        private const string ObjectUri = "http://store.example/bucket/repo/points/a.json";
        private const string ListingUri = "http://store.example/bucket?list-type=2&prefix=repo%2F";
        private static readonly TimeSpan Hung = TimeSpan.FromSeconds(30);

        private readonly S3ResponseLimits _limits = new S3ResponseLimits { StallTime = TimeSpan.FromMilliseconds(300), MinBytesPerStallTime = 1024, MaxNonObjectBytes = 64 * 1024 };
        private readonly ManualResetEventSlim _aborted = new ManualResetEventSlim();
        private int _aborts;

        public static TheoryData<string, HttpStatusCode> NonObjectAnswers => new TheoryData<string, HttpStatusCode>
        {
            { ListingUri, HttpStatusCode.OK },
            { ObjectUri, HttpStatusCode.InternalServerError },
        };

        public void Dispose() => _aborted.Dispose();

        [Theory]
        [MemberData(nameof(NonObjectAnswers))]
        public void A_listing_or_error_answer_that_goes_on_past_the_bound_is_refused_and_its_request_aborted(string uri, HttpStatusCode status)
        {
            var answer = new Answer(status, new EndlessBody(), length: -1);

            var refused = Assert.IsType<S3ResponseRefusedException>(Record.Exception(() => ReadAll(Bound(answer, "GET", uri))));

            Assert.False(refused.Stalled);
            Assert.Contains("past 65536 bytes", refused.Message);
            Assert.True(_aborts > 0);
        }

        [Fact]
        public void A_listing_that_announces_a_length_past_the_bound_is_refused_unread()
        {
            var body = new EndlessBody();
            var answer = new Answer(HttpStatusCode.OK, body, length: 1L << 40);

            var refused = Assert.Throws<S3ResponseRefusedException>(() => Bound(answer, "GET", ListingUri));

            Assert.Contains("announced 1099511627776 bytes", refused.Message);
            Assert.Equal(0, body.BytesRead);
            Assert.True(answer.Disposed);
            Assert.True(_aborts > 0);
        }

        [Theory]
        [InlineData(ObjectUri)]
        [InlineData(ListingUri)]
        public void A_body_that_stops_coming_is_cut_off_by_aborting_its_request(string uri)
        {
            var answer = new Answer(HttpStatusCode.OK, new StalledBody(_aborted), length: -1);

            var refused = Assert.IsType<S3ResponseRefusedException>(Ended(() => ReadAll(Bound(answer, "GET", uri))));
            Assert.True(refused.Stalled);
            Assert.Contains("0.3 seconds", refused.Message);
            Assert.True(_aborts > 0);
        }

        [Fact]
        public void A_body_dribbled_slower_than_the_floor_is_cut_off()
        {
            var answer = new Answer(HttpStatusCode.OK, new DribbledBody(), length: -1);

            var refused = Assert.IsType<S3ResponseRefusedException>(Record.Exception(() => ReadAll(Bound(answer, "GET", ObjectUri))));

            Assert.True(refused.Stalled);
            Assert.True(_aborts > 0);
        }

        [Fact]
        public void An_objects_bytes_past_the_bound_of_other_answers_are_read_whole()
        {
            byte[] content = new byte[256 * 1024];
            new Random(1).NextBytes(content);
            var answer = new Answer(HttpStatusCode.OK, new MemoryStream(content), content.Length);

            IWebResponseData bounded = Bound(answer, "GET", ObjectUri);

            Assert.Equal(content, ReadAll(bounded));
            Assert.Same(bounded.ResponseBody.OpenResponse(), bounded.ResponseBody.OpenResponse());
            Assert.Equal(0, _aborts);
            Assert.Equal("value", bounded.GetHeaderValue("x-amz-test"));
            Assert.Equal(HttpStatusCode.OK, bounded.StatusCode);
        }

        [Fact]
        public void A_head_answer_is_left_as_it_is()
        {
            var answer = new Answer(HttpStatusCode.OK, new MemoryStream(), length: 1L << 40);

            Assert.Same(answer, Bound(answer, "HEAD", ObjectUri));
        }

        private IWebResponseData Bound(IWebResponseData answer, string method, string uri) =>
            BoundedResponseData.Bound(answer, _limits, method, new Uri(uri), () =>
            {
                Interlocked.Increment(ref _aborts);
                _aborted.Set();
            });

        /// <summary>What <paramref name="call"/> throws; a failure of the test when it does not end within <see cref="Hung"/>.</summary>
        private static Exception? Ended(Action call)
        {
            Task<Exception> task = Task.Run(() => Record.Exception(call));
            Assert.True(task.Wait(Hung), $"The call did not end within {Hung.TotalSeconds} seconds.");
            return task.Result;
        }

        private static byte[] ReadAll(IWebResponseData answer)
        {
            using var copy = new MemoryStream();
            answer.ResponseBody.OpenResponse().CopyTo(copy);
            return copy.ToArray();
        }

        /// <summary>An answer as the SDK's HTTP layer gives it.</summary>
        private sealed class Answer : IWebResponseData, IHttpResponseBody
        {
            private readonly Stream _body;

            public Answer(HttpStatusCode status, Stream body, long length)
            {
                StatusCode = status;
                _body = body;
                ContentLength = length;
            }

            public bool Disposed { get; private set; }

            public long ContentLength { get; }

            public string ContentType => "application/xml";

            public HttpStatusCode StatusCode { get; }

            public bool IsSuccessStatusCode => (int)StatusCode >= 200 && (int)StatusCode < 300;

            public IHttpResponseBody ResponseBody => this;

            public string[] GetHeaderNames() => new[] { "x-amz-test" };

            public bool IsHeaderPresent(string headerName) => headerName == "x-amz-test";

            public string GetHeaderValue(string headerName) => headerName == "x-amz-test" ? "value" : string.Empty;

            public IEventStreamHeader GetEventStreamHeader(string headerName) => throw new NotSupportedException();

            public bool IsEventHeaderPresent(string headerName) => false;

            public Stream OpenResponse() => _body;

            public Task<Stream> OpenResponseAsync() => Task.FromResult(_body);

            public void Dispose() => Disposed = true;
        }

        /// <summary>A body as an answer's stream is: read once, front to back; what it reads is the test's.</summary>
        private abstract class ReadOnlyBody : Stream
        {
            public override bool CanRead => true;

            public override bool CanSeek => false;

            public override bool CanWrite => false;

            public override long Length => throw new NotSupportedException();

            public override long Position
            {
                get => throw new NotSupportedException();
                set => throw new NotSupportedException();
            }

            public override void Flush()
            {
            }

            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

            public override void SetLength(long value) => throw new NotSupportedException();

            public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        }

        /// <summary>A body that never ends.</summary>
        private sealed class EndlessBody : ReadOnlyBody
        {
            public long BytesRead { get; private set; }

            public override int Read(byte[] buffer, int offset, int count)
            {
                BytesRead += count;
                return count;
            }
        }

        /// <summary>A byte every 20 ms: never idle for a stall time, and far below a kilobyte in one.</summary>
        private sealed class DribbledBody : ReadOnlyBody
        {
            public override int Read(byte[] buffer, int offset, int count)
            {
                Thread.Sleep(20);
                buffer[offset] = (byte)'x';
                return 1;
            }
        }

        /// <summary>
        /// A body whose read waits until the test's request is aborted, then fails as HttpWebRequest's does; closing it
        /// ends no read. A read that never ends fails the test after <see cref="Hung"/>, through the caller's wait.
        /// </summary>
        private sealed class StalledBody : ReadOnlyBody
        {
            private readonly ManualResetEventSlim _aborted;

            public StalledBody(ManualResetEventSlim aborted) => _aborted = aborted;

            public override int Read(byte[] buffer, int offset, int count)
            {
                _aborted.Wait(Hung + Hung);
                throw new WebException("The request was aborted: The request was canceled.", WebExceptionStatus.RequestCanceled);
            }
        }
    }
}
