using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>Lists the restore points of a repository.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackup")]
    [OutputType(typeof(RestorePoint))]
    public sealed class GetVmBackupCommand : RepositoryCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? VmName { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? Id { get; set; }

        /// <summary>Only the newest restore point of each VM.</summary>
        [Parameter]
        public SwitchParameter Latest { get; set; }

        protected override void ProcessRecord()
        {
            IRestorePointSource repository;
            try
            {
                repository = OpenRestorePointSource(Repository, nameof(Repository));
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            try
            {
                foreach (RestorePoint point in SelectRestorePoints(repository, Id, VmName, Latest))
                {
                    WriteObject(point);
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
            finally
            {
                (repository as System.IDisposable)?.Dispose();
            }
        }
    }
}
