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
    public sealed class TestVssWriterServiceLogonCommand : ServiceLogonRequestCommandBase
    {
        /// <summary>Returns every check with its outcome instead of a single Boolean.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void ProcessRecord()
        {
            ServiceLogonRequest request = BuildRequest();
            try
            {
                ServiceLogonManager manager = CreateManager();
                ServiceLogonTestResult result = manager.Test(request, CreateHost());
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
    }
}
