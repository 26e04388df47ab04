using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Schedule;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Backup schedules as Windows scheduled tasks under \VmQuiesce\, run as SYSTEM daily, through the ScheduledTasks
    /// module that Windows PowerShell and PowerShell 7 share (and that a test can stand in for). The task's
    /// description records the settings; Get-ScheduledTaskInfo gives the last run, its result and the next run.
    /// </summary>
    internal sealed class ScheduledTaskStore : IScheduleStore
    {
        public const string TaskPath = ScheduledTaskSchedule.TaskPath;

        private const string InstallScript =
            "param($name, $execute, $arguments, $at, $description) " +
            "$action = New-ScheduledTaskAction -Execute $execute -Argument $arguments; " +
            "$trigger = New-ScheduledTaskTrigger -Daily -At ([datetime]::ParseExact($at, 'HH:mm', [cultureinfo]::InvariantCulture)); " +
            "$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest; " +
            "$null = Register-ScheduledTask -TaskPath '" + TaskPath + "' -TaskName $name -Action $action -Trigger $trigger -Principal $principal -Description $description -Force -ErrorAction Stop";

        private const string ListScript =
            "Get-ScheduledTask -TaskPath '" + TaskPath + "' -ErrorAction SilentlyContinue | ForEach-Object { " +
            "$info = $_ | Get-ScheduledTaskInfo -ErrorAction SilentlyContinue; " +
            "[pscustomobject]@{ Name = $_.TaskName; Description = $_.Description; Execute = @($_.Actions)[0].Execute; Arguments = @($_.Actions)[0].Arguments; " +
            "State = [string]$_.State; LastRunTime = $info.LastRunTime; LastTaskResult = $info.LastTaskResult; NextRunTime = $info.NextRunTime } }";

        private const string RemoveScript =
            "param($name) if (Get-ScheduledTask -TaskPath '" + TaskPath + "' -TaskName $name -ErrorAction SilentlyContinue) { " +
            "Unregister-ScheduledTask -TaskPath '" + TaskPath + "' -TaskName $name -Confirm:$false -ErrorAction Stop; $true } else { $false }";

        private readonly Func<string, object?[], Collection<PSObject>> _invoke;

        /// <param name="invoke">Runs a script with arguments in the caller's session (the cmdlet's InvokeCommand).</param>
        public ScheduledTaskStore(Func<string, object?[], Collection<PSObject>> invoke)
        {
            _invoke = invoke;
        }

        public void Install(BackupSchedule schedule, CancellationToken cancel)
        {
            schedule.Validate();
            Run(InstallScript, schedule.Name, schedule.PowerShellPath, schedule.JobArgumentLine(), schedule.At, schedule.ToJson());
        }

        public bool Remove(string name, CancellationToken cancel) =>
            Run(RemoveScript, name).Select(result => result.BaseObject).OfType<bool>().FirstOrDefault();

        public IReadOnlyList<BackupScheduleInfo> List(CancellationToken cancel)
        {
            // Every task in the folder is one of ours (Register-VmBackupSchedule alone puts tasks there), its settings readable or not.
            return Run(ListScript)
                .Where(task => !string.IsNullOrEmpty(Property<string>(task, "Name")))
                .Select(task => ScheduledTaskSchedule.FromTask(Property<string>(task, "Name")!, Property<string>(task, "Description"), Property<string>(task, "Execute"),
                    Property<string>(task, "Arguments"), Property<string>(task, "State"), Property<DateTime?>(task, "LastRunTime"), Property<int?>(task, "LastTaskResult"),
                    Property<DateTime?>(task, "NextRunTime")))
                .ToList();
        }

        private Collection<PSObject> Run(string script, params object?[] arguments)
        {
            try
            {
                return _invoke(script, arguments);
            }
            catch (RuntimeException e)
            {
                throw new VmQuiesceException("ScheduledTaskFailed", FailureKind.InvalidOperation,
                    $"The Task Scheduler refused the request for folder {TaskPath}: {e.Message}", TaskPath, e)
                {
                    Remedy = "Run in an elevated PowerShell on Windows (the ScheduledTasks module registers tasks that run as SYSTEM).",
                };
            }
        }

        private static T? Property<T>(PSObject item, string name)
        {
            object? value = item.Properties[name]?.Value;
            value = value is PSObject wrapped ? wrapped.BaseObject : value;
            return value == null ? default : LanguagePrimitives.ConvertTo<T>(value);
        }
    }
}
