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

        public static TheoryData<string> FailedReads => new TheoryData<string>
        {
            "cut short",
            "not its ETag",
            "hung up",
#if !NETFRAMEWORK
            "stalled", // Cut off by S3ResponseLimits, which only the .NET build has.
#endif
            "503",
        };

        [Theory]
        [MemberData(nameof(FailedReads))]
        public void A_lock_object_whose_read_failed_is_never_removed_as_stale(string failure)
        {
            byte[] body = Encoding.UTF8.GetBytes("{\"pid\":1,\"host\":\"elsewhere\",\"purpose\":\"backup\"}");
            using var endpoint = new S3Double(request => request.Method switch
            {
                "PUT" => S3Double.Error(412, "PreconditionFailed"),
                "DELETE" => new S3Double.Reply(204),
                _ => failure switch
                {
                    "cut short" => new S3Double.Reply(200, body.Take(10).ToArray()) { ContentLength = body.Length },
                    "not its ETag" => new S3Double.Reply(200, body, ("ETag", "\"0123456789abcdef0123456789abcdef\"")),
                    "hung up" => S3Double.Reply.Nothing(),
                    "stalled" => new S3Double.Reply(200, body) { StallAfter = 10 },
                    _ => S3Double.Error(503, "ServiceUnavailable"),
                },
            });
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromMilliseconds(300);
            string? warned = null;

            Exception error = Assert.ThrowsAny<Exception>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)", removeStale: true, warn: message => warned = message));

            // A clear error naming the repository, as a folder repository's failed lock read gives: no raw exception reaches a cmdlet.
            var failed = Assert.IsType<VmQuiesceException>(error);
            Assert.Contains(storage.Location, failed.Message);
            Assert.DoesNotContain(endpoint.Requests, request => request.Method == "DELETE");
            Assert.Null(warned);
            Assert.Contains(endpoint.Requests, request => request.Method == "GET" && request.Path == LockPath);
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
