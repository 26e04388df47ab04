namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>A target the Windows host's VSS can back up: its VM writer quiesces it and its files come from shadow copies (-Method HostVss).</summary>
    public interface IHostVssTarget
    {
        /// <summary>The same VM, whose source is the host's VSS making a <paramref name="backupType"/> backup; refuses with WindowsOnly where VSS cannot run.</summary>
        BackupVm WithHostVss(VssBackupType backupType);
    }
}
