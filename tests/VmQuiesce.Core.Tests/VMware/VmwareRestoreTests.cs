using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    [Collection(VmrunDoubleCollection.Name)]
    public sealed class VmwareRestoreTests
    {
        [VmrunDoubleFact]
        public void A_damaged_VM_folder_comes_back_and_reverts_to_the_snapshot_the_backup_captured()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();
            VmrunClient client = vmrun.Client();
            client.Start(vm.VmxPath, CancellationToken.None);
            vm.GuestWrites("before;");
            var options = new QuiesceOptions { Required = Consistency.Crash, KeepSnapshot = true, PostThaw = _ => vm.GuestWrites("after;") };
            RestorePoint point = new BackupEngine(repository.Repository, workers: 2)
                .Run(new VmwareSource(new VmwareSourceOptions("vm", vm.VmxPath, client)), options, null, CancellationToken.None).RestorePoint;
            client.Stop(vm.VmxPath, hard: true, CancellationToken.None);
            File.WriteAllText(vm.File("system.vmdk"), "damaged");
            File.Delete(vm.File("vm.vmsd"));

            // No vmrun given: the revert runs the one the backup recorded (the double; no VMware is installed here).
            var engine = new RestoreEngine(repository.Repository, SnapshotReverters.Default);
            RestoreResult result = engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None);

            Assert.Equal(RevertStatus.Reverted, result.RevertValue);
            Assert.Contains(point.Snapshot!.Name, result.RevertDetail);
            Assert.Equal("system-base;before;", File.ReadAllText(vm.File("system.vmdk")));
            Assert.Contains(point.Snapshot.Name, client.ListSnapshots(vm.VmxPath, CancellationToken.None));
            // vmrun gave the reverted VM fresh deltas: nothing written after the snapshot survives.
            Assert.All(vm.CurrentDisks(), disk => Assert.DoesNotContain("after;", File.Exists(vm.File(disk)) ? File.ReadAllText(vm.File(disk)) : string.Empty));
        }
    }
}
