using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Commands
{
    /// <summary>Removes restore points by id or by retention policy, then the chunks no remaining point uses.</summary>
    [Cmdlet(VerbsCommon.Remove, "VmBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = ByIdSet)]
    [OutputType(typeof(PruneResult))]
    public sealed class RemoveVmBackupCommand : RepositoryCmdlet
    {
        private const string ByIdSet = "ById";
        private const string ByPolicySet = "ByPolicy";

        // Ids per repository, in the order they arrived from the pipeline.
        private readonly Dictionary<string, List<string>> _idsByRepository = new Dictionary<string, List<string>>(StringComparer.Ordinal);

        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Mandatory = true, Position = 1, ParameterSetName = ByIdSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[] Id { get; set; } = Array.Empty<string>();

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(1, int.MaxValue)]
        public int KeepLast { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(1, int.MaxValue)]
        public int KeepDaily { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(1, int.MaxValue)]
        public int KeepWeekly { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(1, int.MaxValue)]
        public int KeepMonthly { get; set; }

        /// <summary>The VMs the policy applies to (wildcards); all VMs when omitted.</summary>
        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? VmName { get; set; }

        /// <summary>Removes a lock left by a process that is gone (it is reported otherwise).</summary>
        [Parameter]
        public SwitchParameter RemoveStaleLock { get; set; }

        protected override void BeginProcessing()
        {
            if (ParameterSetName == ByPolicySet && KeepLast == 0 && KeepDaily == 0 && KeepWeekly == 0 && KeepMonthly == 0)
            {
                ThrowInvalidArgument("RetentionPolicyEmpty", "Give at least one of -KeepLast, -KeepDaily, -KeepWeekly, -KeepMonthly; without one every restore point would go.", null);
            }
        }

        protected override void ProcessRecord()
        {
            string path;
            try
            {
                path = S3RepositoryAddress.IsS3(Repository) ? Repository : ResolveItemFileSystemPath(Repository, nameof(Repository));
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            if (ParameterSetName == ByPolicySet)
            {
                var policy = new RetentionPolicy { KeepLast = KeepLast, KeepDaily = KeepDaily, KeepWeekly = KeepWeekly, KeepMonthly = KeepMonthly };
                Run(path, repository =>
                {
                    PrunePlan plan = repository.PlanRetention(policy, VmNameFilter(VmName ?? new[] { "*" }));
                    ReportUnmatchedVmNames(path, VmName ?? Array.Empty<string>(), plan.Keep.Concat(plan.Remove).Select(point => point.VmName), among: null);
                    return plan;
                });
                return;
            }

            if (!_idsByRepository.TryGetValue(path, out List<string>? ids))
            {
                _idsByRepository[path] = ids = new List<string>();
            }

            ids.AddRange(Id);
        }

        protected override void EndProcessing()
        {
            // Piped ids are removed together: one lock and one pass over the chunks per repository.
            foreach (var entry in _idsByRepository)
            {
                Run(entry.Key, repository => repository.PlanRemoval(entry.Value.Distinct(StringComparer.Ordinal), WriteFailure));
            }
        }

        /// <summary>Deletes the snapshots (-KeepSnapshot) that only the removed points needed; none while a manifest cannot be read, which might need one.</summary>
        private IReadOnlyList<string> ReleaseKeptSnapshots(IPrunableRepository repository, PrunePlan plan, PruneResult result)
        {
            var removedIds = new HashSet<string>(result.RemovedRestorePoints, StringComparer.Ordinal);
            var removed = plan.Remove.Where(point => removedIds.Contains(point.Id)).ToList();
            if (!removed.Any(point => point.Snapshot != null))
            {
                return Array.Empty<string>();
            }

            var unreadable = new List<VmQuiesceException>();
            IReadOnlyList<RestorePoint> remaining;
            try
            {
                remaining = repository.ListRestorePoints(unreadable.Add);
            }
            catch (VmQuiesceException e)
            {
                // The store failed while the remaining points were read (the prune itself is done): as for an unreadable one, the snapshots stay.
                unreadable.Add(e);
                remaining = Array.Empty<RestorePoint>();
            }

            if (unreadable.Count > 0)
            {
                WriteWarning($"The snapshots the removed restore points kept on their VMs are not deleted: the restore points left in '{repository.Location}' could not all be read, and may need them ({unreadable[0].Message}). " +
                    $"Once you know none does, delete them with vmrun deleteSnapshot: {string.Join(", ", removed.Where(point => point.Snapshot != null).Select(point => $"'{point.Snapshot!.Name}' of VM '{point.VmName}'"))}.");
                return Array.Empty<string>();
            }

            return KeptSnapshots.ReleaseUnneeded(removed, remaining, new OperationHost(WriteWarning, WriteVerbose), CancelToken);
        }

        private void Run(string path, Func<IPrunableRepository, PrunePlan> plan)
        {
            IPrunableRepository? repository = null;
            try
            {
                repository = S3RepositoryAddress.IsS3(path) ? ObjectRepository.Open(OpenS3Storage(path)) : BackupRepository.Open(path);
                PrunePlan proposed = plan(repository);
                var confirmed = proposed.Remove
                    .Where(point => ShouldProcess(
                        $"{point.VmName} {point.Id} ({Units.Time(point.StartTime)}, {point.Consistency})",
                        "Remove restore point"))
                    .ToList();
                // Garbage collection runs even when no point goes: it clears what interrupted backups left.
                var final = new PrunePlan(proposed.Repository, confirmed, proposed.Keep.Concat(proposed.Remove.Except(confirmed)).ToList()) { KeepsLastPointOfEachVm = proposed.KeepsLastPointOfEachVm };
                bool whatIf = MyInvocation.BoundParameters.TryGetValue("WhatIf", out object? whatIfSwitch)
                    ? LanguagePrimitives.IsTrue(whatIfSwitch)
                    : LanguagePrimitives.IsTrue(GetVariableValue("WhatIfPreference"));
                (long chunks, long bytes) = repository.EstimateGarbage(whatIf ? proposed : final);
                bool collect = ShouldProcess(path, $"Remove {chunks} chunk(s) ({Units.Bytes(bytes)}) that no remaining restore point uses, and temp files of interrupted backups");
                if (confirmed.Count == 0 && !collect)
                {
                    return;
                }

                // The core does not report steps: one record says what runs while it may take long (many chunks on a slow disk).
                var progress = new ProgressRecord(1, $"Pruning {path}",
                    $"Removing {confirmed.Count} restore point(s)" + (collect ? $", then {chunks} unused chunk(s) ({Units.Bytes(bytes)})" : string.Empty));
                WriteProgress(progress);
                PruneResult result = repository.Prune(final, collect, RemoveStaleLock, CancelToken, WriteWarning);
                result = result.WithRemovedSnapshots(ReleaseKeptSnapshots(repository, final, result));
                progress.RecordType = ProgressRecordType.Completed;
                WriteProgress(progress);
                WriteObject(result);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
            finally
            {
                (repository as IDisposable)?.Dispose();
            }
        }
    }
}
