using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>An external overlay the backup put on top of a disk: the base below it is the stable copy.</summary>
    internal sealed class QemuOverlay
    {
        /// <param name="existingTopNode">For an overlay already in place on a -blockdev disk: its node name.</param>
        public QemuOverlay(QemuDisk disk, string overlayPath, string? existingTopNode = null)
        {
            Disk = disk;
            OverlayPath = overlayPath;
            if (disk.Device.Length == 0)
            {
                SnapshotNodeName = existingTopNode ?? QemuBlockOperations.JobPrefix + Guid.NewGuid().ToString("N").Substring(0, 12);
            }
        }

        public QemuDisk Disk { get; }

        /// <summary>The overlay's node name, chosen by us for a -blockdev disk (which has no drive id); else null.</summary>
        public string? SnapshotNodeName { get; }

        /// <summary>How QMP names the top of this disk once the overlay is on it.</summary>
        public string TopName => SnapshotNodeName ?? Disk.Device;

        /// <summary>The image the guest wrote to before the backup; read-only below the overlay until the commit.</summary>
        public string BasePath => Disk.File;

        public string OverlayPath { get; }
    }

    /// <summary>The QMP conversations of the QEMU source: disks, the snapshot transaction, block jobs.</summary>
    internal static class QemuBlockOperations
    {
        /// <summary>What an overlay's file name carries, so a leftover is recognisable: "&lt;image&gt;.vmquiesce-&lt;stamp&gt;.qcow2".</summary>
        public const string OverlayMarker = ".vmquiesce-";

        public const string JobPrefix = "vmquiesce-";

        /// <summary>The disks and their images (<see cref="QueryDisks"/>).</summary>
        public static QemuCommand DisksQuery => new QemuCommand("query-block");

        /// <summary>QEMU's block jobs.</summary>
        public static QemuCommand JobsQuery => new QemuCommand("query-jobs");

        public static IReadOnlyList<QemuDisk> QueryDisks(QmpClient qmp, CancellationToken cancel)
        {
            JsonArray blocks = qmp.ExecuteArray(DisksQuery, cancel);
            try
            {
                return QemuDisk.FromQueryBlock(blocks);
            }
            catch (JsonFormatException e)
            {
                throw new VmQuiesceException("QmpProtocolError", FailureKind.ProtocolError,
                    $"The QMP monitor at '{qmp.Address}' answered 'query-block' with a reply of the wrong shape: {GuestText.Escape(e.Message)}", qmp.Address, e);
            }
        }

        public static string OverlayPathFor(string image, string stamp) => image + OverlayMarker + stamp + ".qcow2";

        public static bool IsOverlayName(string path) => Path.GetFileName(path).Contains(OverlayMarker) && path.EndsWith(".qcow2", StringComparison.Ordinal);

        /// <summary>Puts every overlay in place in ONE transaction: all disks switch at the same instant, or none does.</summary>
        public static void TakeOverlays(QmpClient qmp, IReadOnlyList<QemuOverlay> overlays, CancellationToken cancel)
        {
            var actions = new JsonArray();
            foreach (QemuOverlay overlay in overlays)
            {
                var data = new JsonObject().With(overlay.Disk.NameArgument, overlay.Disk.Name).With("snapshot-file", overlay.OverlayPath).With("format", "qcow2");
                if (overlay.SnapshotNodeName != null)
                {
                    data["snapshot-node-name"] = overlay.SnapshotNodeName;
                }

                actions.Add(new JsonObject().With("type", "blockdev-snapshot-sync").With("data", data));
            }

            qmp.Execute("transaction", new JsonObject().With("actions", actions), cancel: cancel);
        }

        /// <summary>snapshot-save (disks + RAM into the qcow2 images), waited for and dismissed.</summary>
        public static void SaveInternalSnapshot(QmpClient qmp, IReadOnlyList<QemuDisk> disks, string tag, string jobId, TimeSpan timeout, CancellationToken cancel)
        {
            var devices = new JsonArray(disks.Select(d => (object?)d.NodeName));
            qmp.Execute("snapshot-save", new JsonObject().With("job-id", jobId).With("tag", tag).With("vmstate", disks[0].NodeName).With("devices", devices), cancel: cancel);
            JsonObject job = WaitForJob(qmp, jobId, new[] { "concluded" }, timeout, cancel);
            qmp.Execute("job-dismiss", new JsonObject().With("id", jobId), cancel: cancel);
            if (job.GetOptionalString("error") is string error)
            {
                throw new VmQuiesceException("InternalSnapshotFailed", FailureKind.InvalidOperation,
                    $"QEMU could not save the internal snapshot '{tag}' (job {jobId}) through the QMP monitor at '{qmp.Address}': {error}.", qmp.Address);
            }
        }

        /// <summary>
        /// Deletes an internal snapshot the backup made but no restore point will use (snapshot-delete job);
        /// returns null, or why it failed with the command to run.
        /// </summary>
        public static string? DeleteInternalSnapshot(QmpClient qmp, IReadOnlyList<QemuDisk> disks, string tag, string jobId, TimeSpan timeout)
        {
            var devices = new JsonArray(disks.Select(d => (object?)d.NodeName));
            try
            {
                qmp.Execute("snapshot-delete", new JsonObject().With("job-id", jobId).With("tag", tag).With("devices", devices));
                JsonObject job = WaitForJob(qmp, jobId, new[] { "concluded" }, timeout, CancellationToken.None);
                qmp.Execute("job-dismiss", new JsonObject().With("id", jobId));
                if (job.GetOptionalString("error") is string error)
                {
                    throw new InvalidOperationException(error);
                }

                return null;
            }
            catch (Exception e) when (e is VmQuiesceException || e is InvalidOperationException)
            {
                DismissQuietly(qmp, jobId);
                return $"the internal snapshot '{tag}' could not be deleted ({e.Message}); delete it with " +
                    $"{{\"execute\":\"snapshot-delete\",\"arguments\":{{\"job-id\":\"manual-delete\",\"tag\":\"{tag}\",\"devices\":{JsonText.Serialize(devices, indented: false)}}}}} on the QMP monitor at '{qmp.Address}'";
            }
        }

        /// <summary>
        /// Commits an overlay back into its base: block-commit (no auto-dismiss) -> ready -> block-job-complete
        /// -> concluded -> job-dismiss -> query-block shows the base on top again -> delete the overlay file.
        /// </summary>
        public static void CommitOverlay(QmpClient qmp, QemuOverlay overlay, string jobId, TimeSpan timeout, CancellationToken cancel)
        {
            qmp.Execute("block-commit", new JsonObject().With("device", overlay.TopName).With("job-id", jobId).With("auto-dismiss", false), cancel: cancel);
            try
            {
                JsonObject job = WaitForJob(qmp, jobId, new[] { "ready", "concluded" }, timeout, cancel);
                if (job.GetOptionalString("status") == "ready")
                {
                    qmp.Execute("block-job-complete", new JsonObject().With("device", jobId), cancel: cancel);
                    job = WaitForJob(qmp, jobId, new[] { "concluded" }, timeout, cancel);
                }

                if (job.GetOptionalString("error") is string error)
                {
                    throw new InvalidOperationException($"the commit job {jobId} ended with: {error}");
                }
            }
            finally
            {
                DismissQuietly(qmp, jobId);
            }

            QemuDisk? now = QueryDisks(qmp, cancel).FirstOrDefault(d => d.Chain.Contains(overlay.BasePath) || (overlay.Disk.Device.Length > 0 && d.Device == overlay.Disk.Device));
            if (now == null || now.File != overlay.BasePath || now.Chain.Contains(overlay.OverlayPath))
            {
                throw new InvalidOperationException($"after the commit, query-block still shows '{now?.File ?? "no image"}' on disk {overlay.Disk.Name} instead of the base '{overlay.BasePath}'");
            }

            File.Delete(overlay.OverlayPath);
        }

        /// <summary>
        /// Waits until the job reaches one of <paramref name="statuses"/> (or concludes) and returns its
        /// query-jobs entry. Asks query-jobs, then waits for the job's next JOB_STATUS_CHANGE, so a missed event costs at most a second.
        /// </summary>
        public static JsonObject WaitForJob(QmpClient qmp, string jobId, IReadOnlyCollection<string> statuses, TimeSpan timeout, CancellationToken cancel)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                JsonObject job = qmp.ExecuteArray(JobsQuery, cancel).OfType<JsonObject>().FirstOrDefault(j => j.GetOptionalString("id") == jobId)
                    ?? throw new InvalidOperationException($"the job {jobId} is gone from query-jobs");
                string status = job.GetOptionalString("status") ?? "";
                if (statuses.Contains(status) || status == "concluded" || status == "null")
                {
                    return job;
                }

                TimeSpan left = timeout - clock.Elapsed;
                if (left <= TimeSpan.Zero)
                {
                    throw new VmQuiesceException("QmpJobTimeout", FailureKind.OperationTimeout,
                        $"The job {jobId} was still '{status}' after {timeout.TotalSeconds:0.#} s (waiting for {string.Join(" or ", statuses)}) on the QMP monitor at '{qmp.Address}'.", qmp.Address);
                }

                qmp.TryWaitForEvent("JOB_STATUS_CHANGE", data => data.GetOptionalString("id") == jobId, left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1), cancel);
            }
        }

        /// <summary>
        /// Finishes a commit job another run started (running -> ready -> block-job-complete -> concluded) and
        /// dismisses it; returns null, or what went wrong.
        /// </summary>
        public static string? FinishCommitJob(QmpClient qmp, string jobId, TimeSpan timeout, CancellationToken cancel)
        {
            try
            {
                JsonObject job = WaitForJob(qmp, jobId, new[] { "ready", "concluded" }, timeout, cancel);
                if (job.GetOptionalString("status") == "ready")
                {
                    qmp.Execute("block-job-complete", new JsonObject().With("device", jobId), cancel: cancel);
                    job = WaitForJob(qmp, jobId, new[] { "concluded" }, timeout, cancel);
                }

                return job.GetOptionalString("error") is string error ? "it ended with: " + GuestText.Escape(error) : null;
            }
            catch (Exception e) when (e is VmQuiesceException || e is InvalidOperationException)
            {
                return e.Message;
            }
            finally
            {
                DismissQuietly(qmp, jobId);
            }
        }

        /// <summary>Cancels and dismisses a job we started, if it is still there; used on failure paths.</summary>
        public static void DismissQuietly(QmpClient qmp, string jobId)
        {
            try
            {
                // Cancelled and looked for in one exchange: QEMU refuses to cancel a job that is gone or has concluded.
                IReadOnlyList<CommandAnswer> answers = qmp.ExecuteAll(new[] { new QemuCommand("job-cancel", new JsonObject().With("id", jobId)), JobsQuery });
                JsonObject? job = qmp.AnswerArray(JobsQuery.Name, answers[1]).OfType<JsonObject>().FirstOrDefault(j => j.GetOptionalString("id") == jobId);
                if (job == null)
                {
                    return;
                }

                if (job.GetOptionalString("status") != "concluded")
                {
                    WaitForJob(qmp, jobId, new[] { "concluded" }, TimeSpan.FromSeconds(30), CancellationToken.None);
                }

                qmp.Execute("job-dismiss", new JsonObject().With("id", jobId));
            }
            catch (Exception e) when (e is VmQuiesceException || e is InvalidOperationException)
            {
                // Best effort on a path that already fails: the caller reports the real error and what to run.
            }
        }

        /// <summary>What an administrator runs to merge an overlay back when the backup could not: while QEMU runs, and after it ended.</summary>
        public static string CommitRemedy(string qmpAddress, QemuOverlay overlay) =>
            QemuRepairCommands.Repair(qmpAddress, null) + $"   (if the VM's QEMU is no longer running: {QemuRepairCommands.CommitOffline(overlay.OverlayPath)}; under libvirt: virsh blockcommit <domain> {overlay.Disk.Name} --active --pivot)";
    }
}
