namespace VmQuiesce.Core
{
    /// <summary>The snapshot captured with the backup, kept for the revert step of a restore.</summary>
    public sealed class CapturedSnapshot
    {
        public CapturedSnapshot(string name, string? id, string kind)
        {
            Name = name;
            Id = id;
            Kind = kind;
        }

        public string Name { get; }

        public string? Id { get; }

        /// <summary>"QemuInternal", "VMware", ...: tells the restore how to revert.</summary>
        public string Kind { get; }

        /// <summary>
        /// VMware: the vmrun that took the snapshot (absolute path), so the restore's revert and the prune that deletes
        /// the snapshot run the same program; Restore-VmSnapshot -VmrunPath overrides it. Read from a manifest, it is
        /// checked like any path a repository names before it is run.
        /// </summary>
        public string? VmrunPath { get; init; }

        /// <summary>VMware: the product vmrun drove (<see cref="Sources.VMware.VmwareHostType"/>'s name: its -T value).</summary>
        public string? VmrunHostType { get; init; }
    }
}
