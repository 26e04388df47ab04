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
    public sealed class SetVssWriterServiceLogonCommand : VmQuiesceCmdlet
    {
        /// <summary>The account to log on as; its password is checked before anything changes (Windows) and ignored on Linux.</summary>
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? ServiceName { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[] VmFolder { get; set; } = Array.Empty<string>();

        /// <summary>Adds a Modify rule (Windows) or an rwx ACL entry (Linux) for the account on each VM folder that lacks it.</summary>
        [Parameter]
        public SwitchParameter GrantFolderAccess { get; set; }

        /// <summary>Restarts the service even when it was not running.</summary>
        [Parameter]
        public SwitchParameter Restart { get; set; }

        /// <summary>Linux only: the systemd Group= to run the unit with.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Group { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? UnitDirectory { get; set; }

        /// <summary>Where the password verifier is kept (default %ProgramData%\VmQuiesce or /var/lib/vmquiesce).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? StateDirectory { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessRecord()
        {
            if (Credential == PSCredential.Empty || string.IsNullOrEmpty(Credential.UserName))
            {
                ThrowInvalidArgument("CredentialRequired", "-Credential must name the account the service logs on as.", Credential);
            }

            string[] folders = Array.ConvertAll(VmFolder, f => ResolvePath(f)!);
            try
            {
                ServiceLogonManager manager = ServiceLogonSupport.CreateManager(ResolvePath(UnitDirectory), ResolvePath(StateDirectory));
                var request = new ServiceLogonRequest(Credential.UserName)
                {
                    ServiceName = ServiceName,
                    Password = Credential.Password,
                    Group = Group,
                    VmFolders = folders,
                    GrantFolderAccess = GrantFolderAccess,
                    Restart = Restart,
                };
                ServiceLogonChange change = manager.Set(request, new ServiceLogonSupport.CmdletGate(this), CancelToken);
                foreach (string action in change.Actions)
                {
                    WriteVerbose(action);
                }

                if (PassThru)
                {
                    WriteObject(manager.Get(change.ServiceName, folders, WriteFailure));
                }
            }
            catch (VmQuiesceException failure)
            {
                WriteFailure(failure);
            }
        }

        private string? ResolvePath(string? path) => path == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
    }
}
