using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources.VMware;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// Snapshots restore points left on their VMs (-KeepSnapshot), once points are removed: each one that a removed point
    /// recorded and no remaining point of the same VM records is deleted; what cannot be deleted is named with what to run.
    /// </summary>
    public static class KeptSnapshots
    {
        /// <returns>The names of the snapshots deleted.</returns>
        public static IReadOnlyList<string> ReleaseUnneeded(IEnumerable<RestorePoint> removed, IEnumerable<RestorePoint> remaining, IOperationHost host, CancellationToken cancel)
        {
            var handled = new HashSet<string>(remaining.Where(IsOnVm).Select(Key), StringComparer.Ordinal);
            var deleted = new List<string>();
            foreach (RestorePoint point in removed.Where(IsOnVm).Where(point => handled.Add(Key(point))))
            {
                CapturedSnapshot snapshot = point.Snapshot!;
                if (snapshot.Kind != VmwareSource.SourceKind)
                {
                    host.WriteWarning($"Restore point '{point.Id}' of VM '{point.VmName}' is removed; the {snapshot.Kind} snapshot '{snapshot.Name}' it kept on the VM stays: delete it with the hypervisor's own tool.");
                    continue;
                }

                try
                {
                    if (VmwareKeptSnapshots.Delete(point, host, cancel))
                    {
                        deleted.Add(snapshot.Name);
                    }
                }
                catch (VmQuiesceException e)
                {
                    host.WriteWarning(e.Message + (e.Remedy == null ? string.Empty : " " + e.Remedy));
                }
            }

            return deleted;
        }

        /// <summary>
        /// Whether the point's snapshot is still on its VM: a VMware snapshot a point records always is (kept by -KeepSnapshot,
        /// or by every backup before VmQuiesce released them by default); another kind's when the point says it was not released.
        /// </summary>
        private static bool IsOnVm(RestorePoint point) =>
            point.Snapshot != null && (point.Snapshot.Kind == VmwareSource.SourceKind || !point.SnapshotReleased);

        private static string Key(RestorePoint point) => point.VmKey + "\n" + point.Snapshot!.Kind + "\n" + point.Snapshot.Name;
    }
}
