using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    public class RetentionAndPruneTests
    {
        private static RestorePoint Point(string id, string vm, int month, int day, int hour) =>
            new RestorePoint(id, vm, "host", "Files", new DateTime(2026, month, day, hour, 0, 0, DateTimeKind.Utc), new DateTime(2026, month, day, hour, 1, 0, DateTimeKind.Utc),
                null, new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, "None"), true, null, RepositoryFixture.ChunkSize, 0, 0, Array.Empty<RestorePointFile>());

        [Fact]
        public void EachRuleKeepsTheNewestPointPerBucketAndAPointStaysWhenAnyRuleKeepsIt()
        {
            var points = new[]
            {
                Point("p1", "vm", 1, 5, 10),  // 2026-W02, January
                Point("p2", "vm", 1, 20, 10), // 2026-W04, January
                Point("p3", "vm", 2, 2, 9),   // Monday 2026-W06
                Point("p4", "vm", 2, 2, 18),
                Point("p5", "vm", 2, 3, 9),
                Point("p6", "vm", 2, 4, 9),
                Point("p7", "vm", 2, 4, 21),
            };
            var policy = new RetentionPolicy { KeepLast = 1, KeepDaily = 2, KeepWeekly = 2, KeepMonthly = 3, TimeZone = TimeZoneInfo.Utc };

            var kept = policy.SelectKept(points).Select(point => point.Id).OrderBy(id => id).ToList();

            // KeepLast 1: p7. KeepDaily 2: p7 (Feb 4), p5 (Feb 3). KeepWeekly 2: p7 (W06), p2 (W04).
            // KeepMonthly 3: p7 (Feb), p2 (Jan), and no third month.
            Assert.Equal(new[] { "p2", "p5", "p7" }, kept);
        }

        [Fact]
        public void PointsOfOneVmGroupByItsUuidWhateverItWasCalledAndTheUuidIsRecorded()
        {
            using var fixture = new RepositoryFixture();
            var uuid = Guid.NewGuid();
            // One VM backed up under two names (discovery and a socket used to name it differently); another VM shares a name.
            foreach ((string id, string vm, Guid? vmUuid, int day) in new[] { ("a1", "qmp-77", (Guid?)uuid, 1), ("a2", "web01", uuid, 2), ("a3", "web01", uuid, 3), ("b1", "web01", (Guid?)null, 1) })
            {
                fixture.Repository.Publish(new RestorePoint(id, vm, "host", "Qemu", new DateTime(2026, 3, day, 1, 0, 0, DateTimeKind.Utc), new DateTime(2026, 3, day, 1, 1, 0, DateTimeKind.Utc),
                    null, new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, "None"), true, null, RepositoryFixture.ChunkSize, 0, 0, Array.Empty<RestorePointFile>()) { VmUuid = vmUuid });
            }

            Assert.Equal(uuid, BackupRepository.Open(fixture.RepositoryPath).GetRestorePoint("a1").VmUuid);
            PrunePlan plan = fixture.Repository.PlanRetention(new RetentionPolicy { KeepLast = 1 }, _ => true);

            Assert.Equal(new[] { "a1", "a2" }, plan.Remove.Select(point => point.Id).OrderBy(id => id));
            Assert.Equal(new[] { "a3", "b1" }, plan.Keep.Select(point => point.Id).OrderBy(id => id));
        }

        [Fact]
        public void KeepLastAloneKeepsExactlyTheNewest()
        {
            var points = Enumerable.Range(1, 6).Select(day => Point("d" + day, "vm", 3, day, 12)).ToList();
            var kept = new RetentionPolicy { KeepLast = 2 }.SelectKept(points).Select(point => point.Id).OrderBy(id => id);
            Assert.Equal(new[] { "d5", "d6" }, kept);
        }

        [Fact]
        public void RetentionAppliesPerVmAndLeavesOtherVmsAlone()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(1000, 1));
            var made = new List<RestorePoint>();
            foreach (string vm in new[] { "web", "db", "web", "db", "web", "mail" })
            {
                made.Add(fixture.BackUp(vm, disk));
            }

            PrunePlan plan = fixture.Repository.PlanRetention(new RetentionPolicy { KeepLast = 1 }, vm => vm != "mail");

            Assert.Equal(new[] { made[0].Id, made[1].Id, made[2].Id }.OrderBy(id => id), plan.Remove.Select(point => point.Id).OrderBy(id => id));
            fixture.Repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None);
            Assert.Equal(new[] { made[3].Id, made[4].Id, made[5].Id }.OrderBy(id => id), fixture.Repository.ListRestorePoints().Select(point => point.Id).OrderBy(id => id));
        }

        [Fact]
        public void AnEmptyPolicyIsRefused()
        {
            using var fixture = new RepositoryFixture();
            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.PlanRetention(new RetentionPolicy(), _ => true));
            Assert.Equal("RetentionPolicyEmpty", e.ErrorId);
        }

        [Fact]
        public void PruneRemovesOnlyChunksNoRemainingPointUsesAndTheTempLeftovers()
        {
            using var fixture = new RepositoryFixture();
            byte[] shared = RepositoryFixture.Random(RepositoryFixture.ChunkSize, 2);
            RestorePoint old = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Concat(shared, RepositoryFixture.Random(RepositoryFixture.ChunkSize, 3))));
            RestorePoint recent = fixture.BackUp("vm1", fixture.WriteFile("b.img", RepositoryFixture.Concat(shared, RepositoryFixture.Random(RepositoryFixture.ChunkSize, 4))));
            string leftover = Path.Combine(fixture.RepositoryPath, "chunks", "ab", ".tmp-abandoned");
            File.WriteAllText(leftover, "half a chunk");
            string leftoverManifest = Path.Combine(fixture.RepositoryPath, "points", ".tmp-x.json.123");
            File.WriteAllText(leftoverManifest, "{");
            Assert.Equal(2, fixture.Repository.ListRestorePoints().Count);

            PrunePlan plan = fixture.Repository.PlanRemoval(new[] { old.Id }, e => throw e);
            (long estimatedChunks, _) = fixture.Repository.EstimateGarbage(plan);
            PruneResult result = fixture.Repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None);

            Assert.Equal(1, estimatedChunks);
            Assert.Equal(new[] { old.Id }, result.RemovedRestorePoints);
            Assert.Equal(1, result.RemovedChunks);
            Assert.Equal(2, result.RemovedTempFiles);
            Assert.False(File.Exists(leftover));
            Assert.Equal(2, fixture.ChunkFiles().Count);
            Assert.True(fixture.Repository.Verify(recent, CancellationToken.None).IsValid);
        }

        [Fact]
        public void PruneRemovesNothingWhileAManifestIsUnreadable()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint old = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 5)));
            File.WriteAllText(Path.Combine(fixture.RepositoryPath, "points", "20260101T000000Z-broken.json"), "{ not json");
            PrunePlan plan = fixture.Repository.PlanRemoval(new[] { old.Id }, e => throw e);

            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.Prune(plan, true, false, CancellationToken.None));

            Assert.Equal("RepositoryManifestUnreadable", e.ErrorId);
            Assert.True(File.Exists(Path.Combine(fixture.RepositoryPath, "points", old.Id + ".json")));
        }

        [Fact]
        public void BackupsAndPruneExcludeEachOther()
        {
            using var fixture = new RepositoryFixture();
            using (fixture.Repository.LockShared("backup one"))
            using (fixture.Repository.LockShared("backup two"))
            {
                var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockExclusive("prune"));
                Assert.Equal("RepositoryLocked", e.ErrorId);
                Assert.Contains("backup", e.Message);
            }

            using (fixture.Repository.LockExclusive("prune"))
            {
                var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup"));
                Assert.Equal("RepositoryLocked", e.ErrorId);
            }

            using (fixture.Repository.LockExclusive("prune again"))
            {
            }

            Assert.Empty(Directory.GetFiles(Path.Combine(fixture.RepositoryPath, "locks")));
        }
    
        [Fact]
        public void AConflictCopyOfAManifestIsNotAPointAndNeverReducesWhatIsKept()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(3 * RepositoryFixture.ChunkSize, 1));
            RestorePoint older = fixture.BackUp("vm1", disk);
            File.WriteAllBytes(disk, RepositoryFixture.Random(3 * RepositoryFixture.ChunkSize, 2));
            RestorePoint newer = fixture.BackUp("vm1", disk);
            string manifest = Path.Combine(fixture.RepositoryPath, "points", newer.Id + ".json");
            string copy = Path.Combine(fixture.RepositoryPath, "points", newer.Id + " (conflicted copy).json");
            File.Copy(manifest, copy);
            var problems = new List<VmQuiesceException>();
            Assert.Equal(new[] { older.Id, newer.Id }, fixture.Repository.ListRestorePoints(problems.Add).Select(point => point.Id));
            Assert.Equal("RestorePointIdMismatch", problems.Single().ErrorId);

            var warnings = new List<string>();
            PrunePlan plan = fixture.Repository.PlanRetention(new RetentionPolicy { KeepLast = 1 }, _ => true);
            PruneResult result = fixture.Repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None, warnings.Add);

            Assert.Equal(new[] { older.Id }, result.RemovedRestorePoints);
            Assert.True(File.Exists(manifest));
            Assert.True(File.Exists(copy));
            Assert.Contains(copy, warnings.Single());
            Assert.True(fixture.Repository.Verify(fixture.Repository.GetRestorePoint(newer.Id), CancellationToken.None).IsValid);
        }

        [Fact]
        public void PruneDeletesOnlyTheManifestFilesItReadNeverAPathBuiltFromAnId()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 1));
            RestorePoint point = fixture.BackUp("vm1", disk);
            fixture.BackUp("vm1", disk);
            string victim = fixture.WriteFile("victim.json", new byte[] { 1, 2, 3 });
            string hostile = Path.Combine(fixture.RepositoryPath, "points", "20200101T000000Z-00000000.json");
            string text = File.ReadAllText(Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json"));
            File.WriteAllText(hostile, text.Replace($"\"id\": \"{point.Id}\"", $"\"id\": \"{Path.Combine(fixture.Root, "victim")}\"", StringComparison.Ordinal)
                .Replace(point.StartTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), "2020-01-01", StringComparison.Ordinal));

            Assert.Contains($"\"id\": \"{Path.Combine(fixture.Root, "victim")}\"", File.ReadAllText(hostile));
            Assert.Contains("\"startTime\": \"2020-01-01", File.ReadAllText(hostile));

            fixture.Repository.Prune(fixture.Repository.PlanRetention(new RetentionPolicy { KeepLast = 1 }, _ => true), true, false, CancellationToken.None);

            Assert.True(File.Exists(victim));
            Assert.True(File.Exists(hostile));
        }

        [Fact]
        public void RetentionNeverRemovesTheLastPointOfAVmEvenWhenTheKeptOnesVanishedSinceThePlan()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 1));
            RestorePoint first = fixture.BackUp("vm1", disk);
            RestorePoint second = fixture.BackUp("vm1", disk);
            RestorePoint third = fixture.BackUp("vm1", disk);
            PrunePlan plan = fixture.Repository.PlanRetention(new RetentionPolicy { KeepLast = 1 }, _ => true);
            File.Delete(Path.Combine(fixture.RepositoryPath, "points", third.Id + ".json"));
            var warnings = new List<string>();

            PruneResult result = fixture.Repository.Prune(plan, true, false, CancellationToken.None, warnings.Add);

            Assert.Equal(new[] { first.Id }, result.RemovedRestorePoints);
            Assert.Equal(second.Id, fixture.Repository.ListRestorePoints().Single().Id);
            Assert.Contains(second.Id, warnings.Single());
            // Asked by id, it goes.
            fixture.Repository.Prune(fixture.Repository.PlanRemoval(new[] { second.Id }, e => throw e), true, false, CancellationToken.None);
            Assert.Empty(fixture.Repository.ListRestorePoints());
        }

        [LinuxFact]
        public void PruneDeletesNothingThroughAChunkFolderSwappedForALinkAfterTheRepositoryWasOpened()
        {
            using var fixture = new RepositoryFixture();
            fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 1)));
            string outside = Path.Combine(fixture.Root, "outside");
            Directory.CreateDirectory(outside);
            string victim = Path.Combine(outside, "aa" + new string('0', 62));
            File.WriteAllText(victim, "someone's file with a chunk's name");
            string fanOut = Path.Combine(fixture.RepositoryPath, "chunks", "aa");
            Directory.Delete(fanOut);
            File.CreateSymbolicLink(fanOut, outside);

            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.Prune(fixture.Repository.PlanRemoval(Array.Empty<string>(), x => throw x), true, false, CancellationToken.None));

            Assert.Equal("RepositoryLayoutUnsafe", e.ErrorId);
            Assert.True(File.Exists(victim));
        }

        [LinuxFact]
        public void PruneDeletesNothingThroughTheChunksFolderSwappedForALinkToAnotherRepositorysAfterTheRepositoryWasOpened()
        {
            using var fixture = new RepositoryFixture();
            fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(2 * RepositoryFixture.ChunkSize, 1)));
            // Another repository, which whoever can write this one cannot: none of its chunks is referenced here.
            string otherPath = Path.Combine(fixture.Root, "other");
            BackupRepository other = BackupRepository.OpenOrCreate(otherPath, RepositoryFixture.ChunkSize);
            RestorePoint victim = RepositoryFixture.BackUp(other, "vm2", fixture.WriteFile("b.img", RepositoryFixture.Random(2 * RepositoryFixture.ChunkSize, 2)));
            string chunks = Path.Combine(fixture.RepositoryPath, "chunks");
            Directory.Move(chunks, chunks + ".old");
            File.CreateSymbolicLink(chunks, Path.Combine(otherPath, "chunks"));

            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.Prune(fixture.Repository.PlanRemoval(Array.Empty<string>(), x => throw x), true, false, CancellationToken.None));

            Assert.Equal("RepositoryLayoutUnsafe", e.ErrorId);
            Assert.True(other.Verify(victim, CancellationToken.None).IsValid);
        }

        [LinuxFact]
        public void ADamagedChunkIsNotRecordedThroughTheRepositoryFolderSwappedForALinkAfterItWasOpened()
        {
            using var fixture = new RepositoryFixture();
            var damaged = new DamagedChunks(fixture.RepositoryPath);
            string outside = Path.Combine(fixture.Root, "outside");
            Directory.CreateDirectory(outside);
            Directory.Move(fixture.RepositoryPath, fixture.RepositoryPath + ".old");
            File.CreateSymbolicLink(fixture.RepositoryPath, outside);

            var e = Assert.Throws<FolderTrustException>(() => damaged.Record(new string('a', 64)));

            Assert.Equal(FolderProblem.Link, e.Problem);
            Assert.Empty(Directory.EnumerateFileSystemEntries(outside));
        }

        [LinuxFact]
        public void PruneDeletesNothingThroughTheDamagedFolderSwappedForALink()
        {
            using var fixture = new RepositoryFixture();
            fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 1)));
            string outside = Path.Combine(fixture.Root, "outside");
            Directory.CreateDirectory(outside);
            string victim = Path.Combine(outside, "ab" + new string('0', 62));
            File.WriteAllText(victim, "someone's file with a chunk's name");
            string damaged = Path.Combine(fixture.RepositoryPath, "damaged");
            if (Directory.Exists(damaged))
            {
                Directory.Delete(damaged, recursive: true);
            }

            File.CreateSymbolicLink(damaged, outside);

            var e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.Prune(fixture.Repository.PlanRemoval(Array.Empty<string>(), x => throw x), true, false, CancellationToken.None));

            Assert.Equal("RepositoryLayoutUnsafe", e.ErrorId);
            Assert.True(File.Exists(victim));
        }
    }
}
