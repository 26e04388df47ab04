using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// A store whose connection fails (hung up before it answered, or cut off in the middle of a body every time it is
    /// sent) has failed, not the repository: a restore, a verify, a copy and a backup end with the S3 transport error,
    /// naming the endpoint and the object, after the retries, never with a chunk reported damaged. A chunk whose bytes
    /// are wrong is still damage. Against <see cref="S3Double"/> over a bucket in memory.
    /// </summary>
    public sealed class S3TransportFailureTests : IDisposable
    {
        private const int Chunk = RepositoryFixture.ChunkSize;
        private const string ChunksPath = "/" + S3Double.Bucket + "/repo/" + "chunks/";

        private readonly RepositoryFixture _local = new RepositoryFixture();
        private readonly S3DoubleBucket _bucket = new S3DoubleBucket();
        private readonly S3Double _endpoint;
        private readonly ObjectRepository _remote;
        private readonly RestorePoint _point;
        private readonly string _disk;

        /// <summary>The answer to a request that fails, or null for the bucket's.</summary>
        private volatile Func<S3Double.Request, S3Double.Reply?> _failure = request => null;

        public S3TransportFailureTests()
        {
            _endpoint = new S3Double(request => _failure(request) ?? _bucket.Answer(request));
            _remote = ObjectRepository.OpenOrCreate(_endpoint.NewStorage(), Chunk, key: null);
            _disk = _local.WriteFile("disk.img", RepositoryFixture.Random(4 * Chunk, 1));
            _point = RepositoryFixture.BackUp(_remote, "web", _disk);
        }

        public void Dispose()
        {
            _remote.Dispose();
            _endpoint.Dispose();
            _local.Dispose();
        }

        [Theory]
        [InlineData("hung up")]
        [InlineData("cut short")]
        public void A_restore_whose_chunk_reads_fail_in_transport_says_so_and_replaces_nothing(string failure)
        {
            byte[] current = RepositoryFixture.Random(10, 2);
            File.WriteAllBytes(_disk, current);
            FailChunkReads(failure);

            var error = Assert.Throws<VmQuiesceException>(() => Restore());

            AssertTransportFailure(error, failure);
            Assert.Equal(current, File.ReadAllBytes(_disk));
        }

        [Theory]
        [InlineData("hung up")]
        [InlineData("cut short")]
        public void A_verify_whose_chunk_reads_fail_in_transport_says_so_and_finds_no_damage(string failure)
        {
            FailChunkReads(failure);

            var error = Assert.Throws<VmQuiesceException>(() => RestorePointVerifier.Verify(_remote, _point, CancellationToken.None));

            AssertTransportFailure(error, failure);
        }

        [Fact]
        public void A_copy_whose_chunk_reads_fail_in_transport_says_so_and_publishes_nothing()
        {
            using ObjectRepository target = ObjectRepository.OpenOrCreate(_endpoint.NewStorage("copy"), Chunk, key: null);
            FailChunkReads("hung up");

            var error = Assert.Throws<VmQuiesceException>(() => RestorePointCopy.Copy(_remote, _point, target, CancellationToken.None));

            AssertTransportFailure(error, "hung up");
            Assert.DoesNotContain(_bucket.Objects.Keys, key => key.StartsWith("copy/points/", StringComparison.Ordinal));
        }

        /// <summary>A backup's lookups (HEAD) and uploads (PUT) of chunks, and the upload of its manifest.</summary>
        [Theory]
        [InlineData("HEAD", "chunks/")]
        [InlineData("PUT", "chunks/")]
        [InlineData("PUT", "points/")]
        public void A_backup_whose_requests_are_hung_up_on_says_so_and_publishes_nothing(string method, string folder)
        {
            File.WriteAllBytes(_disk, RepositoryFixture.Random(4 * Chunk, 3));
            _failure = request => request.Method == method && request.Path.StartsWith("/" + S3Double.Bucket + "/repo/" + folder, StringComparison.Ordinal) ? S3Double.Reply.Nothing() : null;

            var error = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(_remote, "web", _disk));

            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
            Assert.Contains(_endpoint.Endpoint.AbsoluteUri, error.Message);
            Assert.Contains($"(object '{folder}", error.Message);
            Assert.Single(_bucket.Objects.Keys, key => key.StartsWith("repo/points/", StringComparison.Ordinal));
        }

        [Fact]
        public void A_chunk_whose_bytes_are_wrong_is_still_damage_to_a_restore_and_a_verify()
        {
            string hash = _point.Files[0].Chunks[1]!;
            byte[] stored = _bucket.Objects["repo/" + ObjectRepository.ChunkKey(hash)].ToArray();
            stored[stored.Length - 1] ^= 1;
            _bucket.Objects["repo/" + ObjectRepository.ChunkKey(hash)] = stored;

            Assert.Equal("RestoreChunkDamaged", Assert.Throws<VmQuiesceException>(() => Restore()).ErrorId);
            RestorePointVerification verification = RestorePointVerifier.Verify(_remote, _point, CancellationToken.None);
            ChunkProblem problem = Assert.Single(verification.Problems);
            Assert.Equal(hash, problem.Hash);
            Assert.Equal(ChunkProblemKind.Damaged, problem.ProblemValue);
        }

        /// <summary>A store or network failing while a prune reads the manifests again (after its plan) is that failure, not a manifest to move away.</summary>
        [Theory]
        [InlineData("hung up", "S3EndpointUnreachable")]
        [InlineData("403", "S3AccessDenied")]
        [InlineData("500", "S3RequestFailed")]
        public void A_prune_whose_manifest_reads_fail_in_the_store_says_so_and_removes_nothing(string failure, string errorId)
        {
            RestorePoint newer = RepositoryFixture.BackUp(_remote, "web", _disk);
            PrunePlan plan = _remote.PlanRemoval(new[] { _point.Id }, e => throw e);
            FailManifestReads(failure);

            var error = Assert.Throws<VmQuiesceException>(() => _remote.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None));

            Assert.Equal(errorId, error.ErrorId);
            Assert.Contains("(object 'points/", error.Message);
            Assert.True(_bucket.Objects.ContainsKey("repo/" + ObjectRepository.ManifestKey(_point.Id)));
            Assert.True(_bucket.Objects.ContainsKey("repo/" + ObjectRepository.ManifestKey(newer.Id)));
        }

        /// <summary>A listing (Get-VmBackup) ends with the store's error: a list silently short of points is worse than none.</summary>
        [Theory]
        [InlineData("hung up", "S3EndpointUnreachable")]
        [InlineData("500", "S3RequestFailed")]
        public void A_listing_whose_manifest_reads_fail_in_the_store_ends_with_that_error(string failure, string errorId)
        {
            FailManifestReads(failure);
            var problems = new System.Collections.Generic.List<VmQuiesceException>();

            var error = Assert.Throws<VmQuiesceException>(() => _remote.ListRestorePoints(problems.Add));

            Assert.Equal(errorId, error.ErrorId);
            Assert.Empty(problems);
        }

        /// <summary>A manifest whose bytes are there but bad is still one to move away: a prune stops on it, a listing reports it and goes on.</summary>
        [Fact]
        public void A_manifest_whose_bytes_are_bad_still_stops_a_prune_as_unreadable_and_is_reported_by_a_listing()
        {
            RestorePoint newer = RepositoryFixture.BackUp(_remote, "web", _disk);
            _bucket.Objects["repo/" + ObjectRepository.ManifestKey("20260101T000000Z-broken")] = System.Text.Encoding.UTF8.GetBytes("{ not json");

            var error = Assert.Throws<VmQuiesceException>(() => _remote.Prune(_remote.PlanRemoval(new[] { _point.Id }, e => throw e), true, false, CancellationToken.None));
            var problems = new System.Collections.Generic.List<VmQuiesceException>();
            var listed = _remote.ListRestorePoints(problems.Add);

            Assert.Equal("RepositoryManifestUnreadable", error.ErrorId);
            Assert.True(_bucket.Objects.ContainsKey("repo/" + ObjectRepository.ManifestKey(_point.Id)));
            Assert.Equal(new[] { _point.Id, newer.Id }, listed.Select(point => point.Id));
            Assert.Equal("RestorePointUnreadable", Assert.Single(problems).ErrorId);
        }

        /// <summary>
        /// The store creates the manifest, the connection drops before its answer, the SDK sends the PUT again and the
        /// store answers 412: the manifest there is ours, byte for byte, and the backup succeeded.
        /// </summary>
        [Fact]
        public void A_backup_whose_manifest_put_answer_is_lost_succeeds_when_the_retry_meets_its_own_manifest()
        {
            LoseFirstPutAnswer("points/", stored => stored);

            RestorePoint point = RepositoryFixture.BackUp(_remote, "web", _disk);

            string key = "repo/" + ObjectRepository.ManifestKey(point.Id);
            AssertPutSentAgain(key);
            Assert.Equal(_endpoint.Requests.First(request => request.Path == "/" + S3Double.Bucket + "/" + key).Body, _bucket.Objects[key]);
            Assert.Equal(point.Id, _remote.GetRestorePoint(point.Id).Id);
        }

        /// <summary>As above, but what the retry met is not what this backup wrote: still RestorePointExists.</summary>
        [Fact]
        public void A_backup_whose_manifest_put_meets_other_bytes_after_a_lost_answer_is_refused()
        {
            LoseFirstPutAnswer("points/", stored => stored.Concat(new byte[] { (byte)' ' }).ToArray());

            var error = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(_remote, "web", _disk));

            Assert.Equal("RestorePointExists", error.ErrorId);
        }

        /// <summary>The same for a prune's exclusive lock object: one that names this lock's id is ours, not a lock against us.</summary>
        [Fact]
        public void A_prune_whose_lock_put_answer_is_lost_takes_its_own_lock_and_releases_it()
        {
            LoseFirstPutAnswer(ObjectRepositoryLock.ExclusiveKey, stored => stored);

            PruneResult result = _remote.Prune(_remote.PlanRemoval(Array.Empty<string>(), e => throw e), collectGarbage: true, removeStaleLock: false, CancellationToken.None);

            Assert.Empty(result.RemovedRestorePoints);
            AssertPutSentAgain("repo/" + ObjectRepositoryLock.ExclusiveKey);
            Assert.DoesNotContain(_bucket.Objects.Keys, key => key.StartsWith("repo/locks/", StringComparison.Ordinal));
        }

        /// <summary>Another live holder's exclusive lock met after a lost answer is still RepositoryLocked.</summary>
        [Fact]
        public void A_prune_whose_lock_put_meets_another_lock_after_a_lost_answer_is_refused()
        {
            LoseFirstPutAnswer(ObjectRepositoryLock.ExclusiveKey, stored => System.Text.Encoding.UTF8.GetBytes(System.Text.Encoding.UTF8.GetString(stored).Replace("\"lockId\": \"", "\"lockId\": \"0")));

            var error = Assert.Throws<VmQuiesceException>(() => _remote.Prune(_remote.PlanRemoval(Array.Empty<string>(), e => throw e), true, false, CancellationToken.None));

            Assert.Equal("RepositoryLocked", error.ErrorId);
        }

        private void Restore()
        {
            var engine = new RestoreEngine(_remote);
            engine.Run(engine.Plan(new RestoreRequest(_point) { Force = true, Destination = _local.Root }, CancellationToken.None), null, CancellationToken.None);
        }

        /// <summary>Every GET of a manifest fails: hung up before any answer, or an S3 error answer of that status.</summary>
        private void FailManifestReads(string failure) => _failure = request => request.Method != "GET" || request.IsList || !request.Path.StartsWith("/" + S3Double.Bucket + "/repo/points/", StringComparison.Ordinal) ? null
            : failure == "hung up" ? S3Double.Reply.Nothing()
            : S3Double.Error(int.Parse(failure, System.Globalization.CultureInfo.InvariantCulture), failure == "403" ? "AccessDenied" : "InternalError");

        /// <summary>
        /// The first PUT of a key under <paramref name="keyStart"/> is stored (as <paramref name="stored"/> makes its body:
        /// itself, or another writer's object got in first), then the connection drops before any answer; so it does for
        /// every send of the SDK's first attempt (.NET's HTTP client sends it again on a new connection), and the SDK's
        /// own retry gets the store's answer: 412.
        /// </summary>
        private void LoseFirstPutAnswer(string keyStart, Func<byte[], byte[]> stored) => _failure = request =>
        {
            if (request.Method != "PUT" || !request.Path.StartsWith("/" + S3Double.Bucket + "/repo/" + keyStart, StringComparison.Ordinal) || request.SdkAttempt != 1)
            {
                return null;
            }

            _bucket.Objects.TryAdd(request.Path.Substring(S3Double.Bucket.Length + 2), stored(request.Body));
            return S3Double.Reply.Nothing();
        };

        /// <summary>The SDK sent the PUT of <paramref name="key"/> again, as its retry, with the same body.</summary>
        private void AssertPutSentAgain(string key)
        {
            var puts = _endpoint.Requests.Where(request => request.Method == "PUT" && request.Path == "/" + S3Double.Bucket + "/" + key).ToList();
            Assert.True(puts.Count >= 2, $"{puts.Count} PUT(s) of {key}");
            Assert.Contains(puts, request => request.SdkAttempt >= 2);
            Assert.All(puts, request => Assert.Equal(puts[0].Body, request.Body));
        }

        /// <summary>Every GET of a chunk fails: hung up before any answer, or its body cut off after 10 bytes.</summary>
        private void FailChunkReads(string failure) => _failure = request => request.Method != "GET" || !request.Path.StartsWith(ChunksPath, StringComparison.Ordinal) ? null
            : failure == "hung up" ? S3Double.Reply.Nothing()
            : new S3Double.Reply(200, _bucket.Objects[request.Path.Substring(S3Double.Bucket.Length + 2)].Take(10).ToArray()) { ContentLength = _bucket.Objects[request.Path.Substring(S3Double.Bucket.Length + 2)].Length };

        /// <summary>The transport error, naming the endpoint and a chunk of the point, after the retries: the SDK's four attempts for a hang-up, three GETs in all for a body cut off.</summary>
        private void AssertTransportFailure(VmQuiesceException error, string failure)
        {
            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
            Assert.Contains(_endpoint.Endpoint.AbsoluteUri, error.Message);
            string hash = Assert.Single(_point.Files[0].Chunks.OfType<string>(), chunk => error.Message.Contains($"(object '{ObjectRepository.ChunkKey(chunk)}')", StringComparison.Ordinal));
            var gets = _endpoint.Requests.Where(request => request.Method == "GET" && request.Path == ChunksPath + ObjectRepository.ChunkKey(hash).Substring("chunks/".Length)).ToList();
            if (failure == "hung up")
            {
                Assert.Equal(S3HostileEndpointTests.SdkAttempts, gets.Select(request => request.SdkAttempt).Distinct().OrderBy(attempt => attempt));
            }
            else
            {
                Assert.Equal(S3ObjectStorage.BodyAttempts, gets.Count);
            }
        }
    }
}
