using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
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
        private readonly VmrunConnection? _vmrun;

        /// <param name="vmrun">The vmrun to revert with (Restore-VmSnapshot checks it before anything is written); by default the one the point recorded (<see cref="VmwareKeptSnapshots.Connect"/>).</param>
        public VmwareSnapshotReverter(VmrunConnection? vmrun = null)
        {
            _vmrun = vmrun;
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

            var vmrun = new VmrunClient(_vmrun ?? VmwareKeptSnapshots.Connect(snapshot, null));
            try
            {
                new VmwareSource(new VmwareSourceOptions(Path.GetFileNameWithoutExtension(vmx), vmx, vmrun)).RevertToSnapshot(snapshot, cancel);
            }
            catch (VmQuiesceException e) when (e.Remedy == null)
            {
                // The files are in place: what is left is one vmrun call.
                throw new VmQuiesceException(e.ErrorId, e.Kind, e.Message, e.Target, e)
                {
                    Remedy = $"Power the VM off, then finish the restore with {vmrun.DisplayCommand("revertToSnapshot", vmx, snapshot.Name)}.",
                };
            }

            return $"Reverted '{vmx}' to VMware snapshot '{snapshot.Name}' (vmrun revertToSnapshot).";
        }
    }
}
