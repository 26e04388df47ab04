using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Restore
{
    /// <summary>Lists the snapshots a restore can revert to: of a running VM, or of a disk image offline.</summary>
    public static class VmSnapshotCatalog
    {
        /// <summary>The internal snapshots of a qcow2 disk image (qemu-img info -U: also while a VM runs from it); none for other images.</summary>
        public static IReadOnlyList<VmSnapshot> ForImage(string imagePath, CancellationToken cancel) =>
            QemuImage.Snapshots(imagePath, forceShare: true, cancel);

        /// <summary>The snapshots of a VM target from Get-BackupVm, asked from the running hypervisor.</summary>
        public static IReadOnlyList<VmSnapshot> ForVm(BackupVm vm, CancellationToken cancel)
        {
            if (vm is ISnapshotListable listable)
            {
                return listable.ListSnapshots(cancel);
            }

            throw new VmQuiesceException("SnapshotListingNotSupported", FailureKind.NotSupported,
                $"Listing the snapshots of VM '{vm.Name}' of kind '{vm.Kind}' is not supported yet; this VmQuiesce lists QEMU VMs and qcow2 images.", vm)
            {
                Remedy = "Give the VM's disk image with -Path, or use the hypervisor's own tool.",
            };
        }
    }
}
