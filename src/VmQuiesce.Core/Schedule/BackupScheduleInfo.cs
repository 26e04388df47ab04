using System;
using System.Collections.Generic;
using System.Linq;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>
    /// A registered backup schedule as Get-VmBackupSchedule shows it: its settings, the exact command the
    /// scheduler runs, and what the scheduler knows of its runs (systemd's timer and service, or the task).
    /// </summary>
    public sealed class BackupScheduleInfo
    {
        public BackupScheduleInfo(BackupSchedule settings, string scheduler, string location, IReadOnlyList<string> command)
        {
            Settings = settings;
            Scheduler = scheduler;
            Location = location;
            Command = command;
        }

        public string Name => Settings.Name;

        public IReadOnlyList<string> Vm => Settings.Vm;

        public string Repository => Settings.Repository;

        public string At => Settings.At;

        public string Consistency => Settings.Consistency;

        public bool ChangeTracking => Settings.TracksChanges;

        public int VerifyChangeTrackingEvery => Settings.VerifyChangeTrackingEvery;

        /// <summary>The retention the job applies after its backups, in Remove-VmBackup's words ("KeepLast 7, KeepDaily 30"); empty for none.</summary>
        public string Retention => string.Join(", ", new[] { ("KeepLast", Settings.KeepLast), ("KeepDaily", Settings.KeepDaily), ("KeepWeekly", Settings.KeepWeekly), ("KeepMonthly", Settings.KeepMonthly) }
            .Where(rule => rule.Item2 > 0)
            .Select(rule => $"{rule.Item1} {rule.Item2}"));

        /// <summary>Where each run writes its log file; null for none.</summary>
        public string? LogFolder => Settings.LogFolder;

        public BackupSchedule Settings { get; }

        /// <summary>"systemd" or "TaskScheduler".</summary>
        public string Scheduler { get; }

        /// <summary>The service unit's path, or the task's path (\VmQuiesce\&lt;Name&gt;).</summary>
        public string Location { get; }

        /// <summary>The program and arguments the scheduler starts: run them to run the job by hand.</summary>
        public IReadOnlyList<string> Command { get; }

        /// <summary>False when what is installed differs from what Register-VmBackupSchedule writes for these settings (edited by hand, or by an older VmQuiesce).</summary>
        public bool IsCurrent { get; init; }

        /// <summary>
        /// What of the schedule is missing or unreadable, or null when it is whole: one of its two systemd units (after a
        /// crash between their writes, or a half removal by hand), or the settings recorded beside the job (then
        /// <see cref="Settings"/> holds the name alone). An incomplete schedule is not current; Register-VmBackupSchedule
        /// replaces it whole and Unregister-VmBackupSchedule removes what is left.
        /// </summary>
        public string? Missing { get; init; }

        /// <summary>False when part of the schedule is missing (see <see cref="Missing"/>).</summary>
        public bool IsComplete => Missing == null;

        /// <summary>Whether the scheduler will start the job; null when the scheduler cannot be asked (units in a folder systemd does not read).</summary>
        public bool? Enabled { get; init; }

        /// <summary>When the job last started (local time), or null: never, or unknown.</summary>
        public DateTime? LastRunTime { get; init; }

        /// <summary>The last run's exit code (0: every VM reached the consistency and retention succeeded; see about_VmQuiesce_Schedule), or null.</summary>
        public int? LastExitCode { get; init; }

        /// <summary>When the job starts next (local time): from the scheduler, or from the time of day when the scheduler cannot be asked.</summary>
        public DateTime? NextRunTime { get; init; }

        public override string ToString() => Name;

        /// <summary>The next local time of day <paramref name="at"/> after <paramref name="now"/>.</summary>
        public static DateTime NextDaily(TimeSpan at, DateTime now)
        {
            DateTime today = now.Date + at;
            return today > now ? today : today.AddDays(1);
        }
    }
}
