using System;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Makes the VMware VSS Writer Service (or a named service / systemd unit) log on as an account,
    /// after checking the account, its password, its rights and its access to each VM folder.
    /// </summary>
    [Cmdlet(VerbsCommon.Set, "VssWriterServiceLogon", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(ServiceLogonInfo))]
    public sealed class SetVssWriterServiceLogonCommand : ServiceLogonRequestCommandBase
    {
        /// <summary>Adds a Modify rule (Windows) or an rwx ACL entry (Linux) for the account on each VM folder that lacks it.</summary>
        [Parameter]
        public SwitchParameter GrantFolderAccess { get; set; }

        /// <summary>Restarts the service even when it was not running.</summary>
        [Parameter]
        public SwitchParameter Restart { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            ServiceLogonRequest request = BuildRequest() with { GrantFolderAccess = GrantFolderAccess, Restart = Restart };
            try
            {
                ServiceLogonManager manager = CreateManager();
                // On a worker thread: each ShouldProcess question comes back to this thread through the pump.
                IOperationHost host = CreateHost();
                ServiceLogonChange change = RunPumped(() => manager.Set(request, host, CancelToken));
                foreach (string action in change.Actions)
                {
                    WriteVerbose(action);
                }

                if (PassThru)
                {
                    WriteObject(manager.Get(change.ServiceName, request.VmFolders, WriteFailure));
                }
            }
            catch (VmQuiesceException failure)
            {
                WriteFailure(failure);
            }
        }
    }
}
