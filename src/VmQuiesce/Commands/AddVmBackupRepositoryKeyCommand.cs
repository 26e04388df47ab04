using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Commands
{
    /// <summary>Adds a passphrase copy of a repository's key inside the repository, so a new host can recover it.</summary>
    [Cmdlet(VerbsCommon.Add, "VmBackupRepositoryKey", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = PassphraseSet)]
    [OutputType(typeof(RepositoryKeyCopy))]
    public sealed class AddVmBackupRepositoryKeyCommand : RepositoryPassphraseCmdlet
    {
        protected override void BeginProcessing() => RequireLongEnough(GivenPassphrase);

        protected override void ProcessRecord()
        {
            try
            {
                using RepositoryKeys keys = OpenRepositoryKeys(Repository, nameof(Repository));
                if (ShouldProcess(keys.Location, "Add a copy of the repository key sealed under a passphrase"))
                {
                    WriteObject(keys.AddPassphrase(GivenPassphrase));
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
