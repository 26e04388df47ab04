using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Commands
{
    /// <summary>Writes a copy of a repository's key (a key file, readable by root/Administrators only) for safekeeping elsewhere.</summary>
    [Cmdlet(VerbsData.Export, "VmBackupRepositoryKey", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(RepositoryKeyCopy))]
    public sealed class ExportVmBackupRepositoryKeyCommand : RepositoryCmdlet
    {
        /// <summary>A folder, or s3://bucket/prefix.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("Path")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>The new key file; it must not exist.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; } = string.Empty;

        protected override void ProcessRecord()
        {
            try
            {
                string destination = ResolveFileSystemPath(Destination, nameof(Destination));
                using RepositoryKeys keys = OpenRepositoryKeys(Repository, nameof(Repository));
                if (ShouldProcess(destination, $"Write the key of '{keys.Location}' in plain form (readable by root/Administrators only)"))
                {
                    WriteObject(keys.Export(destination));
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
