using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// The vmquiesce-* snapshots -KeepSnapshot left on VMware VMs, as restore points record them: the vmrun to reach
    /// them (for the restore's revert and for deleting them), and their deletion once no point needs them.
    /// </summary>
    public static class VmwareKeptSnapshots
    {
        /// <summary>
        /// vmrun for a snapshot a point recorded: <paramref name="vmrunPath"/> (Restore-VmSnapshot -VmrunPath) when given,
        /// else this host's own (<see cref="VmrunLocator.LocateRecorded"/>): the vmrun that took it when that is one of this
        /// host's places for vmrun, never a program only the manifest names, since a manifest may be written by others.
        /// </summary>
        public static VmrunConnection Connect(CapturedSnapshot snapshot, string? vmrunPath)
        {
            string vmrun = vmrunPath != null ? VmrunLocator.CheckProgram(vmrunPath) : VmrunLocator.ForThisHost().LocateRecorded(snapshot.VmrunPath);
            VmwareHostType type = Enum.TryParse(snapshot.VmrunHostType, out VmwareHostType recorded) && Enum.IsDefined(typeof(VmwareHostType), recorded)
                ? recorded
                : HostPlatform.IsMacOS ? VmwareHostType.Fusion : VmwareHostType.Workstation;
            if (type == VmwareHostType.Server)
            {
                throw new VmQuiesceException("VmrunCredentialRequired", FailureKind.InvalidOperation,
                    $"Snapshot '{snapshot.Name}' is on VMware Server, which vmrun reaches only with the server's host and account; VmQuiesce does not store them.", snapshot)
                {
                    Remedy = $"On the server, run vmrun -T server -h https://HOST:8333/sdk -u USER -p PASSWORD with revertToSnapshot or deleteSnapshot, the VM's datastore path and \"{snapshot.Name}\".",
                };
            }

            return new VmrunConnection(vmrun, type);
        }

        /// <summary>
        /// Deletes the VMware snapshot <paramref name="point"/> recorded, from the VM whose .vmx the point holds; false
        /// when there was nothing to delete (the VM or the snapshot is gone). Throws with the command to run when vmrun fails.
        /// </summary>
        internal static bool Delete(RestorePoint point, IOperationHost host, CancellationToken cancel)
        {
            CapturedSnapshot snapshot = point.Snapshot!;
            string? vmx = point.Files
                .Where(file => file.Path.IndexOf('/') < 0 && string.Equals(Path.GetExtension(file.Path), ".vmx", StringComparison.OrdinalIgnoreCase))
                .Select(file => file.OriginalPath)
                .FirstOrDefault();
            if (vmx == null || !File.Exists(vmx))
            {
                host.WriteVerbose($"Snapshot '{snapshot.Name}' of VM '{point.VmName}' is not deleted: the VM's .vmx ({vmx ?? "none in the point"}) is gone, and its snapshots with it.");
                return false;
            }

            var vmrun = new VmrunClient(Connect(snapshot, null), host.WriteVerbose, host.WriteWarning);
            try
            {
                if (!vmrun.ListSnapshots(vmx, cancel).Contains(snapshot.Name, StringComparer.Ordinal))
                {
                    host.WriteVerbose($"Snapshot '{snapshot.Name}' of VM '{point.VmName}' is already gone.");
                    return false;
                }

                host.WriteVerbose($"VM '{point.VmName}': deleting snapshot '{snapshot.Name}', which no remaining restore point needs.");
                vmrun.DeleteSnapshot(vmx, snapshot.Name, cancel);
                return true;
            }
            catch (VmQuiesceException e)
            {
                throw new VmQuiesceException("SnapshotReleaseFailed", e.Kind,
                    $"Restore point '{point.Id}' is removed, but the snapshot '{snapshot.Name}' of VM '{point.VmName}' it kept could not be deleted: {e.Message}", snapshot.Name, e)
                {
                    Remedy = $"Run {vmrun.DisplayCommand("deleteSnapshot", vmx, snapshot.Name)}.",
                };
            }
        }
    }
}
