using System.Management.Automation;
using System.Management.Automation.Runspaces;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Schedule;

namespace VmQuiesce.Commands
{
    /// <summary>What the schedule cmdlets share: where schedules live on this host.</summary>
    public abstract class ScheduleCommandBase : VmQuiesceCmdlet
    {
        /// <summary>Linux: the folder for the units (default /etc/systemd/system; systemctl runs only for a folder systemd reads).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? UnitDirectory { get; set; }

        /// <summary>systemd units on Linux and macOS-less Unix; scheduled tasks under \VmQuiesce\ on Windows.</summary>
        internal IScheduleStore OpenStore()
        {
            if (HostPlatform.IsWindows)
            {
                if (UnitDirectory != null)
                {
                    ThrowInvalidArgument("UnitDirectoryNotSupported", "-UnitDirectory names a folder of systemd units; on Windows schedules are scheduled tasks under \\VmQuiesce\\.", UnitDirectory);
                }

                return new ScheduledTaskStore((script, arguments) => InvokeCommand.InvokeScript(script, false, PipelineResultTypes.Output, null, arguments));
            }

            return new SystemdSchedules(UnitDirectory == null ? null : ResolveFileSystemPath(UnitDirectory, nameof(UnitDirectory)));
        }
    }
}
