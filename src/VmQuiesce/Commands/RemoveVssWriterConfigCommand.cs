using System.IO;
using System.Management.Automation;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Removes vmvsswriter.cfg, keeping it as vmvsswriter.cfg.bak so it can be put back.</summary>
    [Cmdlet(VerbsCommon.Remove, "VssWriterConfig", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class RemoveVssWriterConfigCommand : VssWriterConfigCommandBase
    {
        protected override void ProcessFile(string file)
        {
            if (!File.Exists(file))
            {
                WriteVerbose($"'{file}' does not exist: nothing to remove.");
                return;
            }

            if (ShouldProcess(file, $"Remove (the current file is kept as {System.IO.Path.GetFileName(file)}{VmwareConfigFile.BackupExtension})"))
            {
                VmwareConfigFile.Remove(file);
            }
        }
    }
}
