using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources.WindowsVss;
using VmQuiesce.Core.Sources.WindowsVss.Native;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    /// <summary>The real Windows side of the seam; the full requester run is in tests/pester/HostVss.Windows.Tests.ps1.</summary>
    public class WindowsVssHostTests
    {
        [WindowsFact]
        public void TheVolumeOfASystemFileIsItsDriveAndAVolumeGuidName()
        {
            string path = Path.Combine(Environment.SystemDirectory, "kernel32.dll");

            VssVolume volume = new WindowsVssHost().GetVolume(path);

            Assert.Equal(Path.GetPathRoot(path), volume.MountPoint, StringComparer.OrdinalIgnoreCase);
            Assert.StartsWith("\\\\?\\Volume{", volume.VolumeName, StringComparison.Ordinal);
            Assert.EndsWith("}\\", volume.VolumeName, StringComparison.Ordinal);
        }

        [WindowsFact]
        public void AMissingVolumeIsVolumeNotFound()
        {
            char unused = "ZYXWVUTSRQPONMLKJIHGFED".First(letter => !DriveInfo.GetDrives().Any(d => char.ToUpperInvariant(d.Name[0]) == letter));

            var failure = Assert.Throws<VmQuiesceException>(() => new WindowsVssHost().GetVolume(unused + ":\\VMs\\vm.vmx"));

            Assert.Equal("VolumeNotFound", failure.ErrorId);
        }

        [WindowsFact]
        public void TheServiceManagerMapsADisplayNameToItsServiceName()
        {
            var host = new WindowsVssHost();

            Assert.Equal("VSS", host.FindServiceByDisplayName("Volume Shadow Copy"), StringComparer.OrdinalIgnoreCase);
            Assert.Null(host.FindServiceByDisplayName("No Such Service " + Guid.NewGuid().ToString("N")));
        }

        [WindowsFact]
        public void TheRealRequesterListsTheSystemWriterOrIsRefusedWithoutRights()
        {
            var host = new WindowsVssHost();
            if (!host.HasBackupRights)
            {
                Assert.Equal("VssRequiresElevation", Assert.Throws<VmQuiesceException>(() => HostVssSource.GetWriters(OperationHost.None, CancellationToken.None)).ErrorId);
                return;
            }

            VssWriterInfo system = Assert.Single(HostVssSource.GetWriters(OperationHost.None, CancellationToken.None), w => w.Name == "System Writer");
            Assert.Equal(new Guid("e8132975-6f93-4464-a53e-1050253ae220"), system.WriterId);
            Assert.Equal("CryptSvc", system.Service);
        }

        [WindowsFact]
        public void EveryRecordVssKeepsUnderItsDiagnosticKeyParsesOnceTheWritersHaveBeenAsked()
        {
            var host = new WindowsVssHost();
            if (host.HasBackupRights)
            {
                // Gathering metadata makes every writer record IDENTIFY, so there is something to read.
                _ = HostVssSource.GetWriters(OperationHost.None, CancellationToken.None);
                Assert.NotEmpty(host.ReadDiagnostics());
            }

            foreach (VssDiagnosticValue value in host.ReadDiagnostics())
            {
                Assert.True(VssDiagnosticEvent.Parse(value, out string? problem) != null, problem);
            }
        }
    }
}
