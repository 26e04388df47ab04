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
