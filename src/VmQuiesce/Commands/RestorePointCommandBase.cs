using System;
using System.Management.Automation;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// A cmdlet that works on one restore point given by -Repository and -Id (both bind from Get-VmBackup's output), in
    /// a folder or on S3 object storage.
    /// </summary>
    public abstract class RestorePointCommandBase : RepositoryCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string Id { get; set; } = string.Empty;

        /// <summary>
        /// Opens the repository and reads the point's manifest; throws VmQuiesceException when either is not there. The
        /// caller disposes the repository (a connection to object storage) unless what it starts takes it over.
        /// </summary>
        protected (IRestorePointSource Repository, RestorePoint Point) OpenRestorePoint()
        {
            IRestorePointSource repository = OpenRestorePointSource(Repository, nameof(Repository));
            try
            {
                return (repository, repository.GetRestorePoint(Id));
            }
            catch
            {
                (repository as IDisposable)?.Dispose();
                throw;
            }
        }
    }
}
