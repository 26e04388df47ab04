using System;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// $true only when the service logs on as the account, with the password last applied (Windows),
    /// the logon right, administrator membership and modify access to each VM folder.
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Test, "VssWriterServiceLogon")]
    [OutputType(typeof(bool))]
    [OutputType(typeof(ServiceLogonTestResult))]
    public sealed class TestVssWriterServiceLogonCommand : VmQuiesceCmdlet
    {
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? ServiceName { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[] VmFolder { get; set; } = Array.Empty<string>();

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Group { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? UnitDirectory { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? StateDirectory { get; set; }

        /// <summary>Returns every check with its outcome instead of a single Boolean.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void ProcessRecord()
        {
            if (Credential == PSCredential.Empty || string.IsNullOrEmpty(Credential.UserName))
            {
                ThrowInvalidArgument("CredentialRequired", "-Credential must name the account the service should log on as.", Credential);
            }

            try
            {
                ServiceLogonManager manager = ServiceLogonSupport.CreateManager(ResolvePath(UnitDirectory), ResolvePath(StateDirectory));
                var request = new ServiceLogonRequest(Credential.UserName)
                {
                    ServiceName = ServiceName,
                    Password = Credential.Password,
                    Group = Group,
                    VmFolders = Array.ConvertAll(VmFolder, f => ResolvePath(f)!),
                };
                ServiceLogonTestResult result = manager.Test(request, new ServiceLogonSupport.CmdletGate(this));
                if (Detailed)
                {
                    WriteObject(result);
                }
                else
                {
                    WriteObject(result.InDesiredState);
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
