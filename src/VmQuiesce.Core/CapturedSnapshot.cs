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
    }
}
