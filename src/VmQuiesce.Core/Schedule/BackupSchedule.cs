using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;

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

        /// <summary>Exit code when every VM was backed up (and retention succeeded) but copying the new points to <see cref="CopyTo"/> failed.</summary>
        public const int ExitCopyFailed = 4;

        private static readonly Regex NamePattern = new Regex("^[A-Za-z0-9_.-]{1,64}$", RegexOptions.CultureInvariant);

        public BackupSchedule(string name, IReadOnlyList<string> vm, string repository, Consistency consistency = Core.Consistency.FileSystem)
        {
            Name = name;
            Vm = vm;
            Repository = repository;
            ConsistencyValue = consistency;
        }

        /// <summary>What no job command line or unit file line can carry: a line break (it would start a line of its own) or NUL.</summary>
        internal static readonly char[] LineBreaks = { '\r', '\n', '\0' };

        /// <summary>Names the task (\VmQuiesce\&lt;Name&gt;) or the units (vmquiesce-backup-&lt;Name&gt;.service/.timer).</summary>
        public string Name { get; }

        /// <summary>The targets: names of running QEMU VMs (wildcards allowed), QMP sockets, .vmx paths.</summary>
        public IReadOnlyList<string> Vm { get; }

        public string Repository { get; }

        /// <summary>Local time of day the job starts, HH:mm.</summary>
        public string At { get; init; } = "03:00";

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="ConsistencyValue"/> is the typed value.</summary>
        public string Consistency => ConsistencyValue.ToString();

        internal Consistency ConsistencyValue { get; init; }

        /// <summary>The typed <see cref="Consistency"/>, for code that compares levels.</summary>
        public Consistency GetConsistency() => ConsistencyValue;

        public int KeepLast { get; init; }

        public int KeepDaily { get; init; }

        public int KeepWeekly { get; init; }

        public int KeepMonthly { get; init; }

        /// <summary>A folder that gets one log file per run, or null for none.</summary>
        public string? LogFolder { get; init; }

        /// <summary>QEMU VMs are backed up with -ChangeTracking: each run reads only what changed since the last.</summary>
        public bool ChangeTracking { get; init; }

        /// <summary>
        /// Every this many backups of a QEMU VM, the job reads it in full and checks its change tracking
        /// (-VerifyChangeTracking); 0 never. Implies <see cref="ChangeTracking"/>.
        /// </summary>
        public int VerifyChangeTrackingEvery { get; init; }

        /// <summary>Whether the job backs up QEMU VMs with change tracking (asked for, or implied by a verification interval).</summary>
        public bool TracksChanges => ChangeTracking || VerifyChangeTrackingEvery > 0;

        /// <summary>
        /// A second repository (a folder or s3://bucket/prefix) each run copies its new restore points to, with
        /// Copy-VmBackup: the off-host copy of a 3-2-1 rule. Null: no copy step.
        /// </summary>
        public string? CopyTo { get; init; }

        /// <summary>The endpoint of a non-AWS S3 store the copy goes to (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS).</summary>
        public Uri? S3Endpoint { get; init; }

        /// <summary>The AWS profile (shared credentials file of the job's account) the copy signs with; else the AWS chain's default.</summary>
        public string? S3ProfileName { get; init; }

        /// <summary>The PowerShell the job runs: an absolute path.</summary>
        public string PowerShellPath { get; init; } = string.Empty;

        /// <summary>The VmQuiesce module the job imports: an absolute path (the folder holding its version folders, or its manifest).</summary>
        public string ModulePath { get; init; } = string.Empty;

        public bool HasRetention => KeepLast > 0 || KeepDaily > 0 || KeepWeekly > 0 || KeepMonthly > 0;

        /// <summary>
        /// Whether this backup of a VM is its one in every <paramref name="every"/> that verifies the change tracking
        /// (-VerifyChangeTracking): true when <paramref name="pointsOfVm"/> (the VM's restore points) hold at least
        /// every - 1 change-tracked points newer than its last verified one. Counted from the repository, so a
        /// missed or failed run does not shift the turn, and nothing is kept beside the job.
        /// </summary>
        public static bool IsVerificationDue(IEnumerable<RestorePoint> pointsOfVm, int every)
        {
            if (every <= 0)
            {
                return false;
            }

            int sinceVerified = pointsOfVm.Where(point => point.ChangeTracking != null)
                .OrderByDescending(point => point.StartTime)
                .TakeWhile(point => !point.Files.Any(file => file.ChangeTrackingValue?.Verified == true))
                .Count();
            return sinceVerified >= every - 1;
        }

        /// <summary>
        /// Whether a VM target is a file path (a QMP socket or a .vmx file), which Register-VmBackupSchedule records as
        /// an absolute path; a VM name and a tcp: QMP address are recorded as given. The DSC resource compares by it too.
        /// </summary>
        public static bool IsPathTarget(string target) =>
            (target.IndexOfAny(new[] { '/', '\\' }) >= 0 || target.EndsWith(".vmx", StringComparison.OrdinalIgnoreCase))
            && !target.StartsWith("tcp:", StringComparison.Ordinal);

        /// <summary>The time of day as a TimeSpan (after <see cref="Validate"/>).</summary>
        internal TimeSpan TimeOfDay => TimeSpan.ParseExact(At, "hh\\:mm", CultureInfo.InvariantCulture);

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

            // Every text that reaches the job's command line or the unit file (a line break there would start a line of its own).
            foreach (string text in Vm.Concat(new[] { Repository, LogFolder ?? string.Empty, PowerShellPath, ModulePath, CopyTo ?? string.Empty, S3Endpoint?.OriginalString ?? string.Empty, S3ProfileName ?? string.Empty }))
            {
                if (text.IndexOfAny(LineBreaks) >= 0)
                {
                    throw Invalid("ScheduleTextInvalid", $"Schedule '{Name}': '{text.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\0", "\\0")}' holds a line break or NUL, which no job command line can carry.", text);
                }
            }

            if (new[] { KeepLast, KeepDaily, KeepWeekly, KeepMonthly }.Any(keep => keep < 0))
            {
                throw Invalid("ScheduleRetentionInvalid", $"Schedule '{Name}': the Keep settings must be 0 (rule off) or more.", this);
            }

            if (VerifyChangeTrackingEvery < 0)
            {
                throw Invalid("ScheduleVerifyIntervalInvalid", $"Schedule '{Name}': VerifyChangeTrackingEvery is {VerifyChangeTrackingEvery}; expected 0 (never) or a number of backups.", VerifyChangeTrackingEvery);
            }

            ValidateCopy();
            foreach ((string value, string what) in new[] { (PowerShellPath, "PowerShellPath"), (ModulePath, "ModulePath"), (LogFolder ?? "/", "LogFolder") })
            {
                if (!Platform.HostTools.IsAbsolute(value))
                {
                    throw Invalid("SchedulePathNotAbsolute", $"Schedule '{Name}': {what} '{value}' is not an absolute path; the job runs as root or SYSTEM in another folder and environment.", value);
                }
            }
        }

        /// <summary>The repository and the copy's: each s3://bucket/prefix or an absolute folder; the S3 settings only with one on S3 (the job's credentials come from its account's AWS chain, never from here).</summary>
        private void ValidateCopy()
        {
            bool fromS3 = S3RepositoryAddress.IsS3(Repository);
            if (fromS3)
            {
                S3RepositoryAddress.Parse(Repository);
            }

            bool toS3 = CopyTo != null && S3RepositoryAddress.IsS3(CopyTo);
            if (toS3)
            {
                S3RepositoryAddress.Parse(CopyTo!);
            }
            else if (CopyTo != null && !Platform.HostTools.IsAbsolute(CopyTo))
            {
                throw Invalid("SchedulePathNotAbsolute", $"Schedule '{Name}': CopyTo '{CopyTo}' is neither s3://bucket/prefix nor an absolute folder path; the job runs as root or SYSTEM in another folder and environment.", CopyTo);
            }

            if (string.Equals(CopyTo, Repository, StringComparison.Ordinal))
            {
                throw Invalid("ScheduleCopyToSameRepository", $"Schedule '{Name}': CopyTo is the repository the job backs up into ('{CopyTo}'); a copy must go to another place.", CopyTo);
            }

            if (S3Endpoint != null && (!S3Endpoint.IsAbsoluteUri || (S3Endpoint.Scheme != Uri.UriSchemeHttp && S3Endpoint.Scheme != Uri.UriSchemeHttps) || S3Endpoint.UserInfo.Length > 0))
            {
                throw Invalid("ScheduleS3EndpointInvalid", $"Schedule '{Name}': S3Endpoint '{S3Endpoint.Scheme}://{S3Endpoint.Authority}' is not an absolute http:// or https:// address without a user name or password.", S3Endpoint.Authority);
            }

            if (S3ProfileName != null && !NamePattern.IsMatch(S3ProfileName))
            {
                throw Invalid("ScheduleS3ProfileInvalid", $"Schedule '{Name}': the AWS profile name '{S3ProfileName}' may hold only letters, digits, '.', '_' and '-' (1 to 64 of them).", S3ProfileName);
            }

            if (!fromS3 && !toS3 && (S3Endpoint != null || S3ProfileName != null))
            {
                throw Invalid("ScheduleCopySettingsWithoutCopy", $"Schedule '{Name}': S3Endpoint and S3ProfileName are settings of an s3:// repository or copy; neither Repository nor CopyTo is on S3.", this);
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

            if (TracksChanges)
            {
                job.Append(" -ChangeTracking");
            }

            if (VerifyChangeTrackingEvery > 0)
            {
                job.Append(" -VerifyChangeTrackingEvery ").Append(VerifyChangeTrackingEvery.ToString(CultureInfo.InvariantCulture));
            }

            if (CopyTo != null)
            {
                job.Append(" -CopyTo ").Append(PowerShellText.SingleQuoted(CopyTo));
            }

            if (S3Endpoint != null)
            {
                job.Append(" -S3Endpoint ").Append(PowerShellText.SingleQuoted(S3Endpoint.OriginalString));
            }

            if (S3ProfileName != null)
            {
                job.Append(" -S3ProfileName ").Append(PowerShellText.SingleQuoted(S3ProfileName));
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

        /// <summary>
        /// The settings as the one-line JSON recorded beside the job. Change tracking and the copy step are recorded
        /// only when on, so a schedule registered before they existed still reads as current.
        /// </summary>
        public string ToJson()
        {
            JsonObject json = new JsonObject()
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
                .With("modulePath", ModulePath);
            if (TracksChanges)
            {
                json.With("changeTracking", true).With("verifyChangeTrackingEvery", (long)VerifyChangeTrackingEvery);
            }

            if (CopyTo != null)
            {
                json.With("copyTo", CopyTo);
            }

            if (CopyTo != null || S3Endpoint != null || S3ProfileName != null)
            {
                // Settings of the copy or of an s3:// repository itself.
                json.With("s3Endpoint", S3Endpoint?.OriginalString).With("s3ProfileName", S3ProfileName);
            }

            return json.ToString();
        }

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
                    ConsistencyValue = (Consistency)Enum.Parse(typeof(Consistency), json.GetString("consistency")),
                    KeepLast = (int)(json.GetOptionalInt64("keepLast") ?? 0),
                    KeepDaily = (int)(json.GetOptionalInt64("keepDaily") ?? 0),
                    KeepWeekly = (int)(json.GetOptionalInt64("keepWeekly") ?? 0),
                    KeepMonthly = (int)(json.GetOptionalInt64("keepMonthly") ?? 0),
                    LogFolder = json.GetOptionalString("logFolder"),
                    ChangeTracking = json.GetOptionalBoolean("changeTracking") ?? false,
                    VerifyChangeTrackingEvery = checked((int)(json.GetOptionalInt64("verifyChangeTrackingEvery") ?? 0)),
                    CopyTo = json.GetOptionalString("copyTo"),
                    S3Endpoint = json.GetOptionalString("s3Endpoint") is string endpoint ? new Uri(endpoint, UriKind.Absolute) : null,
                    S3ProfileName = json.GetOptionalString("s3ProfileName"),
                    PowerShellPath = json.GetString("powerShellPath"),
                    ModulePath = json.GetString("modulePath"),
                };
            }
            catch (Exception e) when (e is JsonFormatException || e is ArgumentException || e is OverflowException || e is UriFormatException)
            {
                return null;
            }
        }

        /// <summary>Whether <paramref name="name"/> is one Register-VmBackupSchedule accepts (and so may name a schedule it made).</summary>
        internal static bool IsValidName(string name) => NamePattern.IsMatch(name);

        /// <summary>
        /// The settings of a schedule found installed whose own record of them is missing or unreadable: its name alone,
        /// no VM, no repository, no time (see <see cref="BackupScheduleInfo.Missing"/>).
        /// </summary>
        internal static BackupSchedule Unrecorded(string name) => new BackupSchedule(name, Array.Empty<string>(), string.Empty) { At = string.Empty };

        private static VmQuiesceException Invalid(string errorId, string message, object? target) =>
            new VmQuiesceException(errorId, FailureKind.InvalidArgument, message, target);
    }
}
