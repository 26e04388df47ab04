using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Schedule;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// What a backup schedule runs, and what an administrator runs to try one: finds each target as Get-BackupVm
    /// does (each on its own, so one VM that is off does not stop the others), backs them up with
    /// Invoke-VmQuiescedBackup at the required consistency, applies the retention policy to those VMs with
    /// Remove-VmBackup, copies the new restore points to a second repository with Copy-VmBackup when asked, writes one line per failed VM to the error stream (stderr under a scheduler) and, when asked,
    /// a log file; returns the run with the exit code the job ends with (see about_VmQuiesce_Schedule).
    /// </summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VmBackupJob", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(BackupJobResult))]
    public sealed class InvokeVmBackupJobCommand : VmQuiesceCmdlet
    {
        /// <summary>Set once a step of the job was stopped (Ctrl+C): no later step runs.</summary>
        private bool _stopped;

        /// <summary>Names the run in its log file and lines (the schedule's name).</summary>
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNullOrEmpty]
        [ValidatePattern("^[A-Za-z0-9_.-]{1,64}$")]
        public string Name { get; set; } = string.Empty;

        /// <summary>Names of running QEMU VMs (wildcards allowed), QMP sockets and .vmx paths.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public string[] Vm { get; set; } = Array.Empty<string>();

        [Parameter(Mandatory = true, Position = 2)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter]
        public Consistency Consistency { get; set; } = Consistency.FileSystem;

        [Parameter]
        [ValidateRange(0, int.MaxValue)]
        public int KeepLast { get; set; }

        [Parameter]
        [ValidateRange(0, int.MaxValue)]
        public int KeepDaily { get; set; }

        [Parameter]
        [ValidateRange(0, int.MaxValue)]
        public int KeepWeekly { get; set; }

        [Parameter]
        [ValidateRange(0, int.MaxValue)]
        public int KeepMonthly { get; set; }

        /// <summary>A folder that gets this run's log file (&lt;Name&gt;-&lt;UTC start&gt;.log).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? LogFolder { get; set; }

        /// <summary>Back up QEMU VMs with -ChangeTracking (other VMs are read whole, and the log says so).</summary>
        [Parameter]
        public SwitchParameter ChangeTracking { get; set; }

        /// <summary>Every this many backups of a QEMU VM, read it in full and check its change tracking (-VerifyChangeTracking); implies -ChangeTracking.</summary>
        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int VerifyChangeTrackingEvery { get; set; }

        /// <summary>A second repository (a folder or s3://bucket/prefix) the run's new restore points are copied to with Copy-VmBackup.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string? CopyTo { get; set; }

        /// <summary>The endpoint of the non-AWS S3 store -Repository or -CopyTo names; else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS itself.</summary>
        [Parameter]
        [ValidateNotNull]
        public Uri? S3Endpoint { get; set; }

        /// <summary>The AWS profile (shared credentials file) the S3 repository or copy signs with; else the AWS chain's default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? S3ProfileName { get; set; }

        private bool HasRetention => KeepLast > 0 || KeepDaily > 0 || KeepWeekly > 0 || KeepMonthly > 0;

        protected override void EndProcessing()
        {
            string repository = S3RepositoryAddress.IsS3(Repository) ? Repository : ResolveFileSystemPath(Repository, nameof(Repository));
            string? logFolder = LogFolder == null ? null : ResolveFileSystemPath(LogFolder, nameof(LogFolder));
            string? copyTo = CopyTo == null ? null : S3RepositoryAddress.IsS3(CopyTo) ? CopyTo : ResolveFileSystemPath(CopyTo, nameof(CopyTo));
            if ((S3Endpoint != null || S3ProfileName != null) && !S3RepositoryAddress.IsS3(repository) && (copyTo == null || !S3RepositoryAddress.IsS3(copyTo)))
            {
                ThrowFailure(new VmQuiesceException("CopySettingsWithoutS3Copy", FailureKind.InvalidArgument,
                    "-S3Endpoint and -S3ProfileName are settings of an S3 repository; give -Repository or -CopyTo as s3://bucket/prefix with them.", CopyTo));
            }

            if (!ShouldProcess(Name, $"Back up {string.Join(", ", Vm)} into '{repository}' ({Consistency} consistency or better)" + (HasRetention ? " and apply the retention policy to those VMs" : string.Empty) + (copyTo != null ? $", then copy the new restore points to '{copyTo}'" : string.Empty)))
            {
                return;
            }

            var run = new BackupJobResult(Name, DateTime.Now);
            run.Log($"Job '{Name}': {string.Join(", ", Vm)} into '{repository}' at {Consistency} consistency or better.");

            var vms = new List<BackupVm>();
            foreach (string target in Vm)
            {
                (List<BackupVm> found, string? why, string? errorId, List<InformationalRecord> said) = BackupVmTransformationAttribute.Resolve(SessionState, target);
                said.ForEach(record => NestedCommand.Write(this, record));
                if (why != null)
                {
                    Report(run, run.AddFailure(target, errorId ?? "VmNotFound", $"Get-BackupVm found no VM for '{target}': {why}"));
                }

                vms.AddRange(found.Where(vm => !vms.Any(known => known.Kind == vm.Kind && known.Location == vm.Location)));
            }

            bool stopped = false;
            try
            {
                if (vms.Count > 0)
                {
                    BackUpInGroups(run, vms, repository);
                    if (HasRetention)
                    {
                        ApplyRetention(run, vms, repository);
                    }

                    if (copyTo != null && run.RestorePoints.Count > 0)
                    {
                        CopyNewPoints(run, repository, copyTo);
                    }
                }

                ThrowIfStopped();
            }
            catch (PipelineStoppedException)
            {
                // Ctrl+C, or the service stopping: no later step runs (no retention after a backup that was stopped), and the
                // log still says what was done.
                run.Log("Stopped (Ctrl+C or the service stopping): the steps after it were not run.");
                stopped = true;
            }

            run.Finish();
            if (logFolder != null)
            {
                try
                {
                    run.WriteLog(logFolder);
                }
                catch (VmQuiesceException e)
                {
                    // The backups are done: a log that cannot be written is said, and does not change the exit code.
                    WriteWarning(e.Message);
                }
            }

            if (stopped)
            {
                throw new PipelineStoppedException();
            }

            WriteObject(run);
        }

        /// <summary>
        /// Without change tracking, one backup of every VM; with it, the QEMU VMs tracked (those whose turn it is
        /// verified), then the others read whole, each group one Invoke-VmQuiescedBackup (in parallel within it).
        /// </summary>
        private void BackUpInGroups(BackupJobResult run, List<BackupVm> vms, string repository)
        {
            if (!ChangeTracking && VerifyChangeTrackingEvery == 0)
            {
                BackUp(run, vms, repository, tracked: false, verify: false);
                return;
            }

            List<BackupVm> untracked = vms.Where(vm => vm.Kind != QemuSource.SourceKind).ToList();
            untracked.ForEach(vm => run.Log($"{vm.Name}: a {vm.Kind} VM has no change tracking; it is read whole."));
            List<BackupVm> qemu = vms.Where(vm => vm.Kind == QemuSource.SourceKind).ToList();
            var due = new HashSet<BackupVm>();
            if (VerifyChangeTrackingEvery > 0 && qemu.Count > 0)
            {
                List<RestorePoint> points = PointsOf(run, qemu, repository);
                foreach (BackupVm vm in qemu.Where(vm => BackupSchedule.IsVerificationDue(points.Where(p => p.SourceKind == vm.Kind && string.Equals(p.VmName, vm.Name, StringComparison.OrdinalIgnoreCase)), VerifyChangeTrackingEvery)))
                {
                    due.Add(vm);
                    run.Log($"{vm.Name}: read in full to verify its change tracking (every {VerifyChangeTrackingEvery} backups).");
                }
            }

            // The tracked groups first: the first backup of a new repository decides its chunk size, and change-tracked
            // ones make it small (BackupRepository.ChangeTrackedChunkSize: what their incrementals patch), whatever other
            // VMs the job holds.
            foreach ((List<BackupVm> group, bool tracked, bool verify) in new[]
            {
                (qemu.Where(vm => !due.Contains(vm)).ToList(), true, false),
                (qemu.Where(due.Contains).ToList(), true, true),
                (untracked, false, false),
            })
            {
                if (group.Count > 0)
                {
                    BackUp(run, group, repository, tracked, verify);
                }
            }
        }

        /// <summary>The restore points of these VMs (Get-VmBackup); when the repository cannot be listed, the job verifies none and says so.</summary>
        private List<RestorePoint> PointsOf(BackupJobResult run, List<BackupVm> vms, string repository)
        {
            using PowerShell powerShell = NestedCommand.Create("VmQuiesce\\Get-VmBackup");
            powerShell.AddParameter("Repository", repository).AddParameter("VmName", vms.Select(vm => WildcardPattern.Escape(vm.Name)).ToArray());
            AddS3Settings(powerShell);
            List<RestorePoint> points = Invoke(powerShell).OfType<RestorePoint>().ToList();
            foreach (ErrorRecord error in powerShell.Streams.Error)
            {
                run.Log($"The restore points could not be listed to see whose change tracking is due for verification: {ErrorId(error)}: {error}");
            }

            return points;
        }

        private void BackUp(BackupJobResult run, List<BackupVm> vms, string repository, bool tracked, bool verify)
        {
            using PowerShell powerShell = NestedCommand.Create("VmQuiesce\\Invoke-VmQuiescedBackup");
            powerShell.AddParameter("Vm", vms.ToArray())
                .AddParameter("Repository", repository)
                .AddParameter("Consistency", Consistency)
                .AddParameter("Confirm", false);
            AddS3Settings(powerShell);
            if (verify)
            {
                powerShell.AddParameter("VerifyChangeTracking");
            }
            else if (tracked)
            {
                powerShell.AddParameter("ChangeTracking");
            }

            List<RestorePoint> points = Invoke(powerShell).OfType<RestorePoint>().ToList();
            points.ForEach(run.AddPoint);
            var failed = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (ErrorRecord error in powerShell.Streams.Error.Where(error => !(error.Exception is PipelineStoppedException)))
            {
                string vm = error.TargetObject is BackupVm target ? target.Name : error.TargetObject is RestorePoint point ? point.VmName : error.TargetObject?.ToString() ?? "(unknown)";
                failed.Add(vm);
                Report(run, run.AddFailure(vm, ErrorId(error), error.ToString()));
            }

            foreach (BackupVm vm in vms.Where(vm => !failed.Contains(vm.Name) && !points.Any(point => string.Equals(point.VmName, vm.Name, StringComparison.OrdinalIgnoreCase))))
            {
                Report(run, run.AddFailure(vm.Name, "NoRestorePoint", "the backup ended without a restore point (stopped?)."));
            }
        }

        private void ApplyRetention(BackupJobResult run, List<BackupVm> vms, string repository)
        {
            using PowerShell powerShell = NestedCommand.Create("VmQuiesce\\Remove-VmBackup");
            powerShell.AddParameter("Repository", repository).AddParameter("VmName", vms.Select(vm => WildcardPattern.Escape(vm.Name)).ToArray());
            foreach ((int keep, string parameter) in new[] { (KeepLast, nameof(KeepLast)), (KeepDaily, nameof(KeepDaily)), (KeepWeekly, nameof(KeepWeekly)), (KeepMonthly, nameof(KeepMonthly)) })
            {
                if (keep > 0)
                {
                    powerShell.AddParameter(parameter, keep);
                }
            }

            powerShell.AddParameter("Confirm", false);
            AddS3Settings(powerShell);
            List<PruneResult> results = Invoke(powerShell).OfType<PruneResult>().ToList();
            if (powerShell.Streams.Error.Count > 0)
            {
                string detail = string.Join("; ", powerShell.Streams.Error.Select(error => $"{ErrorId(error)}: {error}"));
                run.SetRetention(false, detail);
                Host.UI.WriteErrorLine($"{run.Name}: FAILED retention: {detail.Replace("\n", " ")}");
            }
            else
            {
                run.SetRetention(true, $"{results.Sum(result => result.RemovedRestorePoints.Count)} restore point(s) removed, {results.Sum(result => result.KeptRestorePoints)} kept.");
            }
        }

        /// <summary>The endpoint and profile of an S3 repository or copy, for a step's command; the credentials come from the AWS chain.</summary>
        private void AddS3Settings(PowerShell powerShell)
        {
            if (S3Endpoint != null)
            {
                powerShell.AddParameter("S3Endpoint", S3Endpoint);
            }

            if (S3ProfileName != null)
            {
                powerShell.AddParameter("S3ProfileName", S3ProfileName);
            }
        }

        /// <summary>
        /// The copy step: this run's restore points (those retention kept) to the second repository with Copy-VmBackup,
        /// which sends only the chunks that repository lacks and verifies each as it goes.
        /// </summary>
        private void CopyNewPoints(BackupJobResult run, string repository, string copyTo)
        {
            using PowerShell powerShell = NestedCommand.Create("VmQuiesce\\Copy-VmBackup");
            powerShell.AddParameter("Repository", repository).AddParameter("Destination", copyTo)
                .AddParameter("Id", run.RestorePoints.Select(point => point.Id).ToArray());
            AddS3Settings(powerShell);
            powerShell.AddParameter("Confirm", false);
            List<RestorePointCopyResult> copies = Invoke(powerShell).OfType<RestorePointCopyResult>().ToList();
            if (powerShell.Streams.Error.Count > 0)
            {
                string detail = string.Join("; ", powerShell.Streams.Error.Select(error => $"{ErrorId(error)}: {error}"));
                run.SetCopy(false, $"to '{copyTo}': {detail}");
                Host.UI.WriteErrorLine($"{run.Name}: FAILED copy to '{copyTo}': {detail.Replace("\n", " ")}");
            }
            else
            {
                run.SetCopy(true, $"{copies.Count} restore point(s) copied to '{copyTo}', {copies.Sum(copy => copy.ChunksCopied)} chunk(s) sent.");
            }
        }

        /// <summary>
        /// Runs a step of the job (<see cref="NestedCommand"/>), whose failures it reports per item; its warnings and verbose
        /// lines become this cmdlet's. Once the job is stopped no step starts (PipelineStoppedException); the step that was
        /// stopped still gives what it did, and its warnings reach the console.
        /// </summary>
        private List<object> Invoke(PowerShell powerShell)
        {
            ThrowIfStopped();
            var said = new List<InformationalRecord>();
            List<object> output = NestedCommand.Invoke(powerShell, said);
            // A step that was stopped means the job is being stopped, whether or not its own StopProcessing has come yet.
            _stopped |= powerShell.InvocationStateInfo.State == PSInvocationState.Stopped || powerShell.Streams.Error.Any(error => error.Exception is PipelineStoppedException);
            foreach (InformationalRecord record in said)
            {
                if (!IsStopped)
                {
                    NestedCommand.Write(this, record);
                }
                else if (record is WarningRecord)
                {
                    WriteWarningEvenWhenStopping(record.Message);
                }
            }

            return output;
        }

        private bool IsStopped => _stopped || Stopping || CancelToken.IsCancellationRequested;

        private void ThrowIfStopped()
        {
            if (IsStopped)
            {
                throw new PipelineStoppedException();
            }
        }

        /// <summary>One line per failed VM on the error stream: what a scheduler's journal or a cron mail shows.</summary>
        private void Report(BackupJobResult run, BackupJobFailure failure) => Host.UI.WriteErrorLine($"{run.Name}: {failure}");

        private static string ErrorId(ErrorRecord error) => error.FullyQualifiedErrorId.Split(',')[0];
    }
}
