using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;

namespace VmQuiesce.Commands
{
    /// <summary>Re-reads and re-hashes the chunks of restore points and reports what is damaged.</summary>
    [Cmdlet(VerbsDiagnostic.Test, "VmBackup")]
    [OutputType(typeof(RestorePointVerification))]
    public sealed class TestVmBackupCommand : RepositoryCmdlet
    {
        private int _progressId;

        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>The restore points to verify; all of them when omitted.</summary>
        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? Id { get; set; }

        /// <summary>Also boot each point straight from the repository (served over NBD, throwaway overlays): the guest agent must answer and the file systems be clean.</summary>
        [Parameter]
        public SwitchParameter Boot { get; set; }

        /// <summary>How -Boot boots the disks: a hashtable of BootCheckOptions (MachineType, MemoryMiB, Cpus, CpuModel: each overrides what the point recorded; Kernel, Initrd, Append, Accelerator, BootTimeout, QemuExecutable).</summary>
        [Parameter]
        [ValidateNotNull]
        public BootCheckOptions? BootOption { get; set; }

        protected override void ProcessRecord()
        {
            IRestorePointSource repository;
            List<RestorePoint> points;
            try
            {
                repository = OpenRestorePointSource(Repository, nameof(Repository));
                if ((repository as BackupRepository)?.AccessWarning() is string warning)
                {
                    WriteWarning(warning);
                }

                points = SelectRestorePoints(repository, Id, vmNames: null, latest: false);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            if (points.Count == 0)
            {
                (repository as IDisposable)?.Dispose();
                return;
            }

            try
            {
                // Shared: verifying may run beside backups, never beside a prune that removes chunks.
                using IDisposable shared = LockForReading(repository, "Test-VmBackup");
                foreach (RestorePoint point in points)
                {
                    try
                    {
                        Verify(repository, point);
                    }
                    catch (VmQuiesceException e) when (e.ErrorId == "RestorePointChunkSizeMismatch")
                    {
                        // About this point only (or the marker): the others are still verified.
                        WriteFailure(e);
                    }
                }
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

        private void Verify(IRestorePointSource repository, RestorePoint point)
        {
            int activityId = ++_progressId;
            string activity = $"Verifying {point.VmName} {point.Id}";
            IOperationHost host = CreateHost(report => WriteProgress(ShowTransfer(new ProgressRecord(activityId, activity, report.Status), report)));
            var folder = repository as BackupRepository;
            RestorePointVerification result = RunPumped(() => folder?.Verify(point, CancelToken, host) ?? RestorePointVerifier.Verify(repository, point, CancelToken, host));
            if (Boot && result.IsValid)
            {
                WriteProgress(new ProgressRecord(activityId, activity, "Booting it from the repository"));
                result = result.WithBoot(RunPumped(() => BootCheck.RunRestorePoint(repository, point, BootOption ?? new BootCheckOptions(), CancelToken)));
                if (result.Boot?.Machine is VmMachine machine)
                {
                    WriteVerbose($"Booted {point.VmName} {point.Id} as {machine}.");
                }
            }

            WriteProgress(new ProgressRecord(activityId, activity, "Done") { RecordType = ProgressRecordType.Completed });
            WriteObject(result);
            if (result.Boot is BootCheckResult boot && !boot.Passed)
            {
                WriteFailure(new VmQuiesceException(
                    "RestorePointBootFailed",
                    FailureKind.InvalidData,
                    $"The restore point '{point.Id}' of VM '{point.VmName}' verifies, but its restored disks did not boot cleanly: {boot}",
                    result)
                {
                    Remedy = "Use an older restore point; check the VM's file systems before the next backup.",
                });
                return;
            }

            if (result.GetStatus() == VerificationStatus.Damaged)
            {
                if (folder != null)
                {
                    RecordDamage(folder, result);
                }

                string problems = string.Join("; ", result.Problems.Select(problem => problem.ToString()).Concat(result.FileHashMismatches.Select(file => $"whole-file digest of '{file}' differs")));
                // In an encrypted repository a chunk that does not open with the key was changed, swapped or planted.
                bool notAuthentic = result.Problems.Any(problem => problem.GetProblem() == ChunkProblemKind.NotAuthentic);
                WriteFailure(new VmQuiesceException(
                    notAuthentic ? "RestorePointNotAuthentic" : "RestorePointDamaged",
                    notAuthentic ? FailureKind.SecurityError : FailureKind.InvalidData,
                    $"The restore point '{point.Id}' of VM '{point.VmName}' is damaged; broken files: {string.Join(", ", result.BrokenFiles)}. {problems}",
                    result)
                {
                    Remedy = "Back the VM up again: the next backup of the same data stores the damaged chunks anew, which repairs every restore point that uses them. Restore an older point meanwhile, and check the repository's disk. Do not delete chunk files.",
                });
            }
        }

        /// <summary>The damaged chunks go on record for the next backup; a repository that cannot be written says why not.</summary>
        private void RecordDamage(BackupRepository repository, RestorePointVerification result)
        {
            try
            {
                int recorded = repository.RecordDamage(result);
                if (recorded > 0)
                {
                    WriteVerbose($"Recorded {recorded} damaged chunk(s) in '{repository.Path}': the next backup that has their data stores them anew.");
                }
            }
            catch (VmQuiesceException e)
            {
                WriteWarning($"The damaged chunks could not be recorded for the next backup to store anew: {e.Message}");
            }
        }
    }
}
