using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    public class CrashSafetyTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void ACrashAtAnyFileOperationLeavesTheOldPointsValidAndNoHalfPoint()
        {
            int crashes = 0;
            for (int crashAt = 0; crashAt < 500; crashAt++)
            {
                using var fixture = new RepositoryFixture();
                byte[] content = RepositoryFixture.Random(6 * Chunk, 1);
                string disk = fixture.WriteFile("disk.img", content);
                RestorePoint existing = fixture.BackUp("vm1", disk);
                content[3 * Chunk] ^= 0xFF;
                File.WriteAllBytes(disk, content);
                string extra = fixture.WriteFile("extra.img", RepositoryFixture.Random(2 * Chunk + 3, 2));

                var ops = new CrashingFileOps(crashAt);
                BackupRepository crashing = BackupRepository.Open(fixture.RepositoryPath, ops);
                try
                {
                    new BackupEngine(crashing, workers: 1).Run(new PlainImageSource("vm1", new[] { disk, extra }), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None);
                }
                catch (Exception) when (ops.Crashed)
                {
                }

                // What a restarted process sees:
                BackupRepository after = BackupRepository.Open(fixture.RepositoryPath);
                var points = after.ListRestorePoints();
                foreach (RestorePoint point in points)
                {
                    Assert.True(after.Verify(point, CancellationToken.None).IsValid, $"crash at operation {crashAt}: {point.Id} does not verify");
                }

                if (!ops.Crashed)
                {
                    Assert.Equal(2, points.Count);
                    break;
                }

                // Before the manifest's rename the new point does not exist; after it, it is whole (verified above).
                Assert.Contains(existing.Id, points.Select(point => point.Id));
                if (points.Count == 1)
                {
                    crashes++;
                }

                // Prune clears what the crash left behind and the old point still verifies.
                after.Prune(after.PlanRemoval(Array.Empty<string>(), e => throw e), collectGarbage: true, removeStaleLock: false, CancellationToken.None);
                Assert.DoesNotContain(Directory.EnumerateFiles(fixture.RepositoryPath, ".tmp-*", SearchOption.AllDirectories), _ => true);
                Assert.True(after.Verify(existing, CancellationToken.None).IsValid);
            }

            // Five new chunks (create, two writes, flush, rename each) plus the manifest's steps.
            Assert.True(crashes >= 25, $"only {crashes} crash points left no new point");
        }

        [Fact]
        public void APreparedManifestIsNoPointUntilPublishedLeavesNothingWhenDroppedAndNeverReplacesAPoint()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 3)));
            IBackupTarget target = fixture.Repository;
            string manifest = Path.Combine(fixture.Repository.PointsFolder, point.Id + ".json");
            string[] PointFiles() => Directory.GetFiles(fixture.Repository.PointsFolder).Select(Path.GetFileName).ToArray()!;

            Assert.Equal("RestorePointExists", Assert.Throws<VmQuiesceException>(() => target.PrepareManifest(point)).ErrorId);
            Assert.Equal(new[] { point.Id + ".json" }, PointFiles());

            File.Delete(manifest);
            using (target.PrepareManifest(point))
            {
                Assert.Empty(fixture.Repository.ListRestorePoints());
                Assert.StartsWith(ChunkStore.TempPrefix, Assert.Single(PointFiles()), StringComparison.Ordinal);
            }

            Assert.Empty(PointFiles());

            using IPreparedManifest first = target.PrepareManifest(point);
            using IPreparedManifest second = target.PrepareManifest(point);
            first.Publish();
            Assert.Equal("RestorePointExists", Assert.Throws<VmQuiesceException>(() => second.Publish()).ErrorId);
            Assert.Equal(new[] { point.Id + ".json" }, PointFiles());
            Assert.True(fixture.Repository.Verify(fixture.Repository.GetRestorePoint(point.Id), CancellationToken.None).IsValid);
        }

        /// <summary>Fails at the Nth file operation and at every one after it, as a dead process would.</summary>
        private sealed class CrashingFileOps : RepositoryFileOps
        {
            private int _remaining;

            public CrashingFileOps(int crashAt) => _remaining = crashAt;

            private volatile bool _crashed;

            public bool Crashed => _crashed;

            public override Stream CreateNew(string path)
            {
                Step();
                return new CrashingStream(base.CreateNew(path), this);
            }

            public override Stream CreateNewBulk(string path)
            {
                Step();
                return new CrashingStream(base.CreateNewBulk(path), this);
            }

            public override void FlushToDisk(Stream stream)
            {
                Step();
                base.FlushToDisk(((CrashingStream)stream).Inner);
            }

            public override bool MoveNew(string from, string to)
            {
                Step();
                return base.MoveNew(from, to);
            }

            public override void Delete(string path)
            {
                Step();
                base.Delete(path);
            }

            public override void SyncDirectory(string directory)
            {
                Step();
                base.SyncDirectory(directory);
            }

            /// <summary>Thread safe: the engine's flushers publish chunks on threads of their own.</summary>
            public void Step()
            {
                if (_crashed || Interlocked.Decrement(ref _remaining) == -1)
                {
                    _crashed = true;
                    throw new IOException("simulated crash");
                }
            }

            private sealed class CrashingStream : Stream
            {
                private readonly CrashingFileOps _ops;

                public CrashingStream(Stream inner, CrashingFileOps ops)
                {
                    Inner = inner;
                    _ops = ops;
                }

                public Stream Inner { get; }

                public override bool CanRead => false;

                public override bool CanSeek => false;

                public override bool CanWrite => true;

                public override long Length => Inner.Length;

                public override long Position { get => Inner.Position; set => throw new NotSupportedException(); }

                public override void Write(byte[] buffer, int offset, int count)
                {
                    try
                    {
                        _ops.Step();
                    }
                    catch (IOException)
                    {
                        // Half the bytes reach the file before the "crash".
                        Inner.Write(buffer, offset, count / 2);
                        throw;
                    }

                    Inner.Write(buffer, offset, count);
                }

                public override void Flush() => Inner.Flush();

                public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

                public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

                public override void SetLength(long value) => throw new NotSupportedException();

                protected override void Dispose(bool disposing)
                {
                    if (disposing)
                    {
                        Inner.Dispose();
                    }

                    base.Dispose(disposing);
                }
            }
        }
    }
}
