using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Commands
{
    /// <summary>Describes a repository, a folder or an s3:// prefix: format, encryption and key, size, restore points, dedup and compression.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackupRepository")]
    [OutputType(typeof(RepositorySummary))]
    public sealed class GetVmBackupRepositoryCommand : RepositoryCmdlet
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
                if (S3RepositoryAddress.IsS3(Path))
                {
                    using ObjectRepository repository = ObjectRepository.Open(OpenS3Storage(Path));
                    WriteObject(RepositorySummary.Of(repository, WriteFailure));
                }
                else
                {
                    WriteObject(RepositorySummary.Of(BackupRepository.Open(ResolveItemFileSystemPath(Path, nameof(Path))), WriteFailure));
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
