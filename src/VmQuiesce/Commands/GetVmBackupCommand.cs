using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>Lists the restore points of a repository.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackup")]
    [OutputType(typeof(RestorePoint))]
    public sealed class GetVmBackupCommand : VmQuiesceCmdlet
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
            BackupRepository repository;
            try
            {
                repository = BackupRepository.Open(ResolveFileSystemPath(Repository, nameof(Repository)));
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            IEnumerable<RestorePoint> points = repository.ListRestorePoints(WriteFailure);
            if (Id != null)
            {
                var found = new List<RestorePoint>();
                foreach (string id in Id)
                {
                    try
                    {
                        found.Add(repository.GetRestorePoint(id));
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                    }
                }

                points = found;
            }

            if (VmName != null)
            {
                var patterns = VmName.Select(name => new WildcardPattern(name, WildcardOptions.IgnoreCase)).ToList();
                points = points.Where(point => patterns.Any(pattern => pattern.IsMatch(point.VmName)));
            }

            if (Latest)
            {
                points = points.GroupBy(point => point.VmKey, System.StringComparer.Ordinal)
                    .Select(vm => vm.OrderByDescending(point => point.StartTime).First());
            }

            foreach (RestorePoint point in points.OrderBy(point => point.StartTime).ThenBy(point => point.Id, System.StringComparer.Ordinal))
            {
                WriteObject(point);
            }
        }
    }
}
