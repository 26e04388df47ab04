using System;
using System.Linq;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>The storage contract on a real Ceph RGW, plus what only S3 has: paging, endpoints, keys, buckets.</summary>
    [Collection(RgwCollection.Name)]
    public sealed class S3ObjectStorageTests : ObjectStorageContract
    {
        private readonly RgwServer _server;

        public S3ObjectStorageTests(RgwServer server) => _server = server;

        protected override IObjectStorage NewStorage() => _server.NewStorage();

        [RgwFact]
        public void Creates_reads_lists_and_deletes() => CreatesReadsListsAndDeletes();

        [RgwFact]
        public void Create_if_absent_never_replaces() => CreateIfAbsentNeverReplaces();

        [RgwFact]
        public void Of_concurrent_creates_exactly_one_wins() => OfConcurrentCreatesExactlyOneWins();

        [RgwFact]
        public void Replace_swaps_the_whole_object() => ReplaceSwapsTheWholeObject();

        [RgwFact]
        public void Read_is_bounded_by_the_buffer() => ReadIsBoundedByTheBuffer();

        [RgwFact]
        public void An_empty_object_reads_as_empty() => AnEmptyObjectReadsAsEmpty();

        [RgwFact]
        public void Keys_that_climb_out_are_refused() => KeysThatClimbOutAreRefused();

        [RgwFact]
        public void Lists_only_under_the_prefix() => ListsOnlyUnderThePrefix();

        [RgwFact]
        public void Listing_follows_every_page()
        {
            using S3ObjectStorage storage = _server.NewStorage();
            storage.ListPageSize = 3;
            string[] keys = Enumerable.Range(0, 10).Select(i => $"points/{i:00}.json").ToArray();
            foreach (string key in keys)
            {
                storage.CreateIfAbsent(key, Parts(key));
            }

            Assert.Equal(keys, storage.List("points/").Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));
        }

        [RgwFact]
        public void Two_repositories_in_one_bucket_do_not_see_each_other()
        {
            string bucket = _server.NewBucket();
            using var first = new S3ObjectStorage(S3RepositoryAddress.Parse($"s3://{bucket}/site-a"), _server.Settings());
            using var second = new S3ObjectStorage(S3RepositoryAddress.Parse($"s3://{bucket}/site-a2"), _server.Settings());
            first.CreateIfAbsent("points/a.json", Parts("a"));

            Assert.Empty(second.List(string.Empty));
            Assert.False(second.Exists("points/a.json"));
        }

        [RgwFact]
        public void A_wrong_secret_is_refused_naming_the_repository()
        {
            string bucket = _server.NewBucket();
            using var storage = new S3ObjectStorage(S3RepositoryAddress.Parse($"s3://{bucket}/repo"), _server.Settings(secret: "wrong-secret-wrong-secret-wrong-secret-00"));

            var error = Assert.Throws<VmQuiesceException>(() => storage.CheckAccess());
            Assert.Equal("S3AccessDenied", error.ErrorId);
            Assert.Equal(FailureKind.PermissionDenied, error.Kind);
            Assert.Contains($"s3://{bucket}/repo", error.Message);
            Assert.DoesNotContain("wrong-secret", error.Message + error.Remedy);
        }

        [RgwFact]
        public void A_missing_bucket_is_named()
        {
            using var storage = new S3ObjectStorage(S3RepositoryAddress.Parse("s3://no-such-bucket-vmq/repo"), _server.Settings());

            var error = Assert.Throws<VmQuiesceException>(() => storage.CheckAccess());
            Assert.Equal("S3BucketNotFound", error.ErrorId);
            Assert.Contains("'no-such-bucket-vmq'", error.Message);
            var onRead = Assert.Throws<VmQuiesceException>(() => storage.Read("points/a.json", new byte[8]));
            Assert.Equal("S3BucketNotFound", onRead.ErrorId);
            Assert.Equal("S3BucketNotFound", Assert.Throws<VmQuiesceException>(() => storage.Exists("points/a.json")).ErrorId);
        }

        [RgwFact]
        public void An_endpoint_that_does_not_answer_is_named()
        {
            S3ConnectionSettings settings = _server.Settings();
            settings.Endpoint = new Uri("http://127.0.0.1:9/");
            using var storage = new S3ObjectStorage(S3RepositoryAddress.Parse("s3://bucket/repo"), settings);

            var error = Assert.Throws<VmQuiesceException>(() => storage.CheckAccess());
            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
            Assert.Contains("http://127.0.0.1:9", error.Message);
        }
    }
}
