using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>Describes a repository: format, encryption and key, size, restore points, dedup and compression.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackupRepository")]
    [OutputType(typeof(RepositorySummary))]
    public sealed class GetVmBackupRepositoryCommand : VmQuiesceCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Repository")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Path { get; set; } = string.Empty;

        protected override void ProcessRecord()
        {
            try
            {
                BackupRepository repository = BackupRepository.Open(ResolveFileSystemPath(Path, nameof(Path)));
                WriteObject(RepositorySummary.Of(repository, WriteFailure));
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
