using System;
using System.Linq;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>
    /// A backup schedule as a Windows scheduled task under \VmQuiesce\ shows it: the task's name, its description (the
    /// recorded settings), its action and what Get-ScheduledTaskInfo says of its runs. Kept apart from the store that
    /// asks the Task Scheduler, so that it is tested everywhere.
    /// </summary>
    public static class ScheduledTaskSchedule
    {
        public const string TaskPath = "\\VmQuiesce\\";

        // The Task Scheduler's "has not run yet" result.
        private const int NeverRun = 0x41303;

        /// <summary>
        /// The schedule of task <paramref name="taskName"/>. A task whose description no longer holds its settings (edited
        /// by hand) is still a schedule VmQuiesce made there: it is listed as incomplete, so Unregister removes it and the
        /// DSC resource does not take it for absent.
        /// </summary>
        public static BackupScheduleInfo FromTask(string taskName, string? description, string? execute, string? arguments, string? state, DateTime? lastRunTime, int? lastTaskResult, DateTime? nextRunTime)
        {
            BackupSchedule? settings = description == null ? null : BackupSchedule.FromJson(description);
            if (settings != null && !string.Equals(settings.Name, taskName, StringComparison.OrdinalIgnoreCase))
            {
                settings = null; // another task's settings, copied by hand: they do not describe this task
            }

            bool ran = lastRunTime != null && lastRunTime.Value.Year >= 2000 && lastTaskResult != NeverRun;
            return new BackupScheduleInfo(settings ?? BackupSchedule.Unrecorded(taskName), "TaskScheduler", TaskPath + taskName,
                settings == null ? Array.Empty<string>() : new[] { settings.PowerShellPath }.Concat(settings.JobArguments()).ToList())
            {
                IsCurrent = settings != null && execute == settings.PowerShellPath && arguments == settings.JobArgumentLine(),
                Missing = settings == null ? "the settings recorded in the task's description" : null,
                Enabled = state != null ? state != "Disabled" : (bool?)null,
                LastRunTime = ran ? lastRunTime : null,
                LastExitCode = ran ? lastTaskResult : null,
                NextRunTime = nextRunTime != null && nextRunTime.Value.Year >= 2000 ? nextRunTime : null,
            };
        }
    }
}
