using System;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// A prune with -RemoveStaleLock meets a lock object it cannot read: only a body received whole that is not a lock
    /// may be removed; a read that failed (the store, the network, a body cut short or damaged) says nothing about a
    /// lock that may be live, so the prune fails and the lock stays. Against <see cref="S3Double"/>, where the lock
    /// object exists (the prune's conditional PUT gets 412) and its GET fails as each case says.
    /// </summary>
    public sealed class ObjectRepositoryLockReadTests
    {
        private const string LockPath = "/" + S3Double.Bucket + "/repo/" + ObjectRepositoryLock.ExclusiveKey;

        /// <summary>Each failure, and the error id it gives: a read that failed is never a write problem, and a connection that failed is the transport's.</summary>
        public static TheoryData<string, string> FailedReads => new TheoryData<string, string>
        {
            { "cut short", "S3EndpointUnreachable" }, // Each of the three times the GET was sent.
            { "not its ETag", "RepositoryReadFailed" },
            { "hung up", "S3EndpointUnreachable" }, // After the SDK's retries.
            { "stalled", "S3ResponseStalled" },
            { "503", "S3RequestFailed" },
        };

        [Theory]
        [MemberData(nameof(FailedReads))]
        public void A_lock_object_whose_read_failed_is_never_removed_as_stale(string failure, string errorId)
        {
            using S3Double endpoint = LockReadFailing(failure);
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromMilliseconds(300);
            string? warned = null;

            Exception error = Assert.ThrowsAny<Exception>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)", removeStale: true, warn: message => warned = message));

            // A clear error naming the repository, the lock object and the endpoint: no raw exception reaches a cmdlet.
            var failed = Assert.IsType<VmQuiesceException>(error);
            Assert.Equal(errorId, failed.ErrorId);
            Assert.Contains(storage.Location, failed.Message);
            Assert.Contains(ObjectRepositoryLock.ExclusiveKey, failed.Message);
            Assert.Contains(endpoint.Endpoint.AbsoluteUri, failed.Message);
            Assert.DoesNotContain(endpoint.Requests, request => request.Method == "DELETE");
            Assert.Null(warned);
            Assert.Contains(endpoint.Requests, request => request.Method == "GET" && request.Path == LockPath);
        }

        [Fact]
        public void A_lock_object_whose_body_does_not_match_its_etag_is_a_read_failure_that_says_what_to_do()
        {
            using S3Double endpoint = LockReadFailing("not its ETag");
            using S3ObjectStorage storage = endpoint.NewStorage();

            var failed = Assert.Throws<VmQuiesceException>(() => ObjectRepositoryLock.AcquireShared(storage, "backup"));

            Assert.Equal("RepositoryReadFailed", failed.ErrorId);
            Assert.Equal(FailureKind.ReadError, failed.Kind);
            Assert.StartsWith($"Could not read the lock object '{ObjectRepositoryLock.ExclusiveKey}' of the repository '{storage.Location}' from {endpoint.Endpoint.AbsoluteUri}, so it was left as it is: ", failed.Message);
            Assert.Contains("Check the endpoint, the network and any proxy in between, then run the command again.", failed.Remedy);
        }

        /// <summary>An endpoint where the exclusive lock object exists (a conditional PUT gets 412, a HEAD 200) and its GET fails as <paramref name="failure"/> says.</summary>
        private static S3Double LockReadFailing(string failure)
        {
            byte[] body = Encoding.UTF8.GetBytes("{\"pid\":1,\"host\":\"elsewhere\",\"purpose\":\"backup\"}");
            return new S3Double(request => request.Method switch
            {
                "PUT" => S3Double.Error(412, "PreconditionFailed"),
                "DELETE" => new S3Double.Reply(204),
                "HEAD" => new S3Double.Reply(200, body),
                _ => failure switch
                {
                    "cut short" => new S3Double.Reply(200, body.Take(10).ToArray()) { ContentLength = body.Length },
                    "not its ETag" => new S3Double.Reply(200, body, ("ETag", "\"0123456789abcdef0123456789abcdef\"")),
                    "hung up" => S3Double.Reply.Nothing(),
                    "stalled" => new S3Double.Reply(200, body) { StallAfter = 10 },
                    _ => S3Double.Error(503, "ServiceUnavailable"),
                },
            });
        }

        [Theory]
        [InlineData("not json")]
        [InlineData("[1,2]")]
        public void A_lock_object_received_whole_that_is_not_a_lock_is_stale(string content)
        {
            using var endpoint = new S3Double(request => request.Method switch
            {
                "PUT" => S3Double.Error(412, "PreconditionFailed"),
                "DELETE" => new S3Double.Reply(204),
                _ => new S3Double.Reply(200, Encoding.UTF8.GetBytes(content)),
            });
            using S3ObjectStorage storage = endpoint.NewStorage();

            var stale = Assert.Throws<VmQuiesceException>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)"));
            Assert.Equal("RepositoryLockStale", stale.ErrorId);
            Assert.Contains("cannot be read as a lock", stale.Message);
            Assert.DoesNotContain(endpoint.Requests, request => request.Method == "DELETE");

            string? warned = null;
            Assert.ThrowsAny<Exception>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)", removeStale: true, warn: message => warned = message));
            Assert.Contains(endpoint.Requests, request => request.Method == "DELETE" && request.Path == LockPath);
            Assert.Contains("-RemoveStaleLock", warned);
        }

        [Fact]
        public void A_lock_object_larger_than_any_lock_is_stale_by_its_listed_size()
        {
            byte[] body = new byte[100 * 1024];
            using var endpoint = new S3Double(request => request.Method switch
            {
                "PUT" => S3Double.Error(412, "PreconditionFailed"),
                "DELETE" => new S3Double.Reply(204),
                _ when request.IsList => S3Double.ListPage(new[] { ("repo/" + ObjectRepositoryLock.ExclusiveKey, (long)body.Length) }),
                _ => new S3Double.Reply(200, body),
            });
            using S3ObjectStorage storage = endpoint.NewStorage();

            var stale = Assert.Throws<VmQuiesceException>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)"));
            Assert.Equal("RepositoryLockStale", stale.ErrorId);
            Assert.Contains("102,400 bytes, more than", stale.Message);
            Assert.DoesNotContain(endpoint.Requests, request => request.Method == "DELETE");

            string? warned = null;
            Assert.ThrowsAny<Exception>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)", removeStale: true, warn: message => warned = message));
            Assert.Contains(endpoint.Requests, request => request.Method == "DELETE" && request.Path == LockPath);
            Assert.Contains("-RemoveStaleLock", warned);
        }
    }
}
