using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Commands
{
    /// <summary>Brings a repository's key to this host (its key file), from a passphrase copy or an exported key file.</summary>
    [Cmdlet(VerbsData.Import, "VmBackupRepositoryKey", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = PassphraseSet)]
    [OutputType(typeof(RepositoryKeyCopy))]
    public sealed class ImportVmBackupRepositoryKeyCommand : RepositoryPassphraseCmdlet
    {
        private const string KeyFileSet = "KeyFile";

        /// <summary>A key file Export-VmBackupRepositoryKey wrote.</summary>
        [Parameter(Mandatory = true, ParameterSetName = KeyFileSet)]
        [ValidateNotNullOrEmpty]
        public string KeyFile { get; set; } = string.Empty;

        protected override void ProcessRecord()
        {
            // Before the repository is opened or anything asked: a -KeyFile that is no file system path ends the command.
            string? keyFile = ParameterSetName == KeyFileSet ? ResolveFileSystemPath(KeyFile, nameof(KeyFile)) : null;
            try
            {
                using RepositoryKeys keys = OpenRepositoryKeys(Repository, nameof(Repository));
                if (!ShouldProcess(keys.Location, $"Write the repository's key to this host's key file in '{HostKeyStore.Folder}'"))
                {
                    return;
                }

                RepositoryKeyCopy imported = keyFile != null
                    ? keys.ImportFromKeyFile(keyFile)
                    : keys.ImportFromPassphrase(GivenPassphrase);
                if (imported.ReplacedKeyFile != null)
                {
                    WriteWarning($"This host's key file for '{keys.Location}' held a key that does not open it: the repository file there was replaced, or the key file. That key is kept in '{imported.ReplacedKeyFile}'; it may be the only key of the repository that was there.");
                }

                WriteObject(imported);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
