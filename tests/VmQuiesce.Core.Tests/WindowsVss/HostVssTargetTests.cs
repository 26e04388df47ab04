using System.Collections.Generic;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class HostVssTargetTests
    {
        [Fact]
        public void AQemuVmIsRefusedNamingItsKindBeforeAnythingHappens()
        {
            var qemu = new OpenRecordingVm("db01", "Qemu", "/run/db01.qmp");

            var error = Assert.Throws<VmQuiesceException>(() => HostVssSource.ForVm(qemu, VssBackupType.Copy));

            Assert.Equal("HostVssNotSupportedForKind", error.ErrorId);
            Assert.Contains("'db01' is a Qemu VM", error.Message);
            Assert.Same(qemu, error.Target);
            Assert.False(qemu.Opened);
        }

        [UnixFact]
        public void AVmwareVmOffWindowsIsWindowsOnly()
        {
            var vmware = new VmwareVm("sql01", "/vms/sql01/sql01.vmx", new VmrunConnection("/opt/vmrun", VmwareHostType.Workstation));

            Assert.Equal("WindowsOnly", Assert.Throws<VmQuiesceException>(() => HostVssSource.ForVm(vmware, VssBackupType.Copy)).ErrorId);
        }

        /// <summary>A target without the HostVss capability that records whether its own source was opened.</summary>
        private sealed class OpenRecordingVm : BackupVm
        {
            public OpenRecordingVm(string name, string kind, string location)
                : base(name, location)
            {
                Kind = kind;
            }

            public override string Kind { get; }

            public bool Opened { get; private set; }

            protected override IBackupSource CreateSource(IOperationHost host)
            {
                Opened = true;
                return null!;
            }

            protected override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>();
        }
    }
}
