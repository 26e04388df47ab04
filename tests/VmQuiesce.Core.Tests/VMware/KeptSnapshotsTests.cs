using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>-KeepSnapshot's one meaning, and what a prune does with the snapshots the removed points kept.</summary>
    [Collection(VmrunDoubleCollection.Name)]
    public sealed class KeptSnapshotsTests
    {
        private static RestorePoint Backup(RepositoryFixture repository, VmrunDouble vmrun, TestVm vm, bool keep) =>
            new BackupEngine(repository.Repository, workers: 2).Run(
                new VmwareSource(new VmwareSourceOptions("vm", vm.VmxPath, vmrun.Client())),
                new QuiesceOptions { Required = Consistency.Crash, KeepSnapshot = keep },
                null,
                CancellationToken.None).RestorePoint;

        private static IReadOnlyList<string> Prune(RepositoryFixture repository, IEnumerable<RestorePoint> remove, List<string> warnings)
        {
            PrunePlan plan = repository.Repository.PlanRemoval(remove.Select(point => point.Id), e => throw e);
            PruneResult result = repository.Repository.Prune(plan, collectGarbage: true, removeStaleLock: false, CancellationToken.None);
            var removedIds = new HashSet<string>(result.RemovedRestorePoints);
            return KeptSnapshots.ReleaseUnneeded(plan.Remove.Where(point => removedIds.Contains(point.Id)), repository.Repository.ListRestorePoints(),
                new OperationHost(warn: warnings.Add), CancellationToken.None);
        }

        [VmrunDoubleFact]
        public void SnapshotReleased_says_whether_the_snapshot_is_still_on_the_VM()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();

            RestorePoint released = Backup(repository, vmrun, vm, keep: false);
            Assert.True(released.SnapshotReleased);
            Assert.Null(released.Snapshot);
            Assert.Empty(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));

            RestorePoint kept = Backup(repository, vmrun, vm, keep: true);
            Assert.False(kept.SnapshotReleased);
            Assert.Equal(new[] { kept.Snapshot!.Name }, vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.False(repository.Repository.GetRestorePoint(kept.Id).SnapshotReleased);
        }

        [VmrunDoubleFact]
        public void A_prune_deletes_the_snapshots_only_the_removed_points_kept_and_leaves_the_ones_remaining_points_need()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();
            vmrun.Client().Snapshot(vm.VmxPath, "made by hand", CancellationToken.None);
            RestorePoint first = Backup(repository, vmrun, vm, keep: true);
            RestorePoint second = Backup(repository, vmrun, vm, keep: true);
            RestorePoint third = Backup(repository, vmrun, vm, keep: true);
            var warnings = new List<string>();

            IReadOnlyList<string> deleted = Prune(repository, new[] { first, second }, warnings);

            Assert.Equal(new[] { first.Snapshot!.Name, second.Snapshot!.Name }, deleted);
            Assert.Equal(new[] { "made by hand", third.Snapshot!.Name }, vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.Empty(warnings);
            Assert.Contains(vmrun.Calls(), call => call.SequenceEqual(new[] { "-T", "ws", "deleteSnapshot", vm.VmxPath, first.Snapshot.Name }));
        }

        [VmrunDoubleFact]
        public void A_snapshot_vmrun_cannot_delete_is_named_with_the_command_to_run_and_the_prune_goes_on()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();
            RestorePoint first = Backup(repository, vmrun, vm, keep: true);
            Backup(repository, vmrun, vm, keep: true);
            vmrun.Set("VMRUN_DOUBLE_FAIL_COMMAND", "deleteSnapshot");
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: The file is already in use");
            var warnings = new List<string>();

            Assert.Empty(Prune(repository, new[] { first }, warnings));

            string warning = Assert.Single(warnings);
            Assert.Contains(first.Snapshot!.Name, warning, StringComparison.Ordinal);
            Assert.Contains("deleteSnapshot", warning, StringComparison.Ordinal);
            Assert.Contains("The file is already in use", warning, StringComparison.Ordinal);
            Assert.Single(repository.Repository.ListRestorePoints());
        }

        [VmrunDoubleFact]
        public void A_vmrun_only_a_restore_point_names_is_never_run_this_hosts_is_and_VmrunPath_overrides_it()
        {
            using var vmrun = new VmrunDouble();
            // A program someone else could have written, and a manifest naming it: an absolute path to a regular file,
            // which is all a recorded vmrun once had to be to run as root.
            string planted = Path.Combine(vmrun.Root, "planted-vmrun");
            File.Copy(VmrunDouble.ScriptPath, planted);
            string link = Path.Combine(vmrun.Root, "vmrun-link");
            File.CreateSymbolicLink(link, VmrunDouble.ScriptPath);
            var named = new CapturedSnapshot("vmquiesce-x", null, VmwareSource.SourceKind) { VmrunPath = planted, VmrunHostType = "Workstation" };
            var relative = new CapturedSnapshot("vmquiesce-x", null, VmwareSource.SourceKind) { VmrunPath = "bin/vmrun" };

            Assert.Equal(VmrunDouble.ScriptPath, VmwareKeptSnapshots.Connect(named, null).VmrunPath);
            Assert.Equal(VmrunDouble.ScriptPath, VmwareKeptSnapshots.Connect(relative, null).VmrunPath);
            vmrun.Set("VMQUIESCE_TOOL_VMRUN", null);
            VmQuiesceException none = Assert.Throws<VmQuiesceException>(() => VmwareKeptSnapshots.Connect(named, null));
            Assert.Equal("VmrunNotFound", none.ErrorId);
            Assert.DoesNotContain(planted, none.Message, StringComparison.Ordinal);

            Assert.Equal("VmrunPathInvalid", Assert.Throws<VmQuiesceException>(() => VmwareKeptSnapshots.Connect(named, link)).ErrorId);
            Assert.Equal(VmrunDouble.ScriptPath, VmwareKeptSnapshots.Connect(named, VmrunDouble.ScriptPath).VmrunPath);
            var server = new CapturedSnapshot("vmquiesce-x", null, VmwareSource.SourceKind) { VmrunPath = VmrunDouble.ScriptPath, VmrunHostType = "Server" };
            Assert.Equal("VmrunCredentialRequired", Assert.Throws<VmQuiesceException>(() => VmwareKeptSnapshots.Connect(server, VmrunDouble.ScriptPath)).ErrorId);
        }

        [Fact]
        public void Sources_that_take_no_snapshot_they_could_keep_refuse_KeepSnapshot_before_anything_changes()
        {
            var keep = new QuiesceOptions { Required = Consistency.Crash, KeepSnapshot = true };
            string image = Path.Combine(Path.GetTempPath(), "vmquiesce-keep-" + Guid.NewGuid().ToString("N") + ".img");
            File.WriteAllText(image, "disk");
            try
            {
                var plain = Assert.Throws<VmQuiesceException>(() => new PlainImageSource("plain", new[] { image }).OpenConsistentView(keep, CancellationToken.None));
                Assert.Equal("KeepSnapshotNotSupported", plain.ErrorId);
                Assert.Equal("plain", plain.Target);
            }
            finally
            {
                File.Delete(image);
            }

            // Refused before the monitor is even connected: this socket does not exist.
            var qemu = Assert.Throws<VmQuiesceException>(() =>
                new QemuSource(new QemuSourceOptions("guest", Path.Combine(Path.GetTempPath(), "no-such-qmp.sock"))).OpenConsistentView(keep, CancellationToken.None));
            Assert.Equal("KeepSnapshotNotSupported", qemu.ErrorId);
        }
    }
}
