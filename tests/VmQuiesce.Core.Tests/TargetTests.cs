using System;
using System.IO;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    public class TargetTests
    {
        [Fact]
        public void EachTargetTypeOffersTheCapabilitiesItsHypervisorHas()
        {
            BackupVm qemu = new QemuVm("web01", "/run/web01.qmp", "/run/web01.qga");
            BackupVm vmware = new VmwareVm("db01", "/vms/db01/db01.vmx", new VmrunConnection("/opt/vmrun", VmwareHostType.Workstation));
            BackupVm hyperV = new HyperVVm("sql01", Guid.NewGuid(), "Running", "E:\\VMs\\sql01.vmcx", new[] { "E:\\VMs\\sql01.vmcx" }, Array.Empty<string>());
            BackupVm files = new PlainImageVm("plain", new[] { "/images/plain.img" });

            Assert.True(qemu is IReadinessCheckable && qemu is ISnapshotListable && !(qemu is IHostVssTarget));
            Assert.True(vmware is IHostVssTarget && !(vmware is IReadinessCheckable) && !(vmware is ISnapshotListable));
            Assert.True(hyperV is IHostVssTarget && !(hyperV is IReadinessCheckable) && !(hyperV is ISnapshotListable));
            Assert.False(files is IReadinessCheckable || files is ISnapshotListable || files is IHostVssTarget);
        }

        [Fact]
        public void APlainImageVmIsAFilesTargetOverFullPathsThatOpensAPlainImageSource()
        {
            string image = Path.Combine(Path.GetTempPath(), "plain.img");

            var vm = new PlainImageVm("plain", new[] { image });

            Assert.Equal("Files", vm.Kind);
            Assert.Equal(Path.GetTempPath().TrimEnd(Path.DirectorySeparatorChar), vm.Location);
            Assert.Equal(image, vm.Details["Files"]);
            var source = Assert.IsType<PlainImageSource>(vm.OpenSource());
            Assert.Equal("plain", source.VmName);
            Assert.Equal("Files", source.Kind);
        }

        [Fact]
        public void AHyperVVmWithHostVssKeepsItsIdentityAndDetails()
        {
            var id = Guid.NewGuid();
            var vm = new HyperVVm("sql01", id, "Off", "E:\\VMs\\sql01.vmcx", new[] { "E:\\VMs\\sql01.vmcx", "E:\\VMs\\sql01.vhdx" }, new[] { "E:\\VMs\\sql01.vhdx" });

            var full = Assert.IsType<HyperVVm>(HostVssSource.ForVm(vm, VssBackupType.Full));

            Assert.Equal(VssBackupType.Full, full.BackupType);
            Assert.Equal(VssBackupType.Copy, vm.BackupType);
            Assert.Equal(vm.Details, full.Details);
            Assert.Equal(id.ToString(), full.Details["Id"]);
        }
    }
}
