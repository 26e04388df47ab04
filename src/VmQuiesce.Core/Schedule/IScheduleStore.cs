using System.Collections.Generic;
using System.Threading;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>Where backup schedules live: systemd units (<see cref="SystemdSchedules"/>) or Windows scheduled tasks under \VmQuiesce\.</summary>
    public interface IScheduleStore
    {
        /// <summary>Creates the schedule, or replaces the one of the same name whole.</summary>
        void Install(BackupSchedule schedule, CancellationToken cancel);

        /// <summary>Stops and removes the schedule; false when there was none of that name.</summary>
        bool Remove(string name, CancellationToken cancel);

        /// <summary>Every schedule VmQuiesce registered here, with what the scheduler knows of its runs.</summary>
        IReadOnlyList<BackupScheduleInfo> List(CancellationToken cancel);
    }
}
