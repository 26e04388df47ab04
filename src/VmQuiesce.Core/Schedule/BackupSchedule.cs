using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>
    /// A daily backup job as Register-VmBackupSchedule installs it: which VMs, which repository, when, at what
    /// consistency, the retention policy, and the PowerShell and module the job runs. The job's command line is
    /// built from these settings alone, and the settings are recorded beside it (in the service unit or the task's
    /// description) so Get-VmBackupSchedule reads them back. No secret is ever part of it.
    /// </summary>
    public sealed class BackupSchedule
    {
        /// <summary>Exit code of a job run in which every VM reached the consistency and retention succeeded.</summary>
        public const int ExitSuccess = 0;

        /// <summary>Exit code when PowerShell could not run the job (the module did not import, a setting was refused).</summary>
        public const int ExitJobFailed = 1;

        /// <summary>Exit code when at least one VM was not backed up at the required consistency.</summary>
        public const int ExitVmFailed = 2;

        /// <summary>Exit code when every VM was backed up but the retention policy failed.</summary>
        public const int ExitRetentionFailed = 3;

        private static readonly Regex NamePattern = new Regex("^[A-Za-z0-9_.-]{1,64}$", RegexOptions.CultureInvariant);

        public BackupSchedule(string name, IReadOnlyList<string> vm, string repository)
        {
            Name = name;
            Vm = vm;
            Repository = repository;
        }

        /// <summary>Names the task (\VmQuiesce\&lt;Name&gt;) or the units (vmquiesce-backup-&lt;Name&gt;.service/.timer).</summary>
        public string Name { get; }

        /// <summary>The targets: names of running QEMU VMs (wildcards allowed), QMP sockets, .vmx paths.</summary>
        public IReadOnlyList<string> Vm { get; }

        public string Repository { get; }

        /// <summary>Local time of day the job starts, HH:mm.</summary>
        public string At { get; init; } = "03:00";

        public Consistency Consistency { get; init; } = Consistency.FileSystem;

        public int KeepLast { get; init; }

        public int KeepDaily { get; init; }

        public int KeepWeekly { get; init; }

        public int KeepMonthly { get; init; }

        /// <summary>A folder that gets one log file per run, or null for none.</summary>
        public string? LogFolder { get; init; }

        /// <summary>The PowerShell the job runs: an absolute path.</summary>
        public string PowerShellPath { get; init; } = string.Empty;

        /// <summary>The VmQuiesce module the job imports: an absolute path (the folder holding its version folders, or its manifest).</summary>
        public string ModulePath { get; init; } = string.Empty;

        public bool HasRetention => KeepLast > 0 || KeepDaily > 0 || KeepWeekly > 0 || KeepMonthly > 0;

        /// <summary>The time of day as a TimeSpan (after <see cref="Validate"/>).</summary>
        public TimeSpan TimeOfDay => TimeSpan.ParseExact(At, "hh\\:mm", CultureInfo.InvariantCulture);

        /// <summary>Rejects settings that cannot make a working job, naming the setting and what was expected. Changes nothing.</summary>
        public void Validate()
        {
            if (!NamePattern.IsMatch(Name ?? string.Empty))
            {
                throw Invalid("ScheduleNameInvalid", $"The schedule name '{Name}' may hold only letters, digits, '.', '_' and '-' (1 to 64 of them): it names a scheduled task or systemd units.", Name);
            }

            if (!TimeSpan.TryParseExact(At ?? string.Empty, "hh\\:mm", CultureInfo.InvariantCulture, out TimeSpan time) || time >= TimeSpan.FromDays(1))
            {
                throw Invalid("ScheduleTimeInvalid", $"Schedule '{Name}': the time '{At}' is not a time of day HH:mm (for example 03:00).", At);
            }

            if (Vm == null || Vm.Count == 0 || Vm.Any(string.IsNullOrWhiteSpace))
            {
                throw Invalid("ScheduleVmMissing", $"Schedule '{Name}': give at least one VM (a running QEMU VM's name, a QMP socket or a .vmx path), none empty.", Vm);
            }

            if (string.IsNullOrWhiteSpace(Repository))
            {
                throw Invalid("ScheduleRepositoryMissing", $"Schedule '{Name}': give the repository the job backs up into.", Repository);
            }

            foreach (string text in Vm.Concat(new[] { Repository, LogFolder ?? string.Empty, PowerShellPath, ModulePath }))
            {
                if (text.IndexOfAny(new[] { '\r', '\n', '\0' }) >= 0)
                {
                    throw Invalid("ScheduleTextInvalid", $"Schedule '{Name}': '{text.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\0", "\\0")}' holds a line break or NUL, which no job command line can carry.", text);
                }
            }

            if (new[] { KeepLast, KeepDaily, KeepWeekly, KeepMonthly }.Any(keep => keep < 0))
            {
                throw Invalid("ScheduleRetentionInvalid", $"Schedule '{Name}': the Keep settings must be 0 (rule off) or more.", this);
            }

            foreach ((string value, string what) in new[] { (PowerShellPath, "PowerShellPath"), (ModulePath, "ModulePath"), (LogFolder ?? "/", "LogFolder") })
            {
                if (!Platform.HostTools.IsAbsolute(value))
                {
                    throw Invalid("SchedulePathNotAbsolute", $"Schedule '{Name}': {what} '{value}' is not an absolute path; the job runs as root or SYSTEM in another folder and environment.", value);
                }
            }
        }

        /// <summary>
        /// The PowerShell command the job runs: import this module by path (root's or SYSTEM's module path may not
        /// hold it) and run Invoke-VmBackupJob with these settings; its result's exit code is the process's.
        /// </summary>
        public string JobScript()
        {
            var job = new StringBuilder("Invoke-VmBackupJob -Name ").Append(PowerShellText.SingleQuoted(Name))
                .Append(" -Vm ").Append(string.Join(",", Vm.Select(PowerShellText.SingleQuoted)))
                .Append(" -Repository ").Append(PowerShellText.SingleQuoted(Repository))
                .Append(" -Consistency ").Append(Consistency);
            foreach ((int keep, string parameter) in new[] { (KeepLast, "KeepLast"), (KeepDaily, "KeepDaily"), (KeepWeekly, "KeepWeekly"), (KeepMonthly, "KeepMonthly") })
            {
                if (keep > 0)
                {
                    job.Append(" -").Append(parameter).Append(' ').Append(keep.ToString(CultureInfo.InvariantCulture));
                }
            }

            if (LogFolder != null)
            {
                job.Append(" -LogFolder ").Append(PowerShellText.SingleQuoted(LogFolder));
            }

            return $"Import-Module -Name {PowerShellText.SingleQuoted(ModulePath)} -ErrorAction Stop; exit ({job}).ExitCode";
        }

        /// <summary>The arguments PowerShell gets, after its own path.</summary>
        public IReadOnlyList<string> JobArguments() => new[] { "-NoProfile", "-NonInteractive", "-Command", JobScript() };

        /// <summary>The arguments as one Windows command line (a scheduled task's action), each quoted as the C runtime reads it back.</summary>
        public string JobArgumentLine() => string.Join(" ", JobArguments().Select(Platform.ToolCommand.Quote));

        /// <summary>The settings as the one-line JSON recorded beside the job.</summary>
        public string ToJson() => new JsonObject()
            .With("name", Name)
            .With("vm", new JsonArray(Vm.Select(v => (object?)v)))
            .With("repository", Repository)
            .With("at", At)
            .With("consistency", Consistency.ToString())
            .With("keepLast", (long)KeepLast)
            .With("keepDaily", (long)KeepDaily)
            .With("keepWeekly", (long)KeepWeekly)
            .With("keepMonthly", (long)KeepMonthly)
            .With("logFolder", LogFolder)
            .With("powerShellPath", PowerShellPath)
            .With("modulePath", ModulePath)
            .ToString();

        /// <summary>Settings read back from what Register recorded; null when the text is not such a record.</summary>
        public static BackupSchedule? FromJson(string text)
        {
            try
            {
                JsonObject json = JsonText.ParseObject(text);
                return new BackupSchedule(
                    json.GetString("name"),
                    json.GetArray("vm").Select(v => v as string ?? throw new JsonFormatException("vm holds a non-string")).ToList(),
                    json.GetString("repository"))
                {
                    At = json.GetString("at"),
                    Consistency = (Consistency)Enum.Parse(typeof(Consistency), json.GetString("consistency")),
                    KeepLast = (int)(json.GetOptionalInt64("keepLast") ?? 0),
                    KeepDaily = (int)(json.GetOptionalInt64("keepDaily") ?? 0),
                    KeepWeekly = (int)(json.GetOptionalInt64("keepWeekly") ?? 0),
                    KeepMonthly = (int)(json.GetOptionalInt64("keepMonthly") ?? 0),
                    LogFolder = json.GetOptionalString("logFolder"),
                    PowerShellPath = json.GetString("powerShellPath"),
                    ModulePath = json.GetString("modulePath"),
                };
            }
            catch (Exception e) when (e is JsonFormatException || e is ArgumentException || e is OverflowException)
            {
                return null;
            }
        }


        private static VmQuiesceException Invalid(string errorId, string message, object? target) =>
            new VmQuiesceException(errorId, FailureKind.InvalidArgument, message, target);
    }
}
