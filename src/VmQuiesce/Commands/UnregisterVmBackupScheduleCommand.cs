using System;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Schedule;

namespace VmQuiesce.Commands
{
    /// <summary>Stops and removes backup schedules (the restore points they made stay).</summary>
    [Cmdlet(VerbsLifecycle.Unregister, "VmBackupSchedule", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class UnregisterVmBackupScheduleCommand : ScheduleCommandBase
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[] Name { get; set; } = Array.Empty<string>();

        protected override void ProcessRecord()
        {
            IScheduleStore store = OpenStore();
            try
            {
                foreach (BackupScheduleInfo schedule in ScheduleNames.Match(store.List(CancelToken), Name, WriteFailure).ToList())
                {
                    string action = schedule.IsComplete ? $"Unregister the daily backup at {schedule.At} ({schedule.Location})"
                        : $"Remove what is left of the schedule ({schedule.Location}; {schedule.Missing} is missing)";
                    if (ShouldProcess(schedule.Name, action))
                    {
                        store.Remove(schedule.Name, CancelToken);
                    }
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
