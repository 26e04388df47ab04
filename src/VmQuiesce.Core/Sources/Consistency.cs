namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// The consistency a restore point actually reached, lowest first so levels compare with &lt; and &gt;.
    /// </summary>
    public enum Consistency
    {
        /// <summary>Nothing was quiesced: as if the power had been cut.</summary>
        Crash = 0,

        /// <summary>The guest's file systems were frozen (fsfreeze, or VSS without writers).</summary>
        FileSystem = 1,

        /// <summary>Applications took part (VSS writers flushed their data).</summary>
        Application = 2,
    }
}

namespace VmQuiesce.Core.Sources
{
    /// <summary>How a VM is quiesced for a backup.</summary>
    public enum BackupMethod
    {
        /// <summary>The VM's own source: the QEMU guest agent, vmrun for VMware.</summary>
        Native,

        /// <summary>The Windows host's VSS writers (the VMware VSS Writer) quiesce the VM; files come from a shadow copy.</summary>
        HostVss,
    }
}
