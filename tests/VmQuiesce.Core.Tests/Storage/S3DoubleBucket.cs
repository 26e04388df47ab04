using System;
using System.Collections.Concurrent;
using System.Linq;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Objects kept in memory and answered as a working S3 store answers <see cref="S3Double"/>'s requests (PUT,
    /// conditional PUT, GET, HEAD, DELETE, a ListObjectsV2 of one page): for tests that need a repository that works
    /// until they make some of its requests fail. Keys are the bucket's, prefix included.
    /// </summary>
    public sealed class S3DoubleBucket
    {
        private const string BucketPath = "/" + S3Double.Bucket + "/";

        public ConcurrentDictionary<string, byte[]> Objects { get; } = new ConcurrentDictionary<string, byte[]>(StringComparer.Ordinal);

        public S3Double.Reply Answer(S3Double.Request request)
        {
            if (request.IsList)
            {
                string prefix = request.Query.TryGetValue("prefix", out string? asked) ? asked : string.Empty;
                return S3Double.ListPage(Objects.Where(item => item.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(item => (item.Key, (long)item.Value.Length)).ToList());
            }

            string key = request.Path.Substring(BucketPath.Length);
            switch (request.Method)
            {
                case "PUT" when request.Headers.TryGetValue("If-None-Match", out string? condition) && condition == "*":
                    return Objects.TryAdd(key, request.Body) ? new S3Double.Reply(200) : S3Double.Error(412, "PreconditionFailed");
                case "PUT":
                    Objects[key] = request.Body;
                    return new S3Double.Reply(200);
                case "DELETE":
                    Objects.TryRemove(key, out _);
                    return new S3Double.Reply(204);
                default:
                    // GET or HEAD; a range asked for is not honoured: the whole object is an answer S3 allows.
                    return Objects.TryGetValue(key, out byte[]? content) ? new S3Double.Reply(200, content) : request.Method == "HEAD" ? new S3Double.Reply(404) : S3Double.Error(404, "NoSuchKey");
            }
        }
    }
}
