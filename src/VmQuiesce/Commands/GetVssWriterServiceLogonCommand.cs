using System;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Shows the account the VMware VSS Writer Service (or a named service / systemd unit) logs on
    /// as, and whether that account has what the writer needs.
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "VssWriterServiceLogon")]
    [OutputType(typeof(ServiceLogonInfo))]
    public sealed class GetVssWriterServiceLogonCommand : VmQuiesceCmdlet
    {
        /// <summary>Service name (Windows) or unit name (Linux); by default the service whose display name is "VMware VSS Writer Service".</summary>
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(ServiceNameCompleter))]
        public string? ServiceName { get; set; }

        /// <summary>Folders holding VM files; each is checked for modify access by the service's account.</summary>
        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string[] VmFolder { get; set; } = Array.Empty<string>();

        /// <summary>Linux only: look up units and drop-ins only in this folder instead of systemd's own (for tests and staging roots).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? UnitDirectory { get; set; }

        protected override void ProcessRecord()
        {
            try
            {
                ServiceLogonManager manager = ServiceLogonSupport.CreateManager(UnitDirectory == null ? null : ResolveFileSystemPath(UnitDirectory, nameof(UnitDirectory)), null);
                WriteObject(manager.Get(ServiceName, Array.ConvertAll(VmFolder, folder => ResolveFileSystemPath(folder, nameof(VmFolder))), WriteFailure));
            }
            catch (VmQuiesceException failure)
            {
                WriteFailure(failure);
            }
        }
    }
}
