using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A point-in-time view of a running VM's disks without switching them to overlays (fleecing): before the
    /// freeze, a qcow2 scratch node backed by each disk (its image made while the guest agent is asked); in the freeze, ONE transaction that adds each disk's
    /// new checkpoint bitmap, freezes the previous one and starts a copy-before-write job (blockdev-backup
    /// sync=none) into the scratch node; after the thaw, QEMU's own NBD server (started before the freeze) exports each
    /// scratch node with the previous bitmap. The guest writes on as usual; a region it overwrites is first copied to the scratch.
    /// </summary>
    internal sealed class QemuFleecing
    {
        private static readonly TimeSpan ExportGoneTimeout = TimeSpan.FromSeconds(30);

        /// <summary>QEMU's block exports, which <see cref="Begin"/> checks for an interrupted backup's.</summary>
        public static QemuCommand ExportsQuery => new QemuCommand("query-block-exports");

        private readonly IReadOnlyList<QemuDiskCheckpoint> _disks;
        private readonly IReadOnlyDictionary<string, QemuNodeInfo> _nodes;
        private readonly string _vmName;
        private readonly List<NbdClient> _clients = new List<NbdClient>();
        private ScratchFolder? _socketFolder;

        // Only a server this run started is stopped: when nbd-server-start failed, the running one is another tool's.
        private bool _serverStarted;

        private const string SocketName = "nbd.sock";

        // The scratch images this run created: only these are deleted (a file already at a scratch path is not ours).
        private readonly List<string> _scratchFiles = new List<string>();

        private QemuFleecing(IReadOnlyList<QemuDiskCheckpoint> disks, IReadOnlyDictionary<string, QemuNodeInfo> nodes, string vmName)
        {
            _disks = disks;
            _nodes = nodes;
            _vmName = vmName;
        }

        public IReadOnlyList<QemuDiskCheckpoint> Disks => _disks;

        /// <summary>
        /// Checks that every disk can be tracked, from QEMU's <paramref name="nodes"/> as <see cref="RemoveLeftovers"/> left
        /// them; <see cref="AddScratchNodes"/> makes the scratch images and nodes. Nothing the guest sees changes. Release (or
        /// ReleaseWithoutQemu) after a failure deletes the images.
        /// </summary>
        public static QemuFleecing Begin(IReadOnlyList<QemuDisk> disks, IReadOnlyDictionary<string, QemuNodeInfo> nodes, string stamp, string vmName)
        {
            var planned = new List<QemuDiskCheckpoint>();
            for (int i = 0; i < disks.Count; i++)
            {
                QemuDisk disk = disks[i];
                if (disk.NodeName.Length == 0 || !nodes.TryGetValue(disk.NodeName, out QemuNodeInfo? node) || DiskImageFormat.FromQemuDriver(disk.Format) is not (DiskImageFormat.Qcow2 or DiskImageFormat.Raw))
                {
                    throw new VmQuiesceException("ChangeTrackingNotSupported", FailureKind.NotSupported,
                        $"Disk {disk.Name} of VM '{vmName}' ({GuestText.Escape(disk.Format)}) cannot be change-tracked: VmQuiesce tracks qcow2 and raw disks whose format node QEMU names. Nothing was changed.", disk.Name)
                    {
                        Remedy = "Back up this VM without -ChangeTracking.",
                    };
                }

                planned.Add(new QemuDiskCheckpoint(disk, i, stamp, node));
            }

            return new QemuFleecing(planned, nodes, vmName);
        }

        /// <summary>
        /// Makes each disk's scratch image and node, which an incremental and a full read both use: before the repository
        /// has said what the previous point was, so QEMU opens them while that manifest is read. Nothing the guest sees changes.
        /// </summary>
        public void AddScratchNodes(QmpClient qmp, CancellationToken cancel)
        {
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                CreateScratchImage(disk);
                AddScratch(qmp, disk, cancel);
            }
        }

        /// <summary>Decides, per disk, incremental or full (with the reason) from what the repository says of the previous point.</summary>
        public void Decide(ChangeTrackingRequest request)
        {
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                disk.Decide(request, _nodes[disk.Disk.NodeName]);
            }
        }

        /// <summary>The one transaction inside the freeze: new checkpoints, the previous ones frozen, the copy-before-write jobs.</summary>
        public void TakeInFreeze(QmpClient qmp, CancellationToken cancel)
        {
            var actions = new JsonArray();
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                string node = disk.Disk.NodeName;
                actions.Add(Action("block-dirty-bitmap-add", new JsonObject().With("node", node).With("name", disk.NewBitmap).With("persistent", disk.Persistent)));
                if (disk.PreviousBitmap != null)
                {
                    actions.Add(Action("block-dirty-bitmap-disable", new JsonObject().With("node", node).With("name", disk.PreviousBitmap)));
                }

                actions.Add(Action("blockdev-backup", new JsonObject().With("device", node).With("target", disk.ScratchNode).With("sync", "none")
                    .With("job-id", disk.JobId).With("auto-dismiss", false)));
            }

            // No completion-mode "grouped": QEMU 7.2 refuses it with bitmap actions; the actions still all apply or none.
            qmp.Execute("transaction", new JsonObject().With("actions", actions), cancel: cancel);
        }

        /// <summary>
        /// Starts QEMU's NBD server on a private unix socket, which needs nothing from the freeze: before it, so that the
        /// way from the thaw to the copy holds only the exports. <paramref name="run"/> records first that the server is
        /// this run's, for the next command if this process dies; a release stops it.
        /// </summary>
        public void StartServer(QmpClient qmp, QemuRunRecord? run, CancellationToken cancel)
        {
            try
            {
                _socketFolder = ScratchFolder.Create("vmq-nbd");
            }
            catch (IOException e)
            {
                throw new VmQuiesceException("FleecingSetupFailed", FailureKind.PermissionDenied, $"No private folder for the NBD socket of VM '{_vmName}': {e.Message}", _vmName, e);
            }

            string socket = Path.Combine(_socketFolder.Path, SocketName);
            run?.MarkNbdServer(started: true);
            try
            {
                qmp.Execute("nbd-server-start", new JsonObject().With("addr", new JsonObject().With("type", "unix").With("data", new JsonObject().With("path", socket))), cancel: cancel);
                _serverStarted = true;
            }
            catch (QemuCommandException e)
            {
                run?.MarkNbdServer(started: false);
                throw new VmQuiesceException("QemuNbdServerBusy", FailureKind.ResourceBusy,
                    $"QEMU of VM '{_vmName}' could not start its NBD server for the change-tracked read: {GuestText.Escape(e.Message)}. QEMU runs one NBD server at a time; another tool may be using it.", _vmName, e)
                {
                    Remedy = "Stop the other NBD export of this VM (nbd-server-stop on its QMP monitor) or back up without -ChangeTracking.",
                };
            }
        }

        /// <summary>Exports each scratch node on the server <see cref="StartServer"/> started, with the bitmap the read uses, and connects to it.</summary>
        public IReadOnlyList<QemuTrackedDisk> Export(QmpClient qmp, bool verify, CancellationToken cancel)
        {
            string socket = Path.Combine(_socketFolder!.Path, SocketName);
            var disks = new List<QemuTrackedDisk>();
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                var export = new JsonObject().With("type", "nbd").With("id", disk.ExportId).With("node-name", disk.ScratchNode).With("name", disk.ExportId).With("writable", false);
                if (disk.PreviousBitmap != null)
                {
                    export["bitmaps"] = new JsonArray(new object?[] { disk.PreviousBitmap });
                }

                qmp.Execute("block-export-add", export, cancel: cancel);
                var options = new NbdClientOptions { ExportName = disk.ExportId };
                options.MetaContexts.Add("base:allocation");
                if (disk.PreviousBitmap != null)
                {
                    options.MetaContexts.Add(QemuTrackedDisk.BitmapContext(disk.PreviousBitmap));
                }

                NbdClient client = NbdClient.Connect(NbdEndpoint.UnixSocket(socket), options, cancel);
                _clients.Add(client);
                disks.Add(new QemuTrackedDisk(disk, client, verify));
            }

            return disks;
        }

        /// <summary>
        /// Takes everything down, checking what QEMU actually has rather than trusting what this run believes it
        /// made: the NBD connections, exports and server, the jobs, the scratch nodes and files. On success the
        /// older checkpoints go (the new one stays); on failure the new checkpoint is merged back into the previous
        /// one and the previous one recording again, so the next backup sees every write since the last point.
        /// Throws ChangeTrackingReleaseFailed naming what is left.
        /// </summary>
        public void Release(QmpClient qmp, bool success) => Settle(success, TakeDown(qmp));

        /// <summary>
        /// The first part of <see cref="Release"/>, which needs nothing from the copy but that its reads are over: all but
        /// the checkpoints. What failed is in the result, for <see cref="Settle"/> to report.
        /// </summary>
        public TakenDown TakeDown(QmpClient qmp)
        {
            var problems = new List<string>();
            CloseConnections();
            // A server this run started goes with its exports in one exchange: nbd-server-stop closes every NBD export and
            // answers once they are gone. Then one look at the list; an export still there (or on another tool's server,
            // which stays) is deleted and waited for.
            var listed = new HashSet<string>(_disks.Select(disk => disk.ExportId), StringComparer.Ordinal);
            if (_serverStarted)
            {
                Try(problems, "QEMU's NBD server", () =>
                {
                    IReadOnlyList<CommandAnswer> answers = qmp.ExecuteAll(new[] { new QemuCommand("nbd-server-stop"), ExportsQuery });
                    listed.IntersectWith(qmp.AnswerArray(ExportsQuery.Name, answers[1]).OfType<JsonObject>().Select(e => e.GetOptionalString("id") ?? string.Empty));
                    if (answers[0].Error is QemuCommandException refused)
                    {
                        throw refused;
                    }
                });
            }

            foreach (QemuDiskCheckpoint disk in _disks.Where(disk => listed.Contains(disk.ExportId)))
            {
                Try(problems, $"the NBD export '{disk.ExportId}'", () => DeleteExport(qmp, disk.ExportId));
            }

            DeleteSocketFolder();
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                QemuBlockOperations.DismissQuietly(qmp, disk.JobId);
            }

            IReadOnlyDictionary<string, QemuNodeInfo> nodes = QemuNodeInfo.Query(qmp, CancellationToken.None);
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                if (nodes.ContainsKey(disk.ScratchNode))
                {
                    Try(problems, $"the scratch node '{disk.ScratchNode}'", () => qmp.Execute("blockdev-del", new JsonObject().With("node-name", disk.ScratchNode)));
                }

                if (_scratchFiles.Contains(disk.ScratchPath))
                {
                    Try(problems, $"the scratch file '{disk.ScratchPath}'", () => File.Delete(disk.ScratchPath));
                }
            }

            return new TakenDown(qmp, nodes, problems);
        }

        /// <summary>The rest of <see cref="Release"/> once the copy's outcome is known: the checkpoints, then what failed.</summary>
        public void Settle(bool success, TakenDown takenDown)
        {
            QmpClient qmp = takenDown.Qmp;
            var problems = new List<string>(takenDown.Problems);
            foreach (QemuDiskCheckpoint disk in _disks)
            {
                if (takenDown.Nodes.TryGetValue(disk.Disk.NodeName, out QemuNodeInfo? node))
                {
                    Try(problems, $"the checkpoints of disk {disk.Disk.Name}", () => SettleBitmaps(qmp, disk, node, success));
                }
            }

            if (problems.Count > 0)
            {
                throw new VmQuiesceException("ChangeTrackingReleaseFailed", FailureKind.InvalidOperation,
                    $"Releasing what the change-tracked backup of VM '{_vmName}' made failed for: {string.Join("; ", problems)}.", _vmName)
                {
                    Remedy = "The next backup of the VM removes VmQuiesce's leftover exports and scratch nodes itself; bitmaps it cannot trust make it read the disks in full.",
                };
            }
        }

        /// <summary>When QEMU is gone, only the files are left to clean.</summary>
        public void ReleaseWithoutQemu()
        {
            CloseConnections();
            DeleteSocketFolder();
            foreach (string scratch in _scratchFiles)
            {
                try
                {
                    File.Delete(scratch);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Reported by the caller's warning; the file is named after the disk image, recognisable as ours.
                }
            }
        }

        private static void SettleBitmaps(QmpClient qmp, QemuDiskCheckpoint disk, QemuNodeInfo node, bool success)
        {
            string name = disk.Disk.NodeName;
            bool hasNew = node.Bitmaps.Any(b => b.Name == disk.NewBitmap);
            if (success)
            {
                foreach (string stale in disk.Stale.Where(s => node.Bitmaps.Any(b => b.Name == s)))
                {
                    qmp.Execute("block-dirty-bitmap-remove", new JsonObject().With("node", name).With("name", stale));
                }

                return;
            }

            if (!hasNew)
            {
                return;
            }

            var actions = new JsonArray();
            if (disk.PreviousBitmap is string previous && node.Bitmaps.Any(b => b.Name == previous))
            {
                actions.Add(Action("block-dirty-bitmap-merge", new JsonObject().With("node", name).With("target", previous).With("bitmaps", new JsonArray(new object?[] { disk.NewBitmap }))));
                if (!node.Bitmaps.First(b => b.Name == previous).Recording)
                {
                    actions.Add(Action("block-dirty-bitmap-enable", new JsonObject().With("node", name).With("name", previous)));
                }
            }

            actions.Add(Action("block-dirty-bitmap-remove", new JsonObject().With("node", name).With("name", disk.NewBitmap)));
            qmp.Execute("transaction", new JsonObject().With("actions", actions));
        }

        private void CreateScratchImage(QemuDiskCheckpoint disk)
        {
            try
            {
                QemuImage.CreateEmptyQcow2(disk.ScratchPath, disk.Disk.VirtualSize);
                _scratchFiles.Add(disk.ScratchPath);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is ArgumentOutOfRangeException)
            {
                throw new VmQuiesceException("FleecingSetupFailed", FailureKind.WriteError,
                    $"The scratch image '{disk.ScratchPath}' for disk {disk.Disk.Name} could not be created: {e.Message}", disk.ScratchPath, e);
            }
        }

        private static void AddScratch(QmpClient qmp, QemuDiskCheckpoint disk, CancellationToken cancel)
        {
            qmp.Execute("blockdev-add", new JsonObject()
                .With("driver", DiskImageFormat.Qcow2)
                .With("node-name", disk.ScratchNode)
                .With("file", new JsonObject().With("driver", "file").With("filename", disk.ScratchPath))
                .With("backing", disk.Disk.NodeName), cancel: cancel);
        }

        /// <summary>
        /// Exports and scratch nodes named as VmQuiesce names them, and the <paramref name="scratchImages"/> (<see cref="ScratchImages"/>),
        /// left by a run that died, or whose release lost the monitor halfway and so left no record (the run record check
        /// already ruled out a live run). Returns QEMU's nodes as they are afterwards (asked again only when one was removed).
        /// </summary>
        public static IReadOnlyDictionary<string, QemuNodeInfo> RemoveLeftovers(QmpClient qmp, IReadOnlyList<string> scratchImages, string vmName, IOperationHost host, CancellationToken cancel)
        {
            bool hadExport = false;
            foreach (JsonObject export in qmp.ExecuteArray(ExportsQuery, cancel).OfType<JsonObject>())
            {
                string id = export.GetOptionalString("id") ?? "";
                if (id.StartsWith(QemuDiskCheckpoint.ExportPrefix, StringComparison.Ordinal))
                {
                    hadExport = true;
                    DeleteExport(qmp, id);
                    host.WriteWarning($"VM '{vmName}': removed the NBD export '{GuestText.Escape(id)}' an interrupted backup left.");
                }
            }

            if (hadExport)
            {
                qmp.Execute("nbd-server-stop", cancel: cancel);
            }

            IReadOnlyDictionary<string, QemuNodeInfo> nodes = QemuNodeInfo.Query(qmp, cancel);
            List<string> left = nodes.Keys.Where(n => n.StartsWith(QemuDiskCheckpoint.ScratchPrefix, StringComparison.Ordinal)).ToList();
            foreach (string node in left)
            {
                qmp.Execute("blockdev-del", new JsonObject().With("node-name", node), cancel: cancel);
                host.WriteWarning($"VM '{vmName}': removed the scratch node '{GuestText.Escape(node)}' an interrupted backup left.");
            }

            // No node uses a scratch image now.
            foreach (string image in scratchImages)
            {
                try
                {
                    File.Delete(image);
                    host.WriteWarning($"VM '{vmName}': removed the scratch image '{image}' an interrupted backup left.");
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Left for the leftover check, which refuses the backup and names it.
                }
            }

            return left.Count == 0 ? nodes : QemuNodeInfo.Query(qmp, cancel);
        }

        /// <summary>The scratch images beside the disks' images: named as only VmQuiesce names files, and never a disk's image.</summary>
        public static IReadOnlyList<string> ScratchImages(IReadOnlyList<QemuDisk> disks)
        {
            var chains = new HashSet<string>(disks.SelectMany(d => d.Chain), StringComparer.Ordinal);
            var images = new List<string>();
            foreach (QemuDisk disk in disks)
            {
                string? folder = Path.GetDirectoryName(disk.File);
                if (!string.IsNullOrEmpty(folder) && Directory.Exists(folder))
                {
                    images.AddRange(Directory.GetFiles(folder, Path.GetFileName(disk.File) + QemuDiskCheckpoint.ScratchImageMarker + "*.qcow2").Where(f => !chains.Contains(f)));
                }
            }

            return images;
        }

        internal static void DeleteExport(QmpClient qmp, string id)
        {
            // Hard: a client still connected (a reader that hung) is cut off rather than keeping the export alive. Asked in
            // one exchange with the list of exports: an export already gone refuses the delete, and what the list says decides.
            IReadOnlyList<CommandAnswer> answers = qmp.ExecuteAll(new[]
            {
                new QemuCommand("block-export-del", new JsonObject().With("id", id).With("mode", "hard")),
                ExportsQuery,
            });
            var clock = System.Diagnostics.Stopwatch.StartNew();
            bool Listed(JsonArray exports) => exports.OfType<JsonObject>().Any(e => e.GetOptionalString("id") == id);
            bool listed = Listed(qmp.AnswerArray(ExportsQuery.Name, answers[1]));
            if (listed && answers[0].Error is QemuCommandException refused)
            {
                throw refused;
            }

            for (; listed; listed = Listed(qmp.ExecuteArray(ExportsQuery, CancellationToken.None)))
            {
                if (clock.Elapsed > ExportGoneTimeout)
                {
                    throw new InvalidOperationException($"it was still listed {ExportGoneTimeout.TotalSeconds:0} s after block-export-del");
                }

                qmp.TryWaitForEvent("BLOCK_EXPORT_DELETED", data => data.GetOptionalString("id") == id, TimeSpan.FromSeconds(1));
            }
        }

        /// <summary>Closes this run's NBD connections (Release and ReleaseWithoutQemu do it first, if nobody did).</summary>
        public void CloseConnections()
        {
            foreach (NbdClient client in _clients)
            {
                client.Dispose();
            }

            _clients.Clear();
        }

        private void DeleteSocketFolder()
        {
            _socketFolder?.DeleteWith(SocketName);
        }

        private static void Try(List<string> problems, string what, Action action)
        {
            try
            {
                action();
            }
            catch (Exception e) when (e is VmQuiesceException || e is InvalidOperationException || e is IOException || e is UnauthorizedAccessException)
            {
                problems.Add($"{what} ({e.Message})");
            }
        }

        private static JsonObject Action(string type, JsonObject data) => new JsonObject().With("type", type).With("data", data);
    }

    /// <summary>What <see cref="QemuFleecing.TakeDown"/> left for <see cref="QemuFleecing.Settle"/>: the monitor, QEMU's nodes as they were, and what failed.</summary>
    internal sealed class TakenDown
    {
        public TakenDown(QmpClient qmp, IReadOnlyDictionary<string, QemuNodeInfo> nodes, IReadOnlyList<string> problems)
        {
            Qmp = qmp;
            Nodes = nodes;
            Problems = problems;
        }

        public QmpClient Qmp { get; }

        public IReadOnlyDictionary<string, QemuNodeInfo> Nodes { get; }

        public IReadOnlyList<string> Problems { get; }
    }
}
