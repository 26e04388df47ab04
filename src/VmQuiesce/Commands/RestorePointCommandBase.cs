using System.Management.Automation;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>A cmdlet that works on one restore point given by -Repository and -Id (both bind from Get-VmBackup's output).</summary>
    public abstract class RestorePointCommandBase : VmQuiesceCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string Id { get; set; } = string.Empty;

        /// <summary>Opens the repository and reads the point's manifest; throws VmQuiesceException when either is not there.</summary>
        protected (BackupRepository Repository, RestorePoint Point) OpenRestorePoint()
        {
            BackupRepository repository = BackupRepository.Open(ResolveFileSystemPath(Repository, nameof(Repository)));
            return (repository, repository.GetRestorePoint(Id));
        }
    }
}
