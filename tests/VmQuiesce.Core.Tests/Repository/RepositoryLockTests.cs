using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Faults;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// Locks left by processes that died: removed automatically (with a warning) when the holder is provably gone
    /// from this host; a human decides only for live holders, other hosts and files that are not locks.
    /// </summary>
    public class RepositoryLockTests
    {
        [Fact]
        public void TheLockOfADeadLocalProcessIsRemovedWithAWarning()
        {
            using var fixture = new RepositoryFixture();
            int dead = DeadPid();
            string stale = WriteLock(fixture, "exclusive.lock", new JsonObject().With("pid", dead).With("host", Environment.MachineName).With("purpose", "Remove-VmBackup (prune)"));
            var warnings = new List<string>();

            using (RepositoryLock shared = fixture.Repository.LockShared("backup", warn: warnings.Add))
            {
                Assert.True(shared.Held);
            }

            Assert.False(File.Exists(stale));
            Assert.Contains($"process {dead}", warnings.Single());
            Assert.Contains("gone", warnings.Single());
        }

        [LinuxFact]
        public void ALockWhosePidWasReusedByALaterProcessIsRemoved()
        {
            using var fixture = new RepositoryFixture();
            // This very process now has the pid; the lock says its holder started at another tick.
            WriteLock(fixture, "exclusive.lock", new JsonObject().With("pid", Environment.ProcessId).With("host", Environment.MachineName)
                .With("processStartTicks", "1").With("purpose", "prune"));
            var warnings = new List<string>();

            using (fixture.Repository.LockShared("backup", warn: warnings.Add))
            {
            }

            Assert.Single(warnings);
        }

        [LinuxFact]
        public void ALockFromBeforeThisHostRestartedIsRemoved()
        {
            using var fixture = new RepositoryFixture();
            WriteLock(fixture, "exclusive.lock", new JsonObject().With("pid", Environment.ProcessId).With("host", Environment.MachineName)
                .With("bootId", Guid.NewGuid().ToString()).With("purpose", "prune"));
            var warnings = new List<string>();

            using (fixture.Repository.LockShared("backup", warn: warnings.Add))
            {
            }

            Assert.Contains("restarted", warnings.Single());
        }

        [Fact]
        public void TheLockOfALiveProcessIsBusyAndNeverRemoved()
        {
            using var fixture = new RepositoryFixture();
            using (RepositoryLock held = fixture.Repository.LockExclusive("prune"))
            {
                var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup", removeStale: true));
                Assert.Equal("RepositoryLocked", e.ErrorId);
                Assert.Contains("prune", e.Message);
            }
        }

        [Fact]
        public void ALockFromAnotherHostOrOneThatIsNotALockNeedsAHuman()
        {
            using var fixture = new RepositoryFixture();
            string other = WriteLock(fixture, "exclusive.lock", new JsonObject().With("pid", 1).With("host", "some-other-host").With("purpose", "prune"));

            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup"));
            Assert.Equal("RepositoryLockStale", e.ErrorId);
            Assert.Contains("another host", e.Message);
            Assert.Contains("-RemoveStaleLock", e.Remedy);
            Assert.True(File.Exists(other));

            File.WriteAllText(other, "{\"pid\": 4");
            Assert.Equal("RepositoryLockStale", Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup")).ErrorId);

            var warnings = new List<string>();
            using (fixture.Repository.LockShared("backup", removeStale: true, warn: warnings.Add))
            {
                Assert.False(File.Exists(other));
            }

            Assert.Contains("-RemoveStaleLock", warnings.Single());
        }

        [Fact]
        public async Task RacingPrunesEitherGetTheLockOrATypedError()
        {
            using var fixture = new RepositoryFixture();
            var failures = new ConcurrentBag<Exception>();
            int held = 0;
            int most = 0;
            using var start = new Barrier(4);
            await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < 100; i++)
                {
                    try
                    {
                        using (fixture.Repository.LockExclusive("prune"))
                        {
                            int now = Interlocked.Increment(ref held);
                            InterlockedMax(ref most, now);
                            Interlocked.Decrement(ref held);
                        }
                    }
                    catch (VmQuiesceException e) when (e.ErrorId == "RepositoryLocked")
                    {
                        // Another prune holds it: the one typed answer expected.
                    }
                    catch (Exception e)
                    {
                        failures.Add(e);
                    }
                }
            })));

            Assert.Empty(failures);
            Assert.Equal(1, most);
        }

        [LinuxRootFact]
        public void AReadOnlyRepositoryIsReadWithoutALockAndSaysWhatThatMeans()
        {
            using var fs = new ScratchFileSystem("size=8m");
            BackupRepository repository = BackupRepository.OpenOrCreate(Path.Combine(fs.Path, "repo"), RepositoryFixture.ChunkSize);
            string disk = Path.Combine(fs.Path, "a.img");
            File.WriteAllBytes(disk, RepositoryFixture.Random(3 * RepositoryFixture.ChunkSize, 1));
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", disk);
            fs.Remount("ro");
            var warnings = new List<string>();

            BackupRepository readOnly = BackupRepository.Open(repository.Path);
            using (RepositoryLock none = readOnly.LockForReading("Test-VmBackup", warnings.Add))
            {
                Assert.False(none.Held);
                Assert.True(readOnly.Verify(readOnly.GetRestorePoint(point.Id), CancellationToken.None).IsValid);
            }

            Assert.Contains("read-only", warnings.Single());
            Assert.Contains("prune", warnings.Single());
            var write = Assert.Throws<VmQuiesceException>(() => readOnly.LockShared("backup"));
            Assert.Equal("RepositoryReadOnly", write.ErrorId);
        }

        private static string WriteLock(RepositoryFixture fixture, string name, JsonObject record)
        {
            string path = Path.Combine(fixture.RepositoryPath, "locks", name);
            File.WriteAllText(path, record.With("since", "2026-01-01T00:00:00Z").ToString());
            return path;
        }

        private static int DeadPid()
        {
            using var process = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
            process.WaitForExit();
            return process.Id;
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
            {
            }
        }
    }
}
