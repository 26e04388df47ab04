using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources.VMware;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// The two-step restore: puts a restore point's files back from verified chunks, then reverts them to
    /// the snapshot the backup captured. Nothing is replaced until every file is written and checked. Hyper-V's own
    /// calls (-Name with -VMName or -VM, or a checkpoint object) go to the Hyper-V module's Restore-VMSnapshot.
    /// </summary>
    [Cmdlet(VerbsData.Restore, "VmSnapshot", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = ByRestorePointSet)]
    [OutputType(typeof(RestoreResult))]
    public sealed class RestoreVmSnapshotCommand : RepositoryCmdlet
    {
        public const string ByRestorePointSet = "RestorePoint";
        public const string ByIdSet = "Id";
        public const string HyperVNameSet = "HyperVSnapshotName";
        public const string HyperVObjectSet = "HyperVSnapshotObject";
        public const string HyperVVmSet = "HyperVVM";

        private int _progressId;

        /// <summary>A restore point from Get-VmBackup.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = ByRestorePointSet)]
        [ValidateNotNull]
        public RestorePoint? RestorePoint { get; set; }

        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ByIdSet)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = ByIdSet)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string Id { get; set; } = string.Empty;

        /// <summary>Hyper-V: the name of the checkpoint to apply.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HyperVNameSet)]
        [Parameter(Mandatory = true, ParameterSetName = HyperVVmSet)]
        [ValidateNotNullOrEmpty]
        public string? Name { get; set; }

        /// <summary>Hyper-V: the VM whose checkpoint -Name applies.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HyperVNameSet)]
        [ValidateNotNullOrEmpty]
        public string? VMName { get; set; }

        /// <summary>Hyper-V: a checkpoint object of the Hyper-V module (from Get-VMSnapshot).</summary>
        [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = HyperVObjectSet)]
        [PSTypeName(HyperVModule.SnapshotType)]
        [ValidateNotNull]
        public PSObject? VMSnapshot { get; set; }

        /// <summary>Hyper-V: a VM object of the Hyper-V module (from Get-VM) whose checkpoint -Name applies.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HyperVVmSet)]
        [PSTypeName(HyperVModule.VirtualMachineType)]
        [ValidateNotNull]
        public PSObject? VM { get; set; }

        /// <summary>Hyper-V: the Hyper-V hosts.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [ValidateNotNullOrEmpty]
        public string[]? ComputerName { get; set; }

        /// <summary>Hyper-V: the accounts for -ComputerName.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [ValidateNotNull]
        public PSCredential[]? Credential { get; set; }

        /// <summary>Hyper-V: CIM sessions to the Hyper-V hosts.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [ValidateNotNull]
        public object[]? CimSession { get; set; }

        /// <summary>Hyper-V: run as a background job.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = HyperVObjectSet)]
        [Parameter(ParameterSetName = HyperVVmSet)]
        public SwitchParameter AsJob { get; set; }

        /// <summary>Hyper-V: write the applied checkpoint.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = HyperVObjectSet)]
        [Parameter(ParameterSetName = HyperVVmSet)]
        public SwitchParameter Passthru { get; set; }

        /// <summary>Restore into this folder (each file under its relative path) instead of the original paths.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Destination { get; set; }

        /// <summary>Replace existing files.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>Put the files back and stop: no revert to the captured snapshot.</summary>
        [Parameter]
        public SwitchParameter SkipRevert { get; set; }

        /// <summary>VMware: the vmrun that reverts the VM, instead of the one the restore point recorded at backup.</summary>
        [Parameter(ParameterSetName = ByRestorePointSet)]
        [Parameter(ParameterSetName = ByIdSet)]
        [ValidateNotNullOrEmpty]
        public string? VmrunPath { get; set; }

        /// <summary>Boot the restored disks afterwards (on throwaway overlays) and check the guest and its file systems.</summary>
        [Parameter]
        public SwitchParameter Verify { get; set; }

        /// <summary>How -Verify boots the disks: a hashtable of BootCheckOptions (MachineType, MemoryMiB, Cpus, CpuModel: each overrides what the point recorded; Kernel, Initrd, Append, Accelerator, BootTimeout, QemuExecutable).</summary>
        [Parameter]
        [ValidateNotNull]
        public BootCheckOptions? BootOption { get; set; }

        // The S3 connection belongs to VmQuiesce's own sets: Hyper-V's sets keep Hyper-V's parameters only.

        /// <inheritdoc/>
        [Parameter(ParameterSetName = ByRestorePointSet)]
        [Parameter(ParameterSetName = ByIdSet)]
        [ValidateNotNull]
        public override Uri? S3Endpoint { get => base.S3Endpoint; set => base.S3Endpoint = value; }

        /// <inheritdoc/>
        [Parameter(ParameterSetName = ByRestorePointSet)]
        [Parameter(ParameterSetName = ByIdSet)]
        [Credential]
        [ValidateNotNull]
        public override PSCredential? S3Credential { get => base.S3Credential; set => base.S3Credential = value; }

        /// <inheritdoc/>
        [Parameter(ParameterSetName = ByRestorePointSet)]
        [Parameter(ParameterSetName = ByIdSet)]
        [ValidateNotNullOrEmpty]
        public override string? S3ProfileName { get => base.S3ProfileName; set => base.S3ProfileName = value; }

        /// <inheritdoc/>
        [Parameter(ParameterSetName = ByRestorePointSet)]
        [Parameter(ParameterSetName = ByIdSet)]
        [ValidateNotNullOrEmpty]
        public override string? S3Region { get => base.S3Region; set => base.S3Region = value; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == HyperVNameSet || ParameterSetName == HyperVObjectSet || ParameterSetName == HyperVVmSet)
            {
                HyperVModule.Forward(this, "Restore-VMSnapshot", Array.Empty<string>());
                return;
            }

            string? destination = Destination == null ? null : ResolveFileSystemPath(Destination, nameof(Destination));
            IRestorePointSource? repository = null;
            RestorePoint point;
            VmrunConnection? vmrun;
            try
            {
                if (ParameterSetName == ByIdSet)
                {
                    repository = OpenRestorePointSource(Repository, nameof(Repository));
                    point = repository.GetRestorePoint(Id);
                }
                else
                {
                    point = RestorePoint!;
                    repository = OpenRestorePointSource(point.Repository, nameof(RestorePoint));
                }

                vmrun = CheckVmrun(point);
            }
            catch (VmQuiesceException e)
            {
                (repository as IDisposable)?.Dispose();
                WriteFailure(e);
                return;
            }

            try
            {
                Restore(repository, new RestoreEngine(repository, SnapshotReverters.WithVmrun(vmrun)), point, destination);
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

        /// <summary>
        /// The vmrun that will revert a VMware point, checked before anything is written (-VmrunPath, else the one the
        /// point recorded); null when no vmrun runs. A -VmrunPath is checked whatever the point.
        /// </summary>
        private VmrunConnection? CheckVmrun(RestorePoint point)
        {
            string? given = VmrunPath == null ? null : ResolveFileSystemPath(VmrunPath, nameof(VmrunPath));
            if (point.Snapshot != null && point.Snapshot.Kind == VmwareSource.SourceKind && !SkipRevert)
            {
                return VmwareKeptSnapshots.Connect(point.Snapshot, given);
            }

            if (given != null)
            {
                VmrunLocator.CheckProgram(given);
            }

            return null;
        }

        private void Restore(IRestorePointSource repository, RestoreEngine engine, RestorePoint point, string? destination)
        {
            var request = new RestoreRequest(point)
            {
                Destination = destination,
                Force = Force,
                SkipRevert = SkipRevert,
            };
            RestorePlan plan = engine.Plan(request, CancelToken);

            // All or nothing: one declined file cancels the whole restore point.
            bool confirmed = true;
            foreach (RestoreTarget target in plan.Targets)
            {
                string action = target.Exists
                    ? $"Replace with '{target.File.Path}' ({Units.Bytes(target.File.Size)}) of restore point {point.Id}"
                    : $"Create from '{target.File.Path}' ({Units.Bytes(target.File.Size)}) of restore point {point.Id}";
                confirmed &= ShouldProcess(target.Path, action);
            }

            if (point.Snapshot != null && !SkipRevert)
            {
                confirmed &= ShouldProcess(string.Join(", ", plan.Targets.Select(target => target.Path)), $"Revert to snapshot '{point.Snapshot.Name}' ({point.Snapshot.Kind})");
            }

            // Over the VM's own disks a restore replaces what the VM has now: High impact, asked by default.
            List<RestoreTarget> replaced = plan.Targets.Where(target => target.Exists).ToList();
            if (!confirmed || (destination == null && replaced.Count > 0 && !ConfirmHighImpact(replaced[0].Path,
                $"Replace {replaced.Count} file(s) of VM '{point.VmName}' ({string.Join(", ", replaced.Select(target => target.Path))}) with restore point {point.Id} of {Units.Time(point.StartTime)}? What they hold now is lost.",
                $"Restoring over the disks of VM '{point.VmName}'")))
            {
                return;
            }

            // Shared: a restore may run beside backups, never beside a prune that removes chunks. Taken once confirmed, so
            // -WhatIf writes no lock into the repository; the run checks the plan again and reads every chunk verified.
            using IDisposable shared = LockForReading(repository, "Restore-VmSnapshot");
            var progress = new ProgressRecord(++_progressId, $"Restoring {point.VmName} {point.Id}", "Starting");
            IOperationHost host = CreateHost(report => WriteRestoreProgress(progress, (RestoreProgress)report));
            RestoreResult result;
            try
            {
                result = RunPumped(() => engine.Run(plan, host, CancelToken));
            }
            catch (OperationCanceledException) when (CancelToken.IsCancellationRequested)
            {
                // Ctrl+C: the engine removed its temp files; every original is untouched.
                return;
            }
            finally
            {
                if (!CancelToken.IsCancellationRequested)
                {
                    progress.RecordType = ProgressRecordType.Completed;
                    WriteProgress(progress);
                }
            }

            WriteVerbose($"Restored {result.FileCount} file(s), {Units.Bytes(result.Bytes)} in {result.Duration:0.0} s. {result.RevertDetail}");
            if (Verify)
            {
                WriteProgress(new ProgressRecord(progress.ActivityId, progress.Activity, "Booting the restored disks on throwaway overlays"));
                RestoreResult restored = result;
                result = result.WithVerification(RunPumped(() => BootCheck.Run(restored, BootOption ?? new BootCheckOptions(), CancelToken)));
                WriteProgress(new ProgressRecord(progress.ActivityId, progress.Activity, "Done") { RecordType = ProgressRecordType.Completed });
            }

            WriteObject(result);
            if (result.Verification is BootCheckResult boot && !boot.Passed)
            {
                WriteFailure(new VmQuiesceException("RestoreVerificationFailed", FailureKind.InvalidData,
                    $"The restored disks of VM '{point.VmName}' were put back, but the boot check failed: {boot}", result)
                {
                    Remedy = "Look at the result's Verification property; restore an older restore point, or boot the VM and repair its file systems.",
                });
            }
        }

        private void WriteRestoreProgress(ProgressRecord progress, RestoreProgress report)
        {
            progress.CurrentOperation = report.CurrentFile;
            WriteProgress(ShowTransfer(progress, report));
        }
    }
}
