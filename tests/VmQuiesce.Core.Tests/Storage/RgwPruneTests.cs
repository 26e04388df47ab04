using System;
using System.Globalization;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Prune on a repository on a real Ceph RGW, with its lock objects: a prune never runs while a backup holds
    /// its lock object, a backup never starts while a prune runs, and two writers plus a prune at once leave
    /// every published point whole.
    /// </summary>
    [Collection(RgwCollection.Name)]
    public sealed class RgwPruneTests : RgwTestBase
    {
        public RgwPruneTests(RgwServer server)
            : base(server)
        {
        }

        [RgwFact]
        public void A_prune_waits_for_a_backups_lock_object_and_a_backup_for_a_prunes()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(Host(storage), Chunk, key: null);
            RestorePoint old = RepositoryFixture.BackUp(repository, "old", Local.WriteFile("old.img", RepositoryFixture.Random(2 * Chunk, 1)));
            PrunePlan plan = repository.PlanRemoval(new[] { old.Id }, e => throw e);

            using (repository.LockShared("Invoke-VmQuiescedBackup of 'web'"))
            {
                var busy = Assert.Throws<VmQuiesceException>(() => repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None));
                Assert.Equal("RepositoryLocked", busy.ErrorId);
                Assert.Contains("Invoke-VmQuiescedBackup of 'web'", busy.Message);
            }

            Assert.Single(repository.ListRestorePoints());
            Assert.Equal(2, storage.List("chunks/").Count());
            using (ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)"))
            {
                var busy = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(repository, "web", Local.WriteFile("web.img", RepositoryFixture.Random(Chunk, 2))));
                Assert.Equal("RepositoryLocked", busy.ErrorId);
                Assert.Contains("Remove-VmBackup (prune)", busy.Message);
            }

            PruneResult result = repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None);

            Assert.Equal(new[] { old.Id }, result.RemovedRestorePoints);
            Assert.Equal(2, result.RemovedChunks);
            Assert.Equal(new[] { "vmquiesce-repository.json" }, storage.List(string.Empty).Select(item => item.Key));
        }

        [RgwFact]
        public void Two_writers_and_a_prune_at_once_leave_every_published_point_whole()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepository first = ObjectRepository.OpenOrCreate(Host(storage), Chunk, key: null);
            using ObjectRepository second = ObjectRepository.Open(Host(storage));
            using ObjectRepository pruner = ObjectRepository.Open(Host(storage));
            // A point to prune whose chunks the writers also store: a prune that ran beside them would delete those.
            byte[] shared = RepositoryFixture.Random(8 * Chunk, 3);
            RestorePoint old = RepositoryFixture.BackUp(first, "old", Local.WriteFile("old.img", shared));
            string diskA = Local.WriteFile("a.img", RepositoryFixture.Concat(shared, RepositoryFixture.Random(24 * Chunk, 4)));
            string diskB = Local.WriteFile("b.img", RepositoryFixture.Concat(RepositoryFixture.Random(24 * Chunk, 5), shared));
            PrunePlan plan = pruner.PlanRemoval(new[] { old.Id }, e => throw e);

            Task<RestorePoint> a = Task.Run(() => RepositoryFixture.BackUp(first, "a", diskA));
            Task<RestorePoint> b = Task.Run(() => RepositoryFixture.BackUp(second, "b", diskB));
            int refused = 0;
            bool pruned = false;
            while (!(a.IsCompleted && b.IsCompleted))
            {
                try
                {
                    pruner.Prune(pruner.PlanRemoval(plan.Remove.Select(point => point.Id), _ => { }), collectGarbage: true, removeStaleLock: false, CancellationToken.None);
                    pruned = true;
                }
                catch (VmQuiesceException e) when (e.ErrorId == "RepositoryLocked")
                {
                    refused++;
                }
            }

            // Once both are done no lock object is left, so a prune runs.
            if (!pruned)
            {
                pruner.Prune(pruner.PlanRemoval(plan.Remove.Select(point => point.Id), _ => { }), collectGarbage: true, removeStaleLock: false, CancellationToken.None);
            }

            // A backup refused by the prune's lock fails as a whole and publishes nothing; one that ran is whole.
            var published = new[] { a, b }.Where(task => task.Status == TaskStatus.RanToCompletion).Select(task => task.Result).ToList();
            foreach (Task<RestorePoint> failed in new[] { a, b }.Where(task => task.IsFaulted))
            {
                Assert.Equal("RepositoryLocked", Assert.IsType<VmQuiesceException>(failed.Exception!.InnerException).ErrorId);
            }

            Assert.True(refused > 0 || published.Count < 2, "the prune and the backups never met");
            Assert.DoesNotContain(old.Id, pruner.ListRestorePoints().Select(point => point.Id));
            foreach (RestorePoint point in published)
            {
                Assert.True(RestorePointVerifier.Verify(pruner, pruner.GetRestorePoint(point.Id), CancellationToken.None).IsValid, $"restore point {point.VmName} lost chunks to the prune");
            }

            Assert.Empty(storage.List("locks/"));
        }

        [RgwFact]
        public void Another_hosts_lock_object_is_stale_only_once_unrefreshed_and_prune_then_says_what_to_do()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(Host(storage), Chunk, key: null);
            RestorePoint old = RepositoryFixture.BackUp(repository, "old", Local.WriteFile("old.img", RepositoryFixture.Random(Chunk, 6)));
            PrunePlan plan = repository.PlanRemoval(new[] { old.Id }, e => throw e);
            Plant(storage, "locks/shared-stale.json", DateTime.UtcNow.AddMinutes(-31));

            var stale = Assert.Throws<VmQuiesceException>(() => repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None));
            Assert.Equal("RepositoryLockStale", stale.ErrorId);
            Assert.Contains("shared-stale.json", stale.Message);
            Assert.Contains("backup-host-2", stale.Message);
            Assert.Contains("-RemoveStaleLock", stale.Remedy);

            // Removing stale locks never touches one refreshed within the stale age: that host may still be writing.
            Plant(storage, "locks/shared-fresh.json", DateTime.UtcNow.AddMinutes(-10));
            var warnings = new System.Collections.Generic.List<string>();
            var busy = Assert.Throws<VmQuiesceException>(() => repository.Prune(plan, collectGarbage: true, removeStaleLock: true, CancellationToken.None, warnings.Add));
            Assert.Equal("RepositoryLocked", busy.ErrorId);
            Assert.Contains("backup-host-2", busy.Message);
            Assert.True(storage.Exists("locks/shared-fresh.json"));
            Assert.Single(repository.ListRestorePoints());

            storage.Delete("locks/shared-fresh.json");
            repository.Prune(plan, collectGarbage: true, removeStaleLock: true, CancellationToken.None, warnings.Add);
            Assert.Contains(warnings, warning => warning.Contains("Removed the stale lock object") && warning.Contains("shared-stale.json"));
            Assert.Empty(repository.ListRestorePoints());
            Assert.Empty(storage.List("locks/"));
        }

        [RgwFact]
        public void A_held_lock_object_is_refreshed_so_no_other_host_takes_it_for_stale()
        {
            using S3ObjectStorage storage = Server.NewStorage();
            using ObjectRepositoryLock held = ObjectRepositoryLock.AcquireShared(storage, "Invoke-VmQuiescedBackup");
            string key = Assert.Single(storage.List("locks/")).Key;
            JsonObject taken = JsonText.ParseObject(Encoding.UTF8.GetString(storage.ReadAll(key, 64 * 1024)));
            // As its holder's refreshes would look from another host had they stopped 40 minutes ago.
            Plant(storage, key, DateTime.UtcNow.AddMinutes(-40));
            Assert.Equal("RepositoryLockStale", Assert.Throws<VmQuiesceException>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)")).ErrorId);

            held.Refresh();

            JsonObject refreshed = JsonText.ParseObject(Encoding.UTF8.GetString(storage.ReadAll(key, 64 * 1024)));
            Assert.Equal(taken.GetString("since"), refreshed.GetString("since"));
            Assert.Equal(Environment.MachineName, refreshed.GetString("host"));
            Assert.True(DateTime.UtcNow - DateTime.Parse(refreshed.GetString("refreshed"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind).ToUniversalTime() < TimeSpan.FromMinutes(1));
            Assert.Equal("RepositoryLocked", Assert.Throws<VmQuiesceException>(() => ObjectRepositoryLock.AcquireExclusive(storage, "Remove-VmBackup (prune)", removeStale: true)).ErrorId);
            Assert.True(storage.Exists(key));
        }

        /// <summary>A lock object as a backup on the host backup-host-2 writes it, last refreshed at <paramref name="refreshed"/>.</summary>
        private static void Plant(IObjectStorage storage, string key, DateTime refreshed) =>
            storage.Replace(key, new[] { new ArraySegment<byte>(Encoding.UTF8.GetBytes(JsonText.Serialize(new JsonObject()
                .With("pid", 4242)
                .With("host", "backup-host-2")
                .With("purpose", "Invoke-VmQuiescedBackup")
                .With("since", refreshed.AddHours(-1).ToString("o", CultureInfo.InvariantCulture))
                .With("refreshed", refreshed.ToString("o", CultureInfo.InvariantCulture)), indented: true))) });

        /// <summary>Another client of the same bucket and prefix, as another host would have.</summary>
        private S3ObjectStorage Host(S3ObjectStorage storage) => new S3ObjectStorage(storage.Address, Server.Settings());
    }
}
