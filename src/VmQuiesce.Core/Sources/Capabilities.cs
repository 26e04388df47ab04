using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Sources
{
    // What a target can do besides being backed up. A target type implements the capabilities its hypervisor has;
    // cmdlets and the core ask with 'is'. A new capability is a new interface here plus the types that have it.
    // Reverting restored files to the snapshot a backup captured is Restore.ISnapshotReverter, chosen by the
    // snapshot's kind: a restore works on a restore point's files, not on a running target.

    /// <summary>A target that can say, without changing anything, whether a backup would work and how consistent it would be.</summary>
    public interface IReadinessCheckable
    {
        /// <summary>One row per check, each with a remedy when it did not pass; failures to reach the VM are rows, not exceptions.</summary>
        IReadOnlyList<ReadinessCheck> CheckReadiness(CancellationToken cancel);
    }

    /// <summary>A target whose snapshots can be listed while it runs (the ones a restore can revert to among them).</summary>
    public interface ISnapshotListable
    {
        IReadOnlyList<VmSnapshot> ListSnapshots(CancellationToken cancel);
    }
}
