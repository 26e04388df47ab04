using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Commands
{
    /// <summary>Removes a passphrase copy of a repository's key, or this host's key file; the last copy only with -Force.</summary>
    [Cmdlet(VerbsCommon.Remove, "VmBackupRepositoryKey", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = SlotSet)]
    public sealed class RemoveVmBackupRepositoryKeyCommand : RepositoryCmdlet
    {
        private const string SlotSet = "Slot";
        private const string HostKeySet = "HostKeyFile";

        /// <summary>A folder, or s3://bucket/prefix.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("Path")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>The passphrase copy to remove (Get-VmBackupRepository lists them in PassphraseSlots).</summary>
        [Parameter(Mandatory = true, Position = 1, ParameterSetName = SlotSet)]
        [ValidatePattern("^[0-9a-f]{8}$")]
        public string Slot { get; set; } = string.Empty;

        /// <summary>Removes this host's key file instead.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HostKeySet)]
        public SwitchParameter HostKeyFile { get; set; }

        /// <summary>Removes even the last copy of the key this host knows.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            try
            {
                using RepositoryKeys keys = OpenRepositoryKeys(Repository, nameof(Repository));
                if (HostKeyFile)
                {
                    if (ShouldProcess(keys.HostKeyFile ?? HostKeyStore.Folder, $"Remove this host's key file of '{keys.Location}'"))
                    {
                        keys.RemoveHostKey(Force);
                    }
                }
                else if (ShouldProcess(keys.Location, $"Remove the passphrase copy '{Slot}' of the repository key"))
                {
                    keys.RemovePassphrase(Slot, Force);
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
