using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>One thing a repair found on a VM and what it did about it.</summary>
    public sealed class VmRepairAction
    {
        public VmRepairAction(string vmName, string leftover, string action, string detail)
        {
            VmName = vmName;
            Leftover = leftover;
            Action = action;
            Detail = detail;
        }

        public string VmName { get; }

        /// <summary>"FrozenGuest", "Overlay", "Job", "OverlayFile", "InternalSnapshot", "NbdServer", "RunRecord".</summary>
        public string Leftover { get; }

        /// <summary>"Thawed", "Committed", "Completed", "Dismissed", "Deleted", "Stopped", "Kept" (left on purpose, see Detail), "Failed", "Skipped" (-WhatIf or declined).</summary>
        public string Action { get; }

        public string Detail { get; }

        public override string ToString() => $"{Leftover} {Action}: {Detail}";
    }

    /// <summary>
    /// Repairs what an interrupted backup left on a QEMU VM: thaws the guest when VmQuiesce froze it (its run
    /// record says so and the same QEMU still runs, or the caller asks to thaw whatever froze it), finishes or
    /// dismisses VmQuiesce's block jobs, commits VmQuiesce's overlays still under the disks back into their base,
    /// deletes overlay files the record names that nothing uses any more, drops an internal snapshot of the
    /// run, and stops QEMU's NBD server the run started for a change-tracked read. Used by the next backup (on a
    /// dead run's record) and by Repair-BackupVm.
    /// </summary>
    internal sealed class QemuLeftoverRecovery
    {
        private readonly QemuSource _source;
        private readonly QmpClient _qmp;
        private readonly Func<string, string, bool> _shouldProcess;
        private readonly List<VmRepairAction> _done = new List<VmRepairAction>();

        /// <param name="shouldProcess">Asked (target, action) before each change; false skips it.</param>
        public QemuLeftoverRecovery(QemuSource source, QmpClient qmp, Func<string, string, bool> shouldProcess)
        {
            _source = source;
            _qmp = qmp;
            _shouldProcess = shouldProcess;
        }

        private string Vm => _source.VmName;

        /// <summary>
        /// Repairs after <paramref name="dead"/> (the record of a run whose process is gone; null: none), plus, when
        /// <paramref name="byName"/>, any overlay and job named as VmQuiesce names them; thaws a frozen guest without
        /// a record's word only when <paramref name="thawAnyFrozen"/>. The record goes when nothing is left.
        /// </summary>
        public IReadOnlyList<VmRepairAction> Repair(QemuRunRecord? dead, string? agentSocket, bool byName, bool thawAnyFrozen, CancellationToken cancel)
        {
            string? currentQemu = _qmp.VerifiedPeer == null ? null : QemuRunRecord.QemuIdentity(_qmp.VerifiedPeer.ProcessId);
            bool sameQemu = dead?.QemuProcess == null || currentQemu == null || dead.QemuProcess == currentQemu;
            string? agent = dead?.AgentSocket ?? agentSocket;
            if (agent != null && ((dead != null && dead.MayBeFrozen && sameQemu) || thawAnyFrozen))
            {
                ThawIfFrozen(agent, dead, cancel);
            }

            FinishJobs(cancel);
            var recorded = new HashSet<string>((dead?.Overlays ?? Array.Empty<RecordedOverlay>()).Select(o => o.OverlayPath), StringComparer.Ordinal);
            CommitOverlays(recorded, byName, cancel);
            if (dead != null)
            {
                DeleteUnusedOverlayFiles(dead, sameQemu);
                if (dead.SnapshotTag != null && sameQemu && HasInternalSnapshot(dead.SnapshotTag, cancel))
                {
                    DeleteInternalSnapshot(dead, dead.SnapshotTag, cancel);
                }

                if (dead.NbdServerStarted && sameQemu)
                {
                    StopNbdServer(dead, cancel);
                }

                if (_done.All(a => a.Action != "Failed" && a.Action != "Skipped") && _shouldProcess(dead.Path, "Delete the record of the interrupted backup"))
                {
                    dead.Delete();
                    Add("RunRecord", "Deleted", $"the record of {dead}, whose process has ended ('{dead.Path}')");
                }
            }

            return _done;
        }

        /// <summary>What a repair would do, for readiness and messages: the dead run's record and what VmQuiesce's names show.</summary>
        public static string Describe(QemuRunRecord dead) =>
            $"{dead} ended before it cleaned up" + (dead.MayBeFrozen ? ", perhaps leaving the guest frozen" : "") +
            (dead.Overlays.Count > 0 ? $", with overlays {string.Join(", ", dead.Overlays.Select(o => "'" + o.OverlayPath + "'"))}" : "") +
            (dead.NbdServerStarted ? ", perhaps with QEMU's NBD server running" : "") +
            (dead.ThawedAfterwards != null ? $"; {dead.ThawedAfterwards} thawed the guest" : "");

        private void ThawIfFrozen(string agentSocket, QemuRunRecord? dead, CancellationToken cancel)
        {
            try
            {
                using GuestAgentClient agent = _source.ConnectAgent(agentSocket, _qmp.VerifiedPeer, cancel);
                if (agent.GetFreezeStatus(cancel: cancel) != "frozen")
                {
                    dead?.MarkThawed(null);
                    return;
                }

                string whose = dead != null && dead.MayBeFrozen ? $"{dead} left it frozen" : "no VmQuiesce record says who froze it; thawed as asked";
                if (!_shouldProcess(agentSocket, "Thaw the guest's file systems"))
                {
                    Add("FrozenGuest", "Skipped", $"the guest is frozen ({whose})");
                    return;
                }

                agent.Thaw(cancel: cancel);
                string status = agent.GetFreezeStatus(cancel: cancel);
                if (status != "thawed")
                {
                    Add("FrozenGuest", "Failed", $"after guest-fsfreeze-thaw the agent at '{agentSocket}' still says '{GuestText.Escape(status)}'");
                    return;
                }

                dead?.MarkThawed(null);
                Add("FrozenGuest", "Thawed", $"the guest's file systems are thawed ({whose})");
            }
            catch (VmQuiesceException e) when (!(e.Kind == FailureKind.SecurityError))
            {
                Add("FrozenGuest", "Failed", $"the guest may still be frozen: {e.Message}");
            }
        }

        private void FinishJobs(CancellationToken cancel)
        {
            foreach (JsonObject job in _qmp.ExecuteArray(QemuBlockOperations.JobsQuery, cancel).OfType<JsonObject>())
            {
                string id = job.GetOptionalString("id") ?? "";
                if (!id.StartsWith(QemuBlockOperations.JobPrefix, StringComparison.Ordinal))
                {
                    continue;
                }

                string type = GuestText.Escape(job.GetOptionalString("type"));
                string status = GuestText.Escape(job.GetOptionalString("status"));
                if (type == "commit" && status != "concluded")
                {
                    // A commit of a dead run: finishing it merges what the guest wrote; cancelling would keep the overlay.
                    if (!_shouldProcess(id, "Finish the commit job an interrupted backup started"))
                    {
                        Add("Job", "Skipped", $"the commit job '{id}' ({status})");
                        continue;
                    }

                    string? error = QemuBlockOperations.FinishCommitJob(_qmp, id, _source.Options.CommitTimeout, cancel);
                    Add("Job", error == null ? "Completed" : "Failed", error == null ? $"the commit job '{id}' an interrupted backup started, which merged its overlay" : $"the commit job '{id}': {error}");
                }
                else if (_shouldProcess(id, "Dismiss the block job an interrupted backup left"))
                {
                    QemuBlockOperations.DismissQuietly(_qmp, id);
                    Add("Job", "Dismissed", $"the {type} job '{id}' ({status}) an interrupted backup left");
                }
                else
                {
                    Add("Job", "Skipped", $"the {type} job '{id}' ({status})");
                }
            }
        }

        private void CommitOverlays(HashSet<string> recorded, bool byName, CancellationToken cancel)
        {
            foreach (QemuDisk disk in QemuBlockOperations.QueryDisks(_qmp, cancel))
            {
                string top = disk.Chain.Count > 1 ? disk.Chain[0] : "";
                if (!(recorded.Contains(top) || (byName && QemuBlockOperations.IsOverlayName(top))))
                {
                    continue;
                }

                var overlay = new QemuOverlay(QemuSource.BaseOf(disk, top), top, disk.NodeName);
                if (!_shouldProcess(top, $"Commit the overlay back into '{overlay.BasePath}'"))
                {
                    Add("Overlay", "Skipped", $"disk {disk.Name} runs on the overlay '{top}'");
                    continue;
                }

                try
                {
                    _source.CommitOverlays(new[] { overlay }, _qmp, cancel);
                    Add("Overlay", "Committed", $"disk {disk.Name} ran on the overlay '{top}' an interrupted backup put there; it is committed back into '{overlay.BasePath}' and deleted");
                }
                catch (VmQuiesceException e) when (e.ErrorId == "OverlayCommitFailed")
                {
                    Add("Overlay", "Failed", e.Message);
                }
            }
        }

        private void DeleteUnusedOverlayFiles(QemuRunRecord dead, bool sameQemu)
        {
            var inUse = new HashSet<string>(QemuBlockOperations.QueryDisks(_qmp, CancellationToken.None).SelectMany(d => d.Chain), StringComparer.Ordinal);
            foreach (RecordedOverlay overlay in dead.Overlays.Where(o => !inUse.Contains(o.OverlayPath) && File.Exists(o.OverlayPath)))
            {
                if (!sameQemu)
                {
                    // QEMU was restarted on the base meanwhile: the overlay holds writes the running VM never saw; merging them now would corrupt it.
                    Add("OverlayFile", "Kept", $"'{overlay.OverlayPath}' holds what the guest wrote during {dead} before its QEMU ended; the VM now runs on '{overlay.BasePath}' without it. " +
                        "Keep it to inspect those writes, or delete it");
                }
                else if (_shouldProcess(overlay.OverlayPath, "Delete the overlay file an interrupted backup made, which nothing uses"))
                {
                    File.Delete(overlay.OverlayPath);
                    Add("OverlayFile", "Deleted", $"'{overlay.OverlayPath}', made by {dead} and used by nothing");
                }
                else
                {
                    Add("OverlayFile", "Skipped", $"'{overlay.OverlayPath}' is used by nothing");
                }
            }
        }

        private bool HasInternalSnapshot(string tag, CancellationToken cancel) =>
            _qmp.ExecuteArray(QemuBlockOperations.DisksQuery, cancel).OfType<JsonObject>()
                .Select(block => block["inserted"] is JsonObject inserted && inserted["image"] is JsonObject image ? image["snapshots"] as JsonArray : null)
                .Any(snapshots => snapshots != null && snapshots.OfType<JsonObject>().Any(snapshot => snapshot["name"] as string == tag));

        private void DeleteInternalSnapshot(QemuRunRecord dead, string tag, CancellationToken cancel)
        {
            if (!_shouldProcess(tag, "Delete the internal snapshot an interrupted backup made"))
            {
                Add("InternalSnapshot", "Skipped", $"the internal snapshot '{tag}' of {dead}");
                return;
            }

            IReadOnlyList<QemuDisk> disks = QemuBlockOperations.QueryDisks(_qmp, cancel);
            string? problem = QemuBlockOperations.DeleteInternalSnapshot(_qmp, disks, tag, QemuBlockOperations.JobPrefix + "delete-" + Guid.NewGuid().ToString("N").Substring(0, 8), _source.Options.QmpTimeout);
            Add("InternalSnapshot", problem == null ? "Deleted" : "Failed", problem ?? $"the internal snapshot '{tag}' of {dead}, which no restore point uses");
        }

        /// <summary>
        /// Stops the NBD server a dead run started, with VmQuiesce's exports on it. A run killed between
        /// nbd-server-start and its first export left a server nothing names, which made every later
        /// change-tracked backup fail (QEMU runs one NBD server at a time). An export of another tool keeps it.
        /// </summary>
        private void StopNbdServer(QemuRunRecord dead, CancellationToken cancel)
        {
            List<string> exports = _qmp.ExecuteArray(QemuFleecing.ExportsQuery, cancel).OfType<JsonObject>().Select(e => e.GetOptionalString("id") ?? "").ToList();
            List<string> others = exports.Where(id => !id.StartsWith(QemuDiskCheckpoint.ExportPrefix, StringComparison.Ordinal)).ToList();
            if (others.Count > 0)
            {
                Add("NbdServer", "Kept", $"QEMU's NBD server, started by {dead}, now also serves {string.Join(", ", others.Select(id => "'" + GuestText.Escape(id) + "'"))}, which VmQuiesce did not export");
                return;
            }

            if (!_shouldProcess(_source.VmName, "Stop QEMU's NBD server an interrupted change-tracked backup started"))
            {
                Add("NbdServer", "Skipped", $"QEMU's NBD server, started by {dead}");
                return;
            }

            foreach (string id in exports)
            {
                QemuFleecing.DeleteExport(_qmp, id);
            }

            try
            {
                _qmp.Execute("nbd-server-stop", cancel: cancel);
            }
            catch (QemuCommandException)
            {
                // Not running: the run stopped it itself before it died.
                return;
            }

            Add("NbdServer", "Stopped", $"QEMU's NBD server, which {dead} started for a change-tracked read" + (exports.Count > 0 ? $", and its exports {string.Join(", ", exports.Select(id => "'" + GuestText.Escape(id) + "'"))}" : ", before it exported anything"));
        }

        private void Add(string leftover, string action, string detail) => _done.Add(new VmRepairAction(Vm, leftover, action, detail));
    }
}
