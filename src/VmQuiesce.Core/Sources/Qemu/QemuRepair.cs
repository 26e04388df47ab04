using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// Repair-BackupVm's work: what interrupted backups left on a running VM (through its monitor and agent),
    /// a guest frozen by anyone (only when asked), and an overlay whose QEMU is gone (merged offline).
    /// </summary>
    public static class QemuRepair
    {
        private static readonly TimeSpan CommitToolTimeout = TimeSpan.FromHours(2);

        /// <summary>Repairs a running QEMU VM found by Get-BackupVm: see <see cref="RepairRunning(QemuSourceOptions, bool, Func{string, string, bool}, CancellationToken)"/>.</summary>
        public static IReadOnlyList<VmRepairAction> RepairRunning(QemuVm vm, bool thawAnyFrozen, Func<string, string, bool> shouldProcess, CancellationToken cancel) =>
            RepairRunning(vm.Options, thawAnyFrozen, shouldProcess, cancel);

        /// <summary>
        /// Repairs a running VM: a guest VmQuiesce left frozen (any frozen guest with <paramref name="thawAnyFrozen"/>),
        /// VmQuiesce's block jobs, overlays under its disks, and what a dead run's record names. Refuses while a backup runs.
        /// </summary>
        /// <param name="shouldProcess">Asked (target, action) before each change; false skips it.</param>
        public static IReadOnlyList<VmRepairAction> RepairRunning(QemuSourceOptions options, bool thawAnyFrozen, Func<string, string, bool> shouldProcess, CancellationToken cancel)
        {
            var source = new QemuSource(options);
            using QmpClient qmp = source.ConnectQmp(cancel);
            QemuRunRecord? record = QemuRunRecord.Load(options.QmpSocket);
            if (record != null && record.WriterIsAlive())
            {
                throw new VmQuiesceException("BackupInProgress", FailureKind.ResourceBusy,
                    $"VM '{options.Name}' is being backed up right now ({record}): nothing is repaired while it runs.", options.Name)
                {
                    Remedy = "Wait for that backup to end; if it hangs, stop its process, then repair.",
                };
            }

            return new QemuLeftoverRecovery(source, qmp, shouldProcess).Repair(record, options.AgentSocket, byName: true, thawAnyFrozen, cancel);
        }

        /// <summary>Thaws the guest behind an agent socket whoever froze it, once the process serving it is shown to be a trusted QEMU.</summary>
        public static IReadOnlyList<VmRepairAction> ThawGuest(string agentSocket, string vmName, TimeSpan timeout, Func<string, string, bool> shouldProcess, CancellationToken cancel)
        {
            using GuestAgentClient agent = GuestAgentClient.Connect(agentSocket, timeout, cancel);
            QemuProcessTrust.FromEnvironment().Verify(agent.FindPeerProcess(), agentSocket, GuestAgentClient.What);
            string? status = QemuSource.FreezeStatus(agent, cancel);
            if (status != "frozen")
            {
                return Array.Empty<VmRepairAction>();
            }

            if (!shouldProcess(agentSocket, "Thaw the guest's file systems"))
            {
                return new[] { new VmRepairAction(vmName, "FrozenGuest", "Skipped", "the guest is frozen") };
            }

            agent.Thaw(cancel: cancel);
            string after = agent.GetFreezeStatus(cancel: cancel);
            return new[]
            {
                after == "thawed"
                    ? new VmRepairAction(vmName, "FrozenGuest", "Thawed", "the guest's file systems are thawed")
                    : new VmRepairAction(vmName, "FrozenGuest", "Failed", $"after guest-fsfreeze-thaw the agent at '{agentSocket}' still says '{GuestText.Escape(after)}'"),
            };
        }

        /// <summary>
        /// Merges an overlay VmQuiesce made back into its base while no QEMU runs on it (qemu-img commit), then deletes
        /// it: for a VM whose QEMU ended during a backup. The overlay must be a regular file named as VmQuiesce names
        /// them, whose backing file is the image its name says.
        /// </summary>
        public static VmRepairAction CommitOffline(string overlayPath, Func<string, string, bool> shouldProcess, CancellationToken cancel)
        {
            string overlay = Path.GetFullPath(overlayPath);
            int marker = Path.GetFileName(overlay).IndexOf(QemuBlockOperations.OverlayMarker, StringComparison.Ordinal);
            if (marker <= 0 || !QemuBlockOperations.IsOverlayName(overlay))
            {
                throw Invalid(overlay, $"its name is not an overlay name VmQuiesce gives ('<image>{QemuBlockOperations.OverlayMarker}<time>.qcow2')");
            }

            var info = new FileInfo(overlay);
            if (!info.Exists || (info.Attributes & FileAttributes.Directory) != 0 || ReparsePoints.RedirectionByPath(overlay) != null)
            {
                throw Invalid(overlay, "it is not a regular file (missing, a link or a folder)");
            }

            string baseImage = Path.Combine(Path.GetDirectoryName(overlay)!, Path.GetFileName(overlay).Substring(0, marker));
            string? backing = BackingFile(overlay, cancel);
            if (backing == null || Path.GetFullPath(Path.Combine(Path.GetDirectoryName(overlay)!, backing)) != baseImage)
            {
                throw Invalid(overlay, $"its backing file is {(backing == null ? "missing" : GuestText.Quote(backing))}, not the image '{baseImage}' its name says");
            }

            if (!shouldProcess(overlay, $"Merge into '{baseImage}' (qemu-img commit) and delete the overlay"))
            {
                return new VmRepairAction(baseImage, "OverlayFile", "Skipped", $"'{overlay}' is not merged into '{baseImage}'");
            }

            ToolResult result = QemuImage.Run(new[] { "commit", "-f", "qcow2", overlay }, CommitToolTimeout, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("OverlayCommitFailed", FailureKind.InvalidOperation,
                    $"qemu-img could not merge '{overlay}' into '{baseImage}': {result.Message}. The overlay was left in place.", overlay)
                {
                    Remedy = result.Message.IndexOf("lock", StringComparison.OrdinalIgnoreCase) >= 0
                        ? "A QEMU still runs on it: repair the running VM instead (Repair-BackupVm -QmpSocket <its QMP socket>)."
                        : "Check that the base image is writable and the disk has room, then run this again.",
                };
            }

            File.Delete(overlay);
            return new VmRepairAction(baseImage, "OverlayFile", "Committed", $"'{overlay}' is merged into '{baseImage}' and deleted");
        }

        private static string? BackingFile(string overlay, CancellationToken cancel)
        {
            ToolResult info = QemuImage.Run(new[] { "info", "--output=json", "-f", "qcow2", overlay }, TimeSpan.FromMinutes(1), cancel);
            if (info.ExitCode != 0)
            {
                throw Invalid(overlay, "qemu-img cannot read it as qcow2: " + info.Message);
            }

            try
            {
                return JsonText.ParseObject(info.StandardOutput, new JsonLimits(16, 10_000)).GetOptionalString("backing-filename");
            }
            catch (FormatException e)
            {
                throw Invalid(overlay, "qemu-img info printed what VmQuiesce does not understand: " + e.Message);
            }
        }

        private static VmQuiesceException Invalid(string overlay, string why) =>
            new VmQuiesceException("OverlayInvalid", FailureKind.InvalidArgument, $"'{overlay}' is not an overlay VmQuiesce can merge: {why}. Nothing was changed.", overlay);
    }
}
