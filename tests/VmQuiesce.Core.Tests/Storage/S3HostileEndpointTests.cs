using System;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// An S3 endpoint is input like any other (another party's bucket, a proxy, a compromised gateway): what
    /// <see cref="S3ObjectStorage"/> does when a store's answers are wrong, against <see cref="S3Double"/>.
    /// </summary>
    public sealed class S3HostileEndpointTests
    {
        private static readonly (string Key, long Size)[] NoObjects = Array.Empty<(string, long)>();

        /// <summary>The attempts the SDK makes at a request that fails in transport: MaxErrorRetry is 3.</summary>
        internal static readonly int[] SdkAttempts = { 1, 2, 3, 4 };

        [Theory]
        [InlineData("other/points/a.json")]
        [InlineData("rep")]
        [InlineData("repo/chunks/ab/ab01")]
        public void A_listed_key_outside_the_prefix_is_refused_naming_it(string key)
        {
            using var endpoint = new S3Double(request => S3Double.ListPage(new[] { ("repo/points/a.json", 2L), (key, 2L) }));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List("points/").ToList());

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Equal(FailureKind.ProtocolError, error.Kind);
            Assert.Contains($"'{key}'", error.Message);
            Assert.Contains("'repo/points/'", error.Message);
            Assert.Contains(endpoint.Endpoint.GetComponents(UriComponents.SchemeAndServer, UriFormat.SafeUnescaped), error.Message);
        }

        [Fact]
        public void A_listed_object_without_a_key_is_refused()
        {
            using var endpoint = new S3Double(request => S3Double.Reply.Xml(200,
                "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>false</IsTruncated><Contents><Size>2</Size></Contents></ListBucketResult>"));
            using S3ObjectStorage storage = endpoint.NewStorage();

            Assert.Equal("S3ResponseInvalid", Assert.Throws<VmQuiesceException>(() => storage.List(string.Empty).ToList()).ErrorId);
        }

        [Theory]
        [InlineData("t1,t1")]
        [InlineData("t1,t2,t1")]
        public void A_continuation_token_given_again_is_refused(string sequence)
        {
            string[] tokens = sequence.Split(',');
            using var endpoint = new S3Double(request =>
            {
                int page = request.ContinuationToken == null ? 0 : Array.IndexOf(tokens, request.ContinuationToken) + 1;
                return S3Double.ListPage(new[] { ($"repo/points/{page}.json", 2L) }, tokens[Math.Min(page, tokens.Length - 1)]);
            });
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List("points/").ToList());

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Contains($"'{tokens[tokens.Length - 1]}'", error.Message);
            Assert.Equal(tokens.Length, endpoint.Requests.Count);
        }

        [Fact]
        public void A_listing_that_never_ends_stops_at_the_page_bound()
        {
            using var endpoint = new S3Double(request => S3Double.ListPage(NoObjects, Guid.NewGuid().ToString("N")));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.MaxListPages = 5;

            var error = Assert.Throws<VmQuiesceException>(() => storage.List("chunks/").ToList());

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Contains("5 pages", error.Message);
            Assert.Equal(5, endpoint.Requests.Count);
        }

        [Fact]
        public void A_listing_of_many_pages_within_the_bound_is_whole()
        {
            using var endpoint = new S3Double(request =>
            {
                int page = request.ContinuationToken == null ? 0 : int.Parse(request.ContinuationToken, System.Globalization.CultureInfo.InvariantCulture);
                return S3Double.ListPage(new[] { ($"repo/chunks/ab/ab{page:00}", 2L) }, page < 4 ? (page + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) : null);
            });
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.MaxListPages = 5;

            Assert.Equal(5, storage.List("chunks/").Count());
        }

        [Theory]
        [InlineData(-1L)]
        [InlineData(long.MaxValue)]
        public void A_listed_size_no_object_can_have_is_refused(long size)
        {
            using var endpoint = new S3Double(request => S3Double.ListPage(new[] { ("repo/chunks/ab/ab01", size) }));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List("chunks/").ToList());

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Contains("'chunks/ab/ab01'", error.Message);
            Assert.Contains(size.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message);
        }

        [Fact]
        public void A_whole_object_longer_than_asked_for_is_refused_before_its_body_is_read()
        {
            // A terabyte announced and never sent: refused on the header, or the read would wait for it.
            using var endpoint = new S3Double(request => new S3Double.Reply(200) { ContentLength = 1L << 40 });
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<InvalidDataException>(() => storage.ReadAll("points/a.json", 1024));
            Assert.Contains("1099511627776 bytes", error.Message);
        }

        [Fact]
        public void A_range_ignored_for_a_longer_object_is_refused_before_its_body_is_read()
        {
            using var endpoint = new S3Double(request => new S3Double.Reply(200) { ContentLength = 1L << 40 });
            using S3ObjectStorage storage = endpoint.NewStorage();

            Assert.Throws<InvalidDataException>(() => storage.Read("chunks/ab/ab01", new byte[1024]));
            Assert.Equal("bytes=0-1024", endpoint.Requests.Single().Headers["Range"]);
        }

        [Fact]
        public void A_body_of_no_announced_length_is_refused()
        {
            using var endpoint = new S3Double(request => new S3Double.Reply(200, new byte[64]) { ContentLength = null });
            using S3ObjectStorage storage = endpoint.NewStorage();

            Assert.Throws<InvalidDataException>(() => storage.ReadAll("points/a.json", 1024));
        }

        [Fact]
        public void A_body_shorter_than_announced_is_refused()
        {
            using var endpoint = new S3Double(request => new S3Double.Reply(200, new byte[10]) { ContentLength = 64 });
            using S3ObjectStorage storage = endpoint.NewStorage();

            // Never the part that came: the connection failed, each of the three times the GET was sent.
            Assert.Equal("S3EndpointUnreachable", Assert.Throws<VmQuiesceException>(() => storage.ReadAll("points/a.json", 1024)).ErrorId);
        }

        [Fact]
        public void A_body_that_does_not_match_its_etag_is_damaged_data()
        {
            byte[] body = Encoding.UTF8.GetBytes("{\"a\":1}");
            using var endpoint = new S3Double(request => new S3Double.Reply(200, body, ("ETag", "\"0123456789abcdef0123456789abcdef\"")));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<InvalidDataException>(() => storage.ReadAll("points/a.json", 1024));
            Assert.Contains("ETag", error.Message);
        }

        [Theory]
        [InlineData(301)]
        [InlineData(302)]
        [InlineData(307)]
        [InlineData(308)]
        public void A_redirect_is_not_followed(int status)
        {
            using var elsewhere = new S3Double(request => S3Double.ListPage(NoObjects));
            using var endpoint = new S3Double(request => new S3Double.Reply(status, null, ("Location", new Uri(elsewhere.Endpoint, request.Path + "?list-type=2").AbsoluteUri)));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List(string.Empty).ToList());

            Assert.Equal("S3RequestRedirected", error.ErrorId);
            Assert.Contains(status.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message);
            Assert.Contains(elsewhere.Endpoint.Authority, error.Message);
            Assert.Empty(elsewhere.Requests);
        }

        /// <summary>
        /// What AWS answers, until DNS settles, for a bucket just made in another region: 307 with a Location on the
        /// regional host, the bucket's region in x-amz-bucket-region, and a TemporaryRedirect error body. Refused for
        /// every kind of request, with the bucket, where it pointed and what to do.
        /// </summary>
        [Theory]
        [InlineData("list")]
        [InlineData("GET")]
        [InlineData("HEAD")]
        [InlineData("PUT")]
        public void A_temporary_redirect_to_the_bucket_region_says_where_it_pointed_and_what_to_do(string call)
        {
            using var regional = new S3Double(request => S3Double.ListPage(NoObjects));
            string regionalHost = regional.Endpoint.Authority;
            using var endpoint = new S3Double(request => new S3Double.Reply(
                307,
                request.Method == "HEAD" ? null : Encoding.UTF8.GetBytes($"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>TemporaryRedirect</Code><Message>Please re-send this request to the specified temporary endpoint. Continue to use the original request endpoint for future requests.</Message><Endpoint>{regionalHost}</Endpoint><Bucket>{S3Double.Bucket}</Bucket><RequestId>double</RequestId></Error>"),
                ("Location", new Uri(regional.Endpoint, request.Path).AbsoluteUri),
                ("x-amz-bucket-region", "eu-west-1"),
                ("Content-Type", "application/xml")));
            using S3ObjectStorage storage = endpoint.NewStorage();
            Action act = call switch
            {
                "list" => () => storage.List(string.Empty).ToList(),
                "GET" => () => storage.ReadAll("points/a.json", 1024),
                "HEAD" => () => storage.Exists("points/a.json"),
                _ => () => storage.CreateIfAbsent("points/a.json", new[] { new ArraySegment<byte>(new byte[1]) }),
            };

            var error = Assert.Throws<VmQuiesceException>(act);

            Assert.Equal("S3RequestRedirected", error.ErrorId);
            Assert.Contains($"the bucket '{S3Double.Bucket}'", error.Message);
            Assert.Contains("307", error.Message);
            Assert.Contains(regionalHost, error.Message);
            Assert.Contains("region 'eu-west-1'", error.Message);
            Assert.Contains("-S3Region eu-west-1", error.Remedy);
            Assert.Contains("in a few minutes", error.Remedy);
            Assert.Empty(regional.Requests);
        }

        [Fact]
        public void A_redirect_naming_a_region_no_region_has_puts_none_of_it_in_the_remedy()
        {
            using var endpoint = new S3Double(request => new S3Double.Reply(307, null, ("Location", "http://elsewhere.invalid/"), ("x-amz-bucket-region", "eu-west-1; Remove-Item -Recurse /")));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List(string.Empty).ToList());

            Assert.Equal("S3RequestRedirected", error.ErrorId);
            Assert.Contains("elsewhere.invalid", error.Message);
            Assert.DoesNotContain("Remove-Item", error.Message + error.Remedy);
            Assert.DoesNotContain("-S3Region eu-west-1", error.Remedy);
        }

        [Theory]
        [InlineData("GET")]
        [InlineData("HEAD")]
        [InlineData("PUT")]
        [InlineData("DELETE")]
        public void An_error_answer_no_caller_expects_is_a_request_failure(string method)
        {
            using var endpoint = new S3Double(request => S3Double.Error(request.Method == method ? 400 : 404, "InvalidArgument"));
            using S3ObjectStorage storage = endpoint.NewStorage();
            Action call = method switch
            {
                "GET" => () => storage.ReadAll("points/a.json", 1024),
                "HEAD" => () => storage.Exists("points/a.json"),
                "PUT" => () => storage.CreateIfAbsent("points/a.json", new[] { new ArraySegment<byte>(new byte[1]) }),
                _ => () => storage.Delete("points/a.json"),
            };

            var error = Assert.Throws<VmQuiesceException>(call);

            Assert.Equal("S3RequestFailed", error.ErrorId);
            Assert.Equal(FailureKind.ProtocolError, error.Kind);
            Assert.Contains("(object 'points/a.json'): 400", error.Message);
        }

        /// <summary>
        /// A connection the store drops before its answer (no status line) fails the request in transport, whatever the
        /// request: the transport error naming the endpoint and the object, after the SDK's retries; never a raw
        /// exception, nor an I/O error a caller would take for a damaged or unreadable object.
        /// </summary>
        [Theory]
        [InlineData("GET whole")]
        [InlineData("GET chunk")]
        [InlineData("HEAD")]
        [InlineData("PUT create")]
        [InlineData("PUT replace")]
        [InlineData("DELETE")]
        [InlineData("LIST")]
        public void A_connection_dropped_before_any_answer_is_a_transport_failure_naming_the_object(string call)
        {
            using var endpoint = new S3Double(request => S3Double.Reply.Nothing());
            using S3ObjectStorage storage = endpoint.NewStorage();
            var content = new[] { new ArraySegment<byte>(new byte[1]) };
            Action request = call switch
            {
                "GET whole" => () => storage.ReadAll("points/a.json", 1024),
                "GET chunk" => () => storage.Read("points/a.json", new byte[1024]),
                "HEAD" => () => storage.Exists("points/a.json"),
                "PUT create" => () => storage.CreateIfAbsent("points/a.json", content),
                "PUT replace" => () => storage.Replace("points/a.json", content),
                "DELETE" => () => storage.Delete("points/a.json"),
                _ => () => storage.List("points/").ToList(),
            };

            var error = Assert.Throws<VmQuiesceException>(request);

            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
            Assert.Contains(endpoint.Endpoint.AbsoluteUri, error.Message);
            Assert.Contains(storage.Location, error.Message);
            Assert.Contains(call == "LIST" ? "cannot be reached" : "(object 'points/a.json')", error.Message);
            Assert.Equal(SdkAttempts, endpoint.Requests.Select(sent => sent.SdkAttempt).Distinct().OrderBy(attempt => attempt));
        }

        /// <summary>Answers a caller handles only where it asked for them: a 416 to a GET without a range, a 409 after the last retry.</summary>
        [Theory]
        [InlineData("GET", 416, "InvalidRange")]
        [InlineData("PUT", 409, "ConditionalRequestConflict")]
        public void An_answer_handled_elsewhere_is_a_request_failure_where_it_was_not_asked_for(string method, int status, string code)
        {
            using var endpoint = new S3Double(request => S3Double.Error(request.Method == method ? status : 404, code));
            using S3ObjectStorage storage = endpoint.NewStorage();
            Action call = method == "GET"
                ? () => storage.ReadAll("points/a.json", 1024)
                : () => storage.CreateIfAbsent("points/a.json", new[] { new ArraySegment<byte>(new byte[1]) });

            var error = Assert.Throws<VmQuiesceException>(call);

            Assert.Equal("S3RequestFailed", error.ErrorId);
            Assert.Contains($"(object 'points/a.json'): {status}", error.Message);
        }

        [Fact]
        public void An_error_answer_is_quoted_escaped_and_cut_short()
        {
            // Not XML (an escape character cannot be in it), so the SDK quotes the whole body.
            using var endpoint = new S3Double(request => S3Double.Reply.Xml(400, "<Error>\u001b]0;owned\u0007" + new string('x', 100000) + "</Error>"));
            using S3ObjectStorage storage = endpoint.NewStorage();

            var error = Assert.Throws<VmQuiesceException>(() => storage.List(string.Empty).ToList());

            Assert.Equal("S3RequestFailed", error.ErrorId);
            Assert.Contains("\\x1b]0;owned\\x07", error.Message);
            Assert.True(error.Message.IndexOf('\u001b') < 0, error.Message);
            Assert.True(error.Message.Length < 2000, error.Message);
        }

        [Theory]
        [InlineData(1)]
        [InlineData(2)]
        public void A_body_the_connection_ended_early_is_read_again_whole(int cutOffs)
        {
            byte[] body = Encoding.UTF8.GetBytes("a chunk of some length, read whole the next time round");
            int gets = 0;
            using var endpoint = new S3Double(request => ++gets <= cutOffs
                ? new S3Double.Reply(200, body.Take(10).ToArray()) { ContentLength = body.Length }
                : new S3Double.Reply(200, body));
            using S3ObjectStorage storage = endpoint.NewStorage();

            Assert.Equal(body, storage.ReadAll("chunks/ab/abcd", 1024));
            Assert.Equal(cutOffs + 1, endpoint.Requests.Count(request => request.Method == "GET"));
        }

        [Fact]
        public void A_body_the_connection_ends_early_every_time_fails_after_three_requests_naming_the_object()
        {
            byte[] body = new byte[100];
            using var endpoint = new S3Double(request => new S3Double.Reply(200, body.Take(10).ToArray()) { ContentLength = body.Length });
            using S3ObjectStorage storage = endpoint.NewStorage();

            // A transport failure, not an I/O error a restore or verify would take for a damaged chunk.
            var error = Assert.Throws<VmQuiesceException>(() => storage.Read("chunks/ab/abcd", new byte[1024]));

            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Contains(endpoint.Endpoint.AbsoluteUri, error.Message);
            Assert.Contains("(object 'chunks/ab/abcd')", error.Message);
            Assert.Contains("the connection ended before the body was whole, 3 times", error.Message);
            Assert.Equal(S3ObjectStorage.BodyAttempts, endpoint.Requests.Count(request => request.Method == "GET"));
        }
    }
}
