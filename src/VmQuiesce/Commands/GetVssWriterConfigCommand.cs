using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Shows where vmvsswriter.cfg is, whether it exists, OverwriteSnapshots and every setting.</summary>
    [Cmdlet(VerbsCommon.Get, "VssWriterConfig")]
    [OutputType(typeof(VssWriterConfig))]
    public sealed class GetVssWriterConfigCommand : VmQuiesceCmdlet
    {
        /// <summary>A folder (holding vmvsswriter.cfg) or a file path; default: VMware Server's install folder.</summary>
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath")]
        [ValidateNotNullOrEmpty]
        public string[]? Path { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string? path in VssWriterConfigParameters.PathsOrDefault(Path))
            {
                try
                {
                    WriteObject(VssWriterConfig.Read(VssWriterConfigParameters.ResolveFile(this, path)));
                }
                catch (VmQuiesceException failure)
                {
                    WriteFailure(failure);
                }
            }
        }
    }
}
