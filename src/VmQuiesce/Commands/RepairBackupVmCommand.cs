using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Repairs what an interrupted backup left on a QEMU VM: thaws a guest VmQuiesce left frozen (any frozen
    /// guest with -Thaw), finishes or dismisses its block jobs, commits its overlays back and deletes overlay
    /// files nothing uses; with -Overlay, merges an overlay offline once the VM's QEMU is gone.
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Repair, "BackupVm", DefaultParameterSetName = VmSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(VmRepairAction))]
    public sealed class RepairBackupVmCommand : VmQuiesceCmdlet
    {
        public const string VmSet = "Vm";
        public const string SocketSet = "Socket";
        public const string OverlaySet = "Overlay";

        /// <summary>QEMU VMs from Get-BackupVm.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = VmSet)]
        [ValidateNotNull]
        [BackupVmTransformation]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public BackupVm[] Vm { get; set; } = Array.Empty<BackupVm>();

        /// <summary>The VM's QMP monitor: a unix socket path, or tcp:host:port.</summary>
        [Parameter(ParameterSetName = SocketSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? QmpSocket { get; set; }

        /// <summary>The host side of the VM's guest-agent channel.</summary>
        [Parameter(ParameterSetName = SocketSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? AgentSocket { get; set; }

        /// <summary>Overlay files to merge into their base images offline, once no QEMU runs on them.</summary>
        [Parameter(Mandatory = true, ParameterSetName = OverlaySet, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Overlay { get; set; } = Array.Empty<string>();

        /// <summary>Thaw the guest when it is frozen even though no VmQuiesce record says VmQuiesce froze it.</summary>
        [Parameter(ParameterSetName = VmSet)]
        [Parameter(ParameterSetName = SocketSet)]
        public SwitchParameter Thaw { get; set; }

        protected override void ProcessRecord()
        {
            switch (ParameterSetName)
            {
                case OverlaySet:
                    foreach (string overlay in Overlay)
                    {
                        Run(() => new[] { QemuRepair.CommitOffline(ResolveItemFileSystemPath(overlay, nameof(Overlay)), ShouldProcess, CancelToken) });
                    }

                    break;
                case SocketSet:
                    // The sockets bind from each pipeline item: one that does not resolve fails that item alone.
                    try
                    {
                        RepairSockets();
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                    }

                    break;
                default:
                    BackupVmTransformationAttribute.WriteSaidWhileFound(this, Vm);
                    foreach (BackupVm vm in Vm)
                    {
                        if (vm is not QemuVm qemu)
                        {
                            WriteFailure(new VmQuiesceException("RepairNotSupported", FailureKind.NotSupported,
                                $"Repair-BackupVm repairs QEMU VMs; '{vm.Name}' is a {vm.Kind} VM.", vm));
                            continue;
                        }

                        Run(() => QemuRepair.RepairRunning(qemu, Thaw, ShouldProcess, CancelToken));
                    }

                    break;
            }
        }

        private void RepairSockets()
        {
            string? agent = AgentSocket == null ? null : ResolveItemFileSystemPath(AgentSocket, nameof(AgentSocket));
            if (QmpSocket == null)
            {
                if (agent == null)
                {
                    ThrowInvalidArgument("RepairTargetMissing", "Give -QmpSocket (and -AgentSocket), a VM (-Vm), or overlay files (-Overlay): there is nothing to repair.", this);
                }

                if (!Thaw)
                {
                    ThrowInvalidArgument("AgentOnlyRepairNeedsThaw",
                        $"With only -AgentSocket, the one repair is thawing the guest, whoever froze it: add -Thaw to do that, or give -QmpSocket too so VmQuiesce can tell what it left.", agent);
                }

                Run(() => QemuRepair.ThawGuest(agent!, Path.GetFileNameWithoutExtension(agent!), GuestAgentClient.DefaultTimeout, ShouldProcess, CancelToken));
                return;
            }

            string qmp = QmpSocket.StartsWith("tcp:", StringComparison.Ordinal) ? QmpSocket : ResolveItemFileSystemPath(QmpSocket, nameof(QmpSocket));
            var options = new QemuSourceOptions(Path.GetFileNameWithoutExtension(qmp), qmp) { AgentSocket = agent };
            Run(() => QemuRepair.RepairRunning(options, Thaw, ShouldProcess, CancelToken));
        }

        private void Run(Func<IReadOnlyList<VmRepairAction>> repair)
        {
            IReadOnlyList<VmRepairAction> done;
            try
            {
                done = repair();
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            if (done.Count == 0)
            {
                WriteVerbose("Nothing to repair: no frozen guest, overlay, block job or record from an interrupted backup.");
            }

            foreach (VmRepairAction action in done)
            {
                WriteObject(action);
                if (action.Action == "Failed")
                {
                    WriteFailure(new VmQuiesceException("RepairFailed", FailureKind.InvalidOperation, $"VM '{action.VmName}': {action.Leftover}: {action.Detail}.", action.VmName));
                }
            }
        }
    }
}
