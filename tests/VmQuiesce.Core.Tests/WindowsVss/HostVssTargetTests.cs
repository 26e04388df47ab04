using System.Collections.Generic;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class HostVssTargetTests
    {
        [Fact]
        public void AQemuVmIsRefusedNamingItsKindBeforeAnythingHappens()
        {
            bool opened = false;
            var qemu = new BackupVm("db01", "Qemu", "/run/db01.qmp", new Dictionary<string, string>(), _ =>
            {
                opened = true;
                return null!;
            });

            var error = Assert.Throws<VmQuiesceException>(() => HostVssSource.ForVm(qemu, VssBackupType.Copy));

            Assert.Equal("HostVssNotSupportedForKind", error.ErrorId);
            Assert.Contains("'db01' is a Qemu VM", error.Message);
            Assert.Same(qemu, error.Target);
            Assert.False(opened);
        }

        [UnixFact]
        public void AVmwareVmOffWindowsIsWindowsOnly()
        {
            var vmware = new BackupVm("sql01", "VMware", "/vms/sql01/sql01.vmx", new Dictionary<string, string>(), _ => null!);

            Assert.Equal("WindowsOnly", Assert.Throws<VmQuiesceException>(() => HostVssSource.ForVm(vmware, VssBackupType.Copy)).ErrorId);
        }
    }
}
