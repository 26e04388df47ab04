using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.VMware;

namespace VmQuiesce.Core.Restore
{
    /// <summary>
    /// VMware snapshots: vmrun revertToSnapshot on the restored .vmx once the files are in place, because
    /// vmrun reverts a VM (it rewrites the .vmx and makes fresh deltas), not loose files.
    /// </summary>
    public sealed class VmwareSnapshotReverter : ISnapshotReverter
    {
        private readonly Func<VmrunConnection> _connect;

        /// <param name="connect">How to reach vmrun; by default the local product (Workstation, Fusion on macOS), found as Get-BackupVm finds it.</param>
        public VmwareSnapshotReverter(Func<VmrunConnection>? connect = null)
        {
            _connect = connect ?? (() => VmwareTargets.Connect(null, HostPlatform.IsMacOS ? VmwareHostType.Fusion : VmwareHostType.Workstation, null, null));
        }

        public string Kind => VmwareSource.SourceKind;

        public RevertStage Stage => RevertStage.AfterReplace;

        public string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel)
        {
            string? vmx = restoredFiles.FirstOrDefault(file => string.Equals(Path.GetExtension(file), ".vmx", StringComparison.OrdinalIgnoreCase));
            if (vmx == null)
            {
                throw new VmQuiesceException("VmxNotRestored", FailureKind.ObjectNotFound,
                    $"The restored files hold no .vmx, so vmrun cannot revert the VM to snapshot '{snapshot.Name}'.", snapshot)
                {
                    Remedy = "Check the restore point with Get-VmBackup (its Files); restore with -SkipRevert to get the files as they were copied.",
                };
            }

            var source = new VmwareSource(new VmwareSourceOptions(Path.GetFileNameWithoutExtension(vmx), vmx, new VmrunClient(_connect())));
            source.RevertToSnapshot(snapshot, cancel);
            return $"Reverted '{vmx}' to VMware snapshot '{snapshot.Name}' (vmrun revertToSnapshot).";
        }
    }
}
