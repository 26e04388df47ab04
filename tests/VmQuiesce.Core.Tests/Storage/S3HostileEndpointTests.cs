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
    }
}
