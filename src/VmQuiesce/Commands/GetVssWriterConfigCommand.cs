using System.Management.Automation;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Shows where vmvsswriter.cfg is, whether it exists, OverwriteSnapshots and every setting.</summary>
    [Cmdlet(VerbsCommon.Get, "VssWriterConfig")]
    [OutputType(typeof(VssWriterConfig))]
    public sealed class GetVssWriterConfigCommand : VssWriterConfigCommandBase
    {
        protected override void ProcessFile(string file) => WriteObject(VssWriterConfig.Read(file));
    }
}
