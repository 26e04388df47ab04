using System;
using System.IO;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Schedule;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Registers a daily backup job (a systemd timer, or a scheduled task run as SYSTEM) that backs the VMs up and
    /// applies the retention policy through Invoke-VmBackupJob, with a documented exit code.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Register, "VmBackupSchedule", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(BackupScheduleInfo))]
    public sealed class RegisterVmBackupScheduleCommand : ScheduleCommandBase
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; } = string.Empty;

        /// <summary>Names of running QEMU VMs (wildcards allowed), QMP sockets and .vmx paths.</summary>
        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public string[] Vm { get; set; } = Array.Empty<string>();

        [Parameter(Mandatory = true, Position = 2, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>Local time of day, HH:mm.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string At { get; set; } = "03:00";

        [Parameter(ValueFromPipelineByPropertyName = true)]
        public Consistency Consistency { get; set; } = Consistency.FileSystem;

        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepLast { get; set; }

        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepDaily { get; set; }

        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepWeekly { get; set; }

        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepMonthly { get; set; }

        /// <summary>A folder that gets one log file per run.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? LogFolder { get; set; }

        /// <summary>The PowerShell the job runs; default: an installed PowerShell 7, else Windows PowerShell.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? PowerShellPath { get; set; }

        /// <summary>Back up QEMU VMs with -ChangeTracking: each run reads only what changed since the last.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        public SwitchParameter ChangeTracking { get; set; }

        /// <summary>Every this many backups of a QEMU VM, read it in full and check its change tracking; implies -ChangeTracking.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateRange(1, int.MaxValue)]
        public int VerifyChangeTrackingEvery { get; set; }

        /// <summary>A second repository (a folder or s3://bucket/prefix) each run copies its new restore points to.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string? CopyTo { get; set; }

        /// <summary>The endpoint of the non-AWS S3 store -Repository or -CopyTo names (the job's credentials come from its account's AWS chain).</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNull]
        public Uri? S3Endpoint { get; set; }

        /// <summary>The AWS profile, in the shared credentials file of the account the job runs as, that the copy signs with.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? S3ProfileName { get; set; }

        /// <summary>Writes the registered schedule.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            BackupSchedule schedule;
            try
            {
                string powerShell = PowerShellPath == null ? JobEnvironment.FindPowerShell() : ResolveItemFileSystemPath(PowerShellPath, nameof(PowerShellPath));
                if (!File.Exists(powerShell))
                {
                    throw new VmQuiesceException("PowerShellNotFound", FailureKind.ObjectNotFound, $"-PowerShellPath '{powerShell}' is not a file; expected the absolute path of pwsh or powershell.exe.", powerShell);
                }

                string modulePath = JobEnvironment.ModuleImportPath(MyInvocation.MyCommand.Module?.ModuleBase ?? Path.GetDirectoryName(typeof(BackupSchedule).Assembly.Location)!);
                schedule = new BackupSchedule(Name, Vm.Select(ResolveTarget).ToList(), S3RepositoryAddress.IsS3(Repository) ? Repository : ResolveItemFileSystemPath(Repository, nameof(Repository)), Consistency)
                {
                    At = At,
                    KeepLast = KeepLast,
                    KeepDaily = KeepDaily,
                    KeepWeekly = KeepWeekly,
                    KeepMonthly = KeepMonthly,
                    LogFolder = LogFolder == null ? null : ResolveItemFileSystemPath(LogFolder, nameof(LogFolder)),
                    ChangeTracking = ChangeTracking,
                    VerifyChangeTrackingEvery = VerifyChangeTrackingEvery,
                    CopyTo = CopyTo == null || S3RepositoryAddress.IsS3(CopyTo) ? CopyTo : ResolveItemFileSystemPath(CopyTo, nameof(CopyTo)),
                    S3Endpoint = S3Endpoint,
                    S3ProfileName = S3ProfileName,
                    PowerShellPath = powerShell,
                    ModulePath = modulePath,
                };
                schedule.Validate();
                if (JobEnvironment.WhyNotForJobAccount(modulePath) is string why)
                {
                    WriteWarning(why);
                }
            }
            catch (VmQuiesceException e)
            {
                // Every parameter binds from the pipeline (Import-Csv | Register-VmBackupSchedule): a bad row fails alone.
                WriteFailure(e);
                return;
            }

            IScheduleStore store = OpenStore();
            if (!ShouldProcess(Name, $"Register a daily backup at {schedule.At} of {string.Join(", ", schedule.Vm)} into '{schedule.Repository}' ({schedule.Consistency} consistency or better)" + (schedule.CopyTo != null ? $", copied to '{schedule.CopyTo}'" : string.Empty)))
            {
                return;
            }

            try
            {
                store.Install(schedule, CancelToken);
                if (PassThru)
                {
                    WriteObject(store.List(CancelToken).Where(info => info.Name == schedule.Name), enumerateCollection: true);
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }

        /// <summary>A socket or .vmx path made absolute (the job runs in another folder); a VM name stays as it is.</summary>
        private string ResolveTarget(string target) =>
            BackupSchedule.IsPathTarget(target) ? ResolveItemFileSystemPath(target, nameof(Vm)) : target;
    }
}
