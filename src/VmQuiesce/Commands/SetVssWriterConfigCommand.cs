using System;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Host;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Creates or updates vmvsswriter.cfg. Writes nothing when the file already says what is asked;
    /// otherwise replaces it atomically, keeping the previous version as vmvsswriter.cfg.bak.
    /// </summary>
    [Cmdlet(VerbsCommon.Set, "VssWriterConfig", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VssWriterConfig))]
    public sealed class SetVssWriterConfigCommand : VssWriterConfigStateCommandBase
    {
        /// <summary>Output the configuration after the change.</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void ProcessFile(string file)
        {
            VmwareConfigDocument? current = VmwareConfigFile.TryRead(file);
            // Both are asked before ApplyTo, which edits the document that was read.
            var changes = Desired.Compare(file, current);
            bool turnsOnOverwrite = Desired.TurnsOnOverwriteSnapshots(current);
            var document = current ?? new VmwareConfigDocument();
            if (!Desired.ApplyTo(document))
            {
                WriteVerbose($"'{file}' already has the requested settings: nothing written.");
                WritePassThru(file);
                return;
            }

            if (turnsOnOverwrite)
            {
                WriteWarning($"Turning on {VssWriterConfig.OverwriteSnapshotsName} in '{file}': during a backup, VMware's VSS writer will overwrite each VM's existing snapshot, " +
                    "so a snapshot made by hand is lost. Keep the snapshots you need elsewhere first.");
            }

            string action = (current == null ? "Create with " : "Update: ") +
                string.Join("; ", changes.Select(c => c.Expected == null ? $"remove {c.Setting}" : $"{c.Setting} = \"{c.Expected}\""));
            if (!ShouldProcess(file, action) || (turnsOnOverwrite && !ConfirmHighImpact(file,
                $"VMware's VSS writer will overwrite existing VM snapshots during backups ('{file}'). A snapshot made by hand will be lost. Continue?",
                $"Turning on {VssWriterConfig.OverwriteSnapshotsName}")))
            {
                return;
            }

            VmwareConfigFile.Write(file, document);
            WritePassThru(file);
        }

        private void WritePassThru(string file)
        {
            if (PassThru)
            {
                WriteObject(VssWriterConfig.Read(file));
            }
        }
    }
}
