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
            if (!ShouldProcess(file, action) || (turnsOnOverwrite && !ConfirmOverwriteSnapshots(file)))
            {
                return;
            }

            VmwareConfigFile.Write(file, document);
            WritePassThru(file);
        }

        /// <summary>
        /// Turning overwriteSnapshots on is a High-impact change inside a Medium-impact cmdlet, so it gets
        /// its own question. -Confirm (either way) and a $ConfirmPreference below High were already honoured
        /// by ShouldProcess, and None means "never ask": only in the default case is the user asked again.
        /// </summary>
        private bool ConfirmOverwriteSnapshots(string file)
        {
            if (MyInvocation.BoundParameters.ContainsKey("Confirm") || ConfirmPreference() != ConfirmImpact.High)
            {
                return true;
            }

            try
            {
                return ShouldContinue(
                    $"VMware's VSS writer will overwrite existing VM snapshots during backups ('{file}'). A snapshot made by hand will be lost. Continue?",
                    $"Turn on {VssWriterConfig.OverwriteSnapshotsName}");
            }
            catch (Exception e) when (e is HostException || e is PSInvalidOperationException)
            {
                throw new VmQuiesceException("ConfirmationRequired", FailureKind.InvalidOperation,
                    $"Turning on {VssWriterConfig.OverwriteSnapshotsName} in '{file}' needs confirmation, and this host cannot ask ({e.Message}). Nothing was changed.", file, e)
                {
                    Remedy = "In a script, confirm the change explicitly with -Confirm:$false.",
                };
            }
        }

        private ConfirmImpact ConfirmPreference()
        {
            object? value = SessionState.PSVariable.GetValue("ConfirmPreference");
            value = value is PSObject wrapped ? wrapped.BaseObject : value;
            return value is ConfirmImpact impact ? impact
                : Enum.TryParse(value?.ToString(), true, out ConfirmImpact parsed) ? parsed
                : ConfirmImpact.High;
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
