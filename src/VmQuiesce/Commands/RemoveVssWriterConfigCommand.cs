using System.IO;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Removes vmvsswriter.cfg, keeping it as vmvsswriter.cfg.bak so it can be put back.</summary>
    [Cmdlet(VerbsCommon.Remove, "VssWriterConfig", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class RemoveVssWriterConfigCommand : VmQuiesceCmdlet
    {
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
                    string file = VssWriterConfigParameters.ResolveFile(this, path);
                    if (!File.Exists(file))
                    {
                        WriteVerbose($"'{file}' does not exist: nothing to remove.");
                        continue;
                    }

                    if (ShouldProcess(file, $"Remove (the current file is kept as {System.IO.Path.GetFileName(file)}{VmwareConfigFile.BackupExtension})"))
                    {
                        VmwareConfigFile.Remove(file);
                    }
                }
                catch (VmQuiesceException failure)
                {
                    WriteFailure(failure);
                }
            }
        }
    }
}
