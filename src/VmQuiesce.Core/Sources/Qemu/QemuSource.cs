using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Quiesce;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A running QEMU/KVM VM reached through its QMP monitor and, for quiescing, its guest agent:
    /// freeze -> one atomic transaction of external overlays (plus an internal snapshot in Internal mode)
    /// -> thaw; the base images are the stable view; Complete commits the overlays back.
    /// </summary>
    public sealed class QemuSource : IBackupSource, IChangeTrackingSource
    {
        public const string SourceKind = "Qemu";

        private readonly QemuSourceOptions _options;
        private readonly IOperationHost _host;

        /// <param name="host">Receives the warnings the caller must see (thaw retries, a watchdog that fired) and each step for -Verbose.</param>
        public QemuSource(QemuSourceOptions options, IOperationHost? host = null)
        {
            _options = options;
            _host = host ?? OperationHost.None;
        }

        public string Kind => SourceKind;

        public string VmName => _options.Name;

        public QemuSourceOptions Options => _options;

        internal IOperationHost Host => _host;

        /// <summary>The connections started before the backup (<see cref="QemuVm.StartAhead"/>), which the open takes.</summary>
        internal QemuAhead? Ahead { get; init; }

        /// <summary>
        /// What earlier backups left that blocks a new one. A run whose process ended left a record: the backup
        /// repairs what it names before it starts (and refuses if that fails), and a run still going refuses it
        /// there too, so neither counts here.
        /// </summary>
        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel)
        {
            if (QemuRunRecord.Load(_options.QmpSocket) != null)
            {
                return Array.Empty<string>();
            }

            using QmpClient qmp = ConnectQmp(cancel);
            return FindLeftovers(qmp, QemuBlockOperations.QueryDisks(qmp, cancel), cancel);
        }

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => Open(options, null, cancel);

        /// <summary>
        /// The same guarded freeze, but the point in time is a fleecing view read over NBD, and each disk gets a new
        /// checkpoint in the same transaction (<see cref="QemuFleecing"/>); no overlay is switched in.
        /// </summary>
        public IConsistentView OpenTrackedView(QuiesceOptions options, Task<ChangeTrackingRequest> request, CancellationToken cancel)
        {
            if (_options.Mode == QemuSnapshotMode.Internal)
            {
                throw new VmQuiesceException("ChangeTrackingNeedsExternalMode", FailureKind.InvalidArgument,
                    $"VM '{VmName}' is backed up with an internal snapshot (RAM state saved in the qcow2 images), which copies whole image files; change tracking reads the disks' content instead.", VmName)
                {
                    Remedy = "Leave out -ChangeTracking for internal-snapshot backups, or use the external mode.",
                };
            }

            return Open(options, request ?? throw new ArgumentNullException(nameof(request)), cancel);
        }

        private IConsistentView Open(QuiesceOptions options, Task<ChangeTrackingRequest>? tracking, CancellationToken cancel)
        {
            if (_options.Mode != QemuSnapshotMode.Internal)
            {
                options.RefuseKeepSnapshot(VmName, "its backup's overlays are committed back into the disks after the copy, so no snapshot is left to keep");
            }

            if (options.FreezeTimeout <= TimeSpan.Zero)
            {
                throw new VmQuiesceException("FreezeTimeoutInvalid", FailureKind.InvalidArgument,
                    $"The freeze timeout is {options.FreezeTimeout}; expected a positive duration.", options.FreezeTimeout);
            }

            foreach ((IReadOnlyList<string>? hook, string what) in new[] { (_options.PreFreezeHook, "pre-freeze"), (_options.PostThawHook, "post-thaw") })
            {
                if (hook != null && (hook.Count == 0 || string.IsNullOrEmpty(hook[0])))
                {
                    throw new VmQuiesceException("HookInvalid", FailureKind.InvalidArgument,
                        $"The {what} hook of VM '{VmName}' names no program; expected the program's path in the guest, then its arguments.", VmName);
                }

                if (hook != null && _options.AgentSocket == null)
                {
                    throw new VmQuiesceException("HookNeedsAgent", FailureKind.InvalidArgument,
                        $"The {what} hook of VM '{VmName}' runs in the guest through the guest agent, but no agent socket was given.", VmName);
                }
            }

            // The monitor's verified process, for the agent's check (cancelled when the open ends first).
            var monitorPeer = new TaskCompletionSource<QemuPeer?>(TaskCreationOptions.RunContinuationsAsynchronously);
            Task<PreparedAgent>? preparing = PrepareAgentAhead(monitorPeer.Task, cancel);
            QmpClient qmp;
            try
            {
                qmp = TakeMonitorAhead() ?? ConnectQmp(cancel);
            }
            catch
            {
                monitorPeer.TrySetCanceled();
                DisposePreparedAgent(preparing);
                throw;
            }

            GuestAgentClient? agent = null;
            Task<QuiesceRecord>? quiesce = null;
            QemuDiskFiles? diskFiles = null;
            QemuRunRecord? run = null;
            IReadOnlyList<QemuOverlay> planned = Array.Empty<QemuOverlay>();
            QemuFleecing? fleecing = null;
            try
            {
                qmp.AskAhead(OpenQueries(tracking != null), cancel);

                // A dead run's repair may thaw through the agent, whose channel serves one client at a time: ours goes first.
                RecoverDeadRun(qmp, cancel, beforeRepair: () =>
                {
                    monitorPeer.TrySetCanceled();
                    DisposePreparedAgent(preparing);
                    preparing = null;
                });
                if (_options.AgentSocket != null)
                {
                    // The agent answers on its own channel: it is asked while the monitor is, once the monitor's process is verified.
                    monitorPeer.TrySetResult(qmp.VerifiedPeer);
                    if (preparing == null)
                    {
                        string agentSocket = _options.AgentSocket;
                        Task<QemuPeer?> peer = Task.FromResult(qmp.VerifiedPeer);
                        preparing = OwnThread.Start(() => PrepareAgent(agentSocket, null, peer, cancel));
                    }

                    // Started while the agent is asked, the guardian is only told at the freeze (Arm waits for this start); on a thread
                    // of its own, as starting a process takes the starting thread milliseconds the monitor's checks need.
                    Func<FreezeGuardian?>? guardianOfThisProcess = _options.Guardian;
                    if (guardianOfThisProcess != null)
                    {
                        OwnThread.Start(() => guardianOfThisProcess()?.StartAhead());
                    }
                }

                IReadOnlyList<QemuDisk> disks = CheckDisks(qmp, cancel);
                // What an earlier change-tracked backup left of its own (its release may have lost the monitor halfway, leaving
                // no record) goes before the leftovers are checked: in every change-tracked backup, and in any other that sees
                // one of its scratch images.
                IReadOnlyList<string> scratchImages = QemuFleecing.ScratchImages(disks);
                IReadOnlyDictionary<string, QemuNodeInfo>? nodes = tracking != null || scratchImages.Count > 0
                    ? QemuFleecing.RemoveLeftovers(qmp, scratchImages, VmName, _host, cancel)
                    : null;
                Leftovers.Refuse(VmName, FindLeftovers(qmp, disks, cancel),
                    "Repair it (commits VmQuiesce's overlays back, finishes or dismisses its jobs): " + QemuRepairCommands.Repair(_options.QmpSocket, _options.AgentSocket));

                diskFiles = QemuDiskFiles.Open(disks, qmp.VerifiedPeer, VmName);
                QemuDiskFiles.RefuseSharedFolders(disks, qmp.VerifiedPeer, VmName);
                string stamp = DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
                if (tracking != null)
                {
                    // Checked while the agent is still asked; the scratch images go next to disk images just checked to be QEMU's.
                    fleecing = QemuFleecing.Begin(disks, nodes!, stamp, VmName);
                    fleecing.AddScratchNodes(qmp, cancel);
                }

                Repository.VmMachine? machine = QemuMachine.Query(qmp, VmName, _host, cancel, out Guid? uuid);

                GuestAgentFreezer? freezer = null;
                Consistency expected = Consistency.Crash;
                string why = "no guest agent socket was given, so nothing in the guest can be frozen";
                if (preparing != null)
                {
                    PreparedAgent prepared = preparing.GetAwaiter().GetResult();
                    agent = prepared.Agent;
                    freezer = prepared.Freezer;
                    expected = prepared.Expected;
                    why = prepared.Why;
                    preparing = null;
                }

                RequireConsistency(expected, options, why);

                var overlays = tracking != null ? new List<QemuOverlay>() : disks.Select(d => new QemuOverlay(d, QemuBlockOperations.OverlayPathFor(d.File, stamp))).ToList();
                planned = overlays;
                string? snapshotTag = _options.Mode == QemuSnapshotMode.Internal ? "vmquiesce-" + stamp : null;
                string saveJobId = QemuBlockOperations.JobPrefix + "save-" + stamp;
                _host.WriteVerbose($"VM '{VmName}': snapshotting {string.Join(", ", disks)}" + (freezer == null ? " without freezing." : $" inside a freeze through {freezer.Target}."));

                bool takeStarted = false;
                bool saved = false;
                Func<CancellationToken, bool> snapshot = token =>
                {
                    _options.BeforeSnapshot?.Invoke(token);
                    if (snapshotTag != null)
                    {
                        QemuBlockOperations.SaveInternalSnapshot(qmp, disks, snapshotTag, saveJobId, options.FreezeTimeout, token);
                        saved = true;
                    }

                    takeStarted = true;
                    if (fleecing != null)
                    {
                        fleecing.TakeInFreeze(qmp, token);
                    }
                    else
                    {
                        QemuBlockOperations.TakeOverlays(qmp, overlays, token);
                    }

                    return true;
                };

                run = BeginRunRecord(qmp.VerifiedPeer, freezer != null, overlays, snapshotTag);
                FreezeGuardian? guardian = freezer != null && run != null ? ArmGuardian(run) : null;
                if (tracking != null)
                {
                    // Last before the freeze: the repository's side (the previous point's manifest) is often the last to be
                    // ready, and the record and the guardian need nothing from it.
                    PrepareTrackedRead(fleecing!, qmp, tracking, run, guardian, cancel);
                }

                // Without a freezer the same guard runs the hooks and bounds the snapshot step; nothing is frozen.
                IGuestFreezer guarded = freezer ?? (IGuestFreezer)new NothingFrozen(VmName);
                GuestAgentClient? hookAgent = agent;
                FrozenWindow<bool> window;
                try
                {
                    var guard = new FreezeGuard(guarded, new FreezeGuardOptions
                    {
                        FreezeTimeout = options.FreezeTimeout,
                        // The host's hooks (-PreFreezeScript, -PostThawScript) wrap the guest's own commands.
                        PreFreeze = FreezeGuardOptions.Chain(
                            options.PreFreeze,
                            _options.PreFreezeHook == null ? null : token => RunHook(hookAgent!, _options.PreFreezeHook, "PreFreezeHookFailed", "pre-freeze", token)),
                        PostThaw = FreezeGuardOptions.Chain(
                            _options.PostThawHook == null ? null : token => RunHook(hookAgent!, _options.PostThawHook, "PostThawHookFailed", "post-thaw", token),
                            options.PostThaw),
                        // After a thaw that went well the post-thaw hooks run beside the view's making and the copy (below).
                        DeferPostThaw = true,
                        Warn = _host.WriteWarning,
                        OnStep = _options.OnFreezeStep,
                        StartDeadline = _options.FreezeDeadline,
                    });
                    window = RunGuarded(guard, snapshot, run, guardian, cancel);
                }
                catch (Exception failure) when (takeStarted || snapshotTag != null)
                {
                    if (snapshotTag != null)
                    {
                        QemuBlockOperations.DismissQuietly(qmp, saveJobId);
                        if (saved)
                        {
                            DeleteInternalSnapshot(qmp, disks, snapshotTag);
                        }
                    }

                    if (takeStarted && fleecing == null)
                    {
                        // The transaction may have been applied even if its answer never came: release what exists.
                        ReleaseAfterFailure(qmp, overlays, failure);
                    }

                    throw;
                }

                Consistency reached = window.Frozen.Count > 0 ? expected : Consistency.Crash;
                double frozenMilliseconds = window.Frozen.Count > 0 ? window.FrozenMilliseconds : 0;
                QuiesceRecord Record(IReadOnlyList<string> frozen) => new QuiesceRecord(reached, frozen, frozenMilliseconds,
                    freezer != null ? QuiesceMethod.GuestAgent : QuiesceMethod.None, frozen.Count > 0 ? FrozenMeasure.FreezeToThaw : FrozenMeasure.None);
                if (freezer == null && !window.PostThawLeft)
                {
                    quiesce = Task.FromResult(Record(window.Frozen));
                }
                else
                {
                    // The post-thaw hooks, then the agent naming what it froze, while the view is made and the copy starts: the
                    // quiesce record waits for them (a hook that fails fails the backup before the release). The agent's connection
                    // closes when they are done.
                    GuestAgentClient? afterThaw = agent;
                    agent = null;
                    quiesce = OwnThread.Start(() =>
                    {
                        using (afterThaw)
                        {
                            window.RunPostThaw();
                            return Record(freezer != null ? freezer.NameFrozen(window.Frozen, cancel) : window.Frozen);
                        }
                    });
                }

                if (reached < options.Required && !options.AllowLower)
                {
                    fleecing?.Release(qmp, success: false);
                    fleecing = null;
                    CommitOverlays(overlays, qmp, CancellationToken.None);
                    if (snapshotTag != null)
                    {
                        DeleteInternalSnapshot(qmp, disks, snapshotTag);
                    }

                    RequireConsistency(reached, options, "the guest agent froze no file system");
                }

                IConsistentView view = fleecing != null
                    ? new QemuTrackedView(this, fleecing, fleecing.Export(qmp, tracking!.Result.Verify, cancel), diskFiles, run, reached, quiesce) { VmUuid = uuid, Machine = machine }
                    : new QemuConsistentView(this, disks, overlays, diskFiles, run, reached, options.KeepSnapshot, quiesce,
                        snapshotTag == null ? null : new CapturedSnapshot(snapshotTag, null, "QemuInternal")) { VmUuid = uuid, Machine = machine };
                fleecing = null;
                quiesce = null;
                _host.WriteVerbose($"VM '{VmName}': {reached} consistency, frozen for {frozenMilliseconds:0.#} ms ({string.Join(", ", window.Frozen)}).");
                diskFiles = null;
                run = null;
                return view;
            }
            finally
            {
                bool released = ReleaseFleecing(fleecing, qmp);
                EndRunRecord(run, planned, released);
                diskFiles?.Dispose();
                agent?.Dispose();
                if (quiesce != null)
                {
                    // The open failed after the thaw: the post-thaw hooks and the naming end (and close the agent) before it returns.
                    OwnThread.WaitEnded(quiesce);
                    if (quiesce.Exception?.InnerException is Exception hookFailure)
                    {
                        _host.WriteWarning(FreezeGuard.PostThawFailedAfterFailure(hookFailure));
                    }
                }

                monitorPeer.TrySetCanceled();
                DisposePreparedAgent(preparing);
                qmp.Dispose();
            }
        }

        /// <summary>
        /// Starts <see cref="PrepareAgent"/> at the start of the open, beside the monitor's connect and checks, on the
        /// connection <see cref="Ahead"/> started if there is one: qemu-ga, while nobody has the host side of its channel
        /// open, looks at the channel only every 100 ms, so the sooner the connection exists, the sooner it answers. Null
        /// without an agent socket, or when a dead run's record is there (its repair may need the channel first).
        /// </summary>
        private Task<PreparedAgent>? PrepareAgentAhead(Task<QemuPeer?> monitorPeer, CancellationToken cancel)
        {
            string? agentSocket = _options.AgentSocket;
            if (agentSocket == null || QemuRunRecord.Load(_options.QmpSocket) != null)
            {
                Ahead?.CloseAgent();
                return null;
            }

            Task<GuestAgentClient>? connected = Ahead?.Options.AgentSocket == agentSocket ? Ahead.TakeAgent() : null;
            return OwnThread.Start(() => PrepareAgent(agentSocket, connected, monitorPeer, cancel));
        }

        /// <summary>
        /// Connects to the agent (or takes <paramref name="connected"/>), then waits for the monitor's verified process and
        /// checks that it serves the agent's channel too (<see cref="VerifyAgent"/>) before anything is sent or anything the
        /// agent says is used; then asks what it can freeze (<see cref="PrepareFreezer"/>).
        /// </summary>
        private PreparedAgent PrepareAgent(string agentSocket, Task<GuestAgentClient>? connected, Task<QemuPeer?> monitorPeer, CancellationToken cancel)
        {
            GuestAgentClient agent = connected?.GetAwaiter().GetResult() ?? GuestAgentClient.Connect(agentSocket, _options.AgentTimeout, cancel);
            try
            {
                VerifyAgent(agent, agentSocket, monitorPeer.GetAwaiter().GetResult());
                return PrepareFreezer(agent, cancel);
            }
            catch
            {
                agent.Dispose();
                throw;
            }
        }

        /// <summary>An agent preparation the open failed before taking: it ends first, and its connection is closed.</summary>
        private static void DisposePreparedAgent(Task<PreparedAgent>? preparing)
        {
            if (preparing == null)
            {
                return;
            }

            OwnThread.WaitEnded(preparing);
            if (preparing.Status == TaskStatus.RanToCompletion)
            {
                preparing.Result.Agent.Dispose();
            }
        }

        /// <summary>
        /// When a backup of this VM whose process has ended left a record, repairs what it left (thaws the guest it
        /// froze, commits its overlays back, finishes its jobs) and says so; a run that still goes on refuses this one.
        /// </summary>
        /// <param name="beforeRepair">Runs once a dead run's record is found, before anything is repaired.</param>
        internal void RecoverDeadRun(QmpClient qmp, CancellationToken cancel, Action? beforeRepair = null)
        {
            if (!(QemuRunRecord.Load(_options.QmpSocket) is QemuRunRecord left))
            {
                return;
            }

            beforeRepair?.Invoke();

            if (left.WriterIsAlive())
            {
                throw new VmQuiesceException("BackupInProgress", FailureKind.ResourceBusy,
                    $"VM '{VmName}' is being backed up right now ({left}), so this backup does not start.", VmName)
                {
                    Remedy = "Wait for that backup to end; if it hangs, stop its process: the guardian and the next backup clean up after it.",
                };
            }

            IReadOnlyList<VmRepairAction> done = new QemuLeftoverRecovery(this, qmp, (_, _) => true).Repair(left, _options.AgentSocket, byName: false, thawAnyFrozen: false, cancel);
            foreach (VmRepairAction action in done)
            {
                _host.WriteWarning($"VM '{VmName}': repaired what an interrupted backup left: {action.Leftover} {action.Action.ToLowerInvariant()}: {action.Detail}.");
            }

            if (done.Any(a => a.Action == "Failed"))
            {
                throw new VmQuiesceException("LeftoversFound", FailureKind.ResourceBusy,
                    $"VM '{VmName}' still has what an interrupted backup left ({QemuLeftoverRecovery.Describe(left)}), and repairing it failed: " +
                    string.Join("; ", done.Where(a => a.Action == "Failed").Select(a => a.Detail)) + ".", VmName)
                {
                    Remedy = "Fix the cause, then run: " + QemuRepairCommands.Repair(_options.QmpSocket, _options.AgentSocket),
                };
            }
        }

        /// <summary>
        /// What an open asks the monitor before it changes anything: the disks, the jobs and the machine, and with change
        /// tracking the exports and the nodes. Asked ahead (<see cref="QmpClient.AskAhead"/>) as soon as the monitor is
        /// connected, QEMU answers them all while the open checks the answers that came first.
        /// </summary>
        internal static IEnumerable<QemuCommand> OpenQueries(bool tracking)
        {
            var queries = new List<QemuCommand> { QemuBlockOperations.DisksQuery, QemuBlockOperations.JobsQuery };
            if (tracking)
            {
                queries.Add(QemuFleecing.ExportsQuery);
                queries.Add(QemuNodeInfo.NodesQuery);
            }

            queries.AddRange(QemuMachine.Queries);
            return queries;
        }

        /// <summary>Connects to the monitor and checks that a trusted QEMU process serves it (<see cref="QemuProcessTrust"/>).</summary>
        internal QmpClient ConnectQmp(CancellationToken cancel) => WarnIfUnverified(ConnectVerifiedQmp(_options, cancel));

        /// <summary>Connects to the monitor of <paramref name="options"/> and checks which process serves it (null where this host cannot tell).</summary>
        internal static QmpClient ConnectVerifiedQmp(QemuSourceOptions options, CancellationToken cancel)
        {
            QmpClient qmp = QmpClient.Connect(options.QmpSocket, options.QmpTimeout, cancel);
            try
            {
                qmp.VerifiedPeer = options.Trust.Verify(qmp.FindPeerProcess(), options.QmpSocket, QmpClient.What);
                return qmp;
            }
            catch
            {
                qmp.Dispose();
                throw;
            }
        }

        /// <summary>The monitor connection <see cref="Ahead"/> started for this VM's socket (its failure is thrown); null when there is none.</summary>
        private QmpClient? TakeMonitorAhead()
        {
            Task<QmpClient>? connecting = Ahead?.Options.QmpSocket == _options.QmpSocket ? Ahead.TakeMonitor() : null;
            return connecting == null ? null : WarnIfUnverified(connecting.GetAwaiter().GetResult());
        }

        private QmpClient WarnIfUnverified(QmpClient qmp)
        {
            if (qmp.VerifiedPeer == null)
            {
                _host.WriteWarning($"VM '{VmName}': which process serves '{_options.QmpSocket}' cannot be checked on {Platform.HostPlatform.Name}; it is taken to be the VM's QEMU, and its disks are read by path.");
            }

            return qmp;
        }

        /// <summary>Connects to the agent and checks that the same QEMU process as the monitor's serves it.</summary>
        internal GuestAgentClient ConnectAgent(string address, QemuPeer? peer, CancellationToken cancel)
        {
            GuestAgentClient agent = GuestAgentClient.Connect(address, _options.AgentTimeout, cancel);
            try
            {
                VerifyAgent(agent, address, peer);
                return agent;
            }
            catch
            {
                agent.Dispose();
                throw;
            }
        }

        /// <summary>Checks that the same QEMU process as the monitor's (<paramref name="peer"/>) serves the agent's connection.</summary>
        private void VerifyAgent(GuestAgentClient agent, string address, QemuPeer? peer)
        {
            int? served = peer == null ? null : agent.FindPeerProcess();
            if (peer != null && served != peer.ProcessId)
            {
                throw new VmQuiesceException("AgentSocketUntrusted", FailureKind.SecurityError,
                    $"The guest agent socket '{address}' of VM '{VmName}' is served by " + (served == null ? "a process this host cannot find" : $"process {served}") +
                    $", not by the VM's {peer}: it is not this VM's agent channel. Nothing was changed.", address)
                {
                    Remedy = "Give the host side of this VM's own org.qemu.guest_agent.0 channel (-AgentSocket), as the VM's QEMU command line names it.",
                };
            }
        }

        internal IReadOnlyList<string> FindLeftovers(QmpClient qmp, IReadOnlyList<QemuDisk> disks, CancellationToken cancel)
        {
            var found = new List<string>();
            var active = new HashSet<string>(StringComparer.Ordinal);
            foreach (QemuDisk disk in disks)
            {
                foreach (string image in disk.Chain)
                {
                    active.Add(image);
                    if (QemuBlockOperations.IsOverlayName(image))
                    {
                        found.Add($"disk {disk.Name} still runs on the overlay '{image}' from an earlier backup; commit it back: " +
                            QemuBlockOperations.CommitRemedy(_options.QmpSocket, new QemuOverlay(BaseOf(disk, image), image, disk.NodeName)));
                    }
                }
            }

            foreach (JsonObject job in qmp.ExecuteArray(QemuBlockOperations.JobsQuery, cancel).OfType<JsonObject>())
            {
                string id = job.GetOptionalString("id") ?? "";
                if (id.StartsWith(QemuBlockOperations.JobPrefix, StringComparison.Ordinal))
                {
                    found.Add($"the QEMU job '{id}' ({GuestText.Escape(job.GetOptionalString("type"))}, {GuestText.Escape(job.GetOptionalString("status"))}) from an earlier backup is still there; " +
                        "finish or dismiss it: " + QemuRepairCommands.Repair(_options.QmpSocket, null));
                }
            }

            foreach (string directory in disks.SelectMany(d => d.Chain).Select(Path.GetDirectoryName).OfType<string>().Where(d => d.Length > 0).Distinct())
            {
                if (!Directory.Exists(directory))
                {
                    continue;
                }

                foreach (string file in Directory.GetFiles(directory!, "*" + QemuBlockOperations.OverlayMarker + "*.qcow2"))
                {
                    string baseImage = file.Substring(0, file.IndexOf(QemuBlockOperations.OverlayMarker, StringComparison.Ordinal));
                    if (!active.Contains(file) && active.Contains(baseImage))
                    {
                        found.Add(file.Contains(QemuDiskCheckpoint.ScratchImageMarker)
                            ? $"the scratch image '{file}' of an earlier change-tracked backup is still there; a backup of the VM removes it, with its node in QEMU, " +
                                $"when it can, or delete it (Remove-Item -LiteralPath {PowerShellText.SingleQuoted(file)})"
                            : $"the overlay file '{file}' from an earlier backup is no longer in use by the VM; delete it once you have checked that '{baseImage}' is the disk's active image (Remove-Item -LiteralPath {PowerShellText.SingleQuoted(file)})");
                    }
                }
            }

            return found;
        }

        /// <summary>Commits the overlays of a view back; failures keep the overlay and say what to run.</summary>
        /// <param name="connected">A QMP connection to reuse (QEMU serves one client at a time), or null to open one.</param>
        internal void CommitOverlays(IReadOnlyList<QemuOverlay> overlays, QmpClient? connected, CancellationToken cancel)
        {
            var failures = new List<(QemuOverlay Overlay, Exception Error)>();
            QmpClient? qmp = connected;
            try
            {
                qmp ??= ConnectQmp(cancel);
                foreach (QemuOverlay overlay in overlays)
                {
                    string jobId = QemuBlockOperations.JobPrefix + "commit-" + overlay.TopName.TrimStart('#') + "-" + Guid.NewGuid().ToString("N").Substring(0, 8);
                    try
                    {
                        _host.WriteVerbose($"VM '{VmName}': committing '{overlay.OverlayPath}' back into '{overlay.BasePath}'.");
                        QemuBlockOperations.CommitOverlay(qmp, overlay, jobId, _options.CommitTimeout, cancel);
                    }
                    catch (Exception e) when (!(e is OperationCanceledException) && (e is VmQuiesceException || e is InvalidOperationException || e is IOException || e is UnauthorizedAccessException))
                    {
                        failures.Add((overlay, e));
                    }
                }
            }
            catch (VmQuiesceException e) when (qmp == null)
            {
                failures.AddRange(overlays.Select(o => (o, (Exception)e)));
            }
            finally
            {
                if (connected == null)
                {
                    qmp?.Dispose();
                }
            }

            if (failures.Count > 0)
            {
                throw new VmQuiesceException("OverlayCommitFailed", FailureKind.InvalidOperation,
                    $"VM '{VmName}' still runs on {failures.Count} overlay(s) that could not be committed back, so the guest's newest writes live only there: " +
                    string.Join("; ", failures.Select(f => $"'{f.Overlay.OverlayPath}' (disk {f.Overlay.Disk.Name}): {f.Error.Message}")) + ". The overlays were left in place.",
                    VmName, failures[0].Error)
                {
                    Remedy = string.Join(" ; ", failures.Select(f => QemuBlockOperations.CommitRemedy(_options.QmpSocket, f.Overlay))),
                };
            }
        }

        /// <summary>Deletes an internal snapshot no restore point will use; a failure is a warning naming what to run.</summary>
        internal void DeleteInternalSnapshot(QmpClient? connected, IReadOnlyList<QemuDisk> disks, string tag)
        {
            QmpClient qmp = connected ?? ConnectQmp(CancellationToken.None);
            try
            {
                string? problem = QemuBlockOperations.DeleteInternalSnapshot(qmp, disks, tag, QemuBlockOperations.JobPrefix + "delete-" + Guid.NewGuid().ToString("N").Substring(0, 8), _options.QmpTimeout);
                if (problem != null)
                {
                    _host.WriteWarning($"VM '{VmName}': {problem}.");
                }
            }
            finally
            {
                if (connected == null)
                {
                    qmp.Dispose();
                }
            }
        }

        /// <summary>The disk as it was below <paramref name="overlayImage"/>: what committing that overlay brings back on top.</summary>
        internal static QemuDisk BaseOf(QemuDisk disk, string overlayImage)
        {
            int index = disk.Chain.ToList().IndexOf(overlayImage);
            string below = index >= 0 && index + 1 < disk.Chain.Count ? disk.Chain[index + 1] : overlayImage;
            return new QemuDisk(disk.Device, disk.Qdev, disk.NodeName, below, disk.Format, disk.Chain.Skip(index + 1).ToList(), disk.VirtualSize);
        }

        private IReadOnlyList<QemuDisk> CheckDisks(QmpClient qmp, CancellationToken cancel)
        {
            IReadOnlyList<QemuDisk> disks = QemuBlockOperations.QueryDisks(qmp, cancel);
            if (disks.Count == 0)
            {
                throw new VmQuiesceException("QemuNoDisks", FailureKind.ObjectNotFound,
                    $"VM '{VmName}' (QMP monitor at '{_options.QmpSocket}') has no writable disk with an image: nothing to back up.", VmName);
            }

            foreach (QemuDisk disk in disks)
            {
                if (disk.WhyNotSnapshotable() is string why)
                {
                    throw new VmQuiesceException("DiskNotSnapshotable", FailureKind.NotSupported,
                        $"Disk {disk.Name} of VM '{VmName}' cannot get an overlay: {why}.", disk.Name);
                }

                if (_options.Mode == QemuSnapshotMode.Internal && (disk.Format != "qcow2" || disk.NodeName.Length == 0))
                {
                    throw new VmQuiesceException("InternalSnapshotNeedsQcow2", FailureKind.NotSupported,
                        $"Disk {disk.Name} of VM '{VmName}' is '{disk.Format}'; an internal snapshot with RAM state needs every disk in qcow2 format.", disk.Name)
                    {
                        Remedy = "Use the external snapshot mode, or convert the disk to qcow2 (qemu-img convert -O qcow2) while the VM is off.",
                    };
                }
            }

            return disks;
        }

        private PreparedAgent PrepareFreezer(GuestAgentClient agent, CancellationToken cancel)
        {
            // Asked in one go (after the sync, unless the connection made ahead has synchronised already); a command the agent
            // lacks or has disabled is answered with an error, used only when guest-info offers it.
            // What is frozen is named after the thaw (GuestAgentFreezer.NameFrozen).
            IReadOnlyList<CommandAnswer> answers = agent.ExecuteAll(new[] { "guest-fsfreeze-status", "guest-info", "guest-get-osinfo" }, cancel);

            // The status first: a frozen qemu-ga reports the freeze itself as disabled, which would look like "no freeze support".
            string? status = FreezeStatusOf(agent, answers[0]);
            if (status == "frozen")
            {
                throw new VmQuiesceException("GuestAlreadyFrozen", FailureKind.ResourceBusy,
                    $"The guest of VM '{VmName}' is frozen according to the guest agent at '{agent.Address}', and no interrupted VmQuiesce backup is recorded as having frozen it: " +
                    "another tool or an administrator froze it, or an older VmQuiesce did. Nothing was changed.", VmName)
                {
                    Remedy = "If nothing needs it frozen, thaw it: " + QemuRepairCommands.Repair(_options.QmpSocket, agent.Address, thaw: true),
                };
            }

            GuestAgentInfo info = agent.ReadInfo(answers[1].Result);
            if (!info.IsEnabled("guest-fsfreeze-freeze") || !info.IsEnabled("guest-fsfreeze-thaw"))
            {
                return new PreparedAgent(agent, null, Consistency.Crash, $"the guest agent at '{agent.Address}' (qemu-ga {info.Version}) does not offer guest-fsfreeze-freeze and -thaw (disabled or unsupported)");
            }

            bool windows = info.IsEnabled("guest-get-osinfo") && agent.ReadOsInfo(answers[2].Result).IsWindows;

            // Windows' agent freezes through VSS, whose writers flush applications.
            return new PreparedAgent(agent, new GuestAgentFreezer(agent, info.IsEnabled("guest-get-fsinfo"), _options.AgentTimeout), windows ? Consistency.Application : Consistency.FileSystem,
                windows ? "" : "a Linux guest's agent freezes file systems (fsfreeze); applications take no part");
        }

        /// <summary>"frozen", "thawed", or null when the agent has no guest-fsfreeze-status.</summary>
        internal static string? FreezeStatus(GuestAgentClient agent, CancellationToken cancel) =>
            FreezeStatusOf(agent, agent.ExecuteAll(new[] { "guest-fsfreeze-status" }, cancel)[0]);

        /// <summary>guest-fsfreeze-status's answer: "frozen", "thawed", or null when the agent has no such command.</summary>
        private static string? FreezeStatusOf(GuestAgentClient agent, CommandAnswer answer) =>
            answer.Error?.ErrorClass == "CommandNotFound" ? null : agent.ReadFreezeStatus(answer.Result);

        private void RequireConsistency(Consistency reachable, QuiesceOptions options, string why)
        {
            if (reachable >= options.Required)
            {
                return;
            }

            if (options.AllowLower)
            {
                _host.WriteWarning($"VM '{VmName}' reaches only {reachable} consistency ({why}); {options.Required} was asked for and a lower level is allowed.");
                return;
            }

            throw new VmQuiesceException("ConsistencyNotReached", FailureKind.InvalidOperation,
                $"VM '{VmName}' can reach only {reachable} consistency, but {options.Required} is required: {why}.", VmName)
            {
                Remedy = reachable == Consistency.Crash
                    ? "Install and start qemu-guest-agent in the guest and give its socket (-AgentSocket), or accept a lower consistency explicitly."
                    : "Accept the lower consistency explicitly, or require no more than the guest can give.",
            };
        }

        private void RunHook(GuestAgentClient agent, IReadOnlyList<string> hook, string errorId, string what, CancellationToken cancel)
        {
            _host.WriteVerbose($"VM '{VmName}': running the {what} hook '{string.Join(" ", hook)}' in the guest.");
            GuestExecResult result = agent.Exec(hook[0], hook.Skip(1).ToList(), _options.HookTimeout, cancel);
            if (!result.Succeeded)
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidOperation,
                    $"The {what} hook '{hook[0]}' in the guest of VM '{VmName}' ended with " +
                    (result.Signal != null ? $"signal {result.Signal}" : $"exit code {result.ExitCode}") +
                    (result.StandardError.Length > 0 ? ": " + GuestText.Escape(result.StandardError.Trim()) : "."), VmName);
            }
        }

        private void ReleaseAfterFailure(QmpClient qmp, IReadOnlyList<QemuOverlay> overlays, Exception failure)
        {
            try
            {
                IReadOnlyList<QemuDisk> now = QemuBlockOperations.QueryDisks(qmp, CancellationToken.None);
                var active = overlays.Where(o => now.Any(d => d.Chain.Contains(o.OverlayPath))).ToList();
                foreach (QemuOverlay unused in overlays.Except(active).Where(o => File.Exists(o.OverlayPath)))
                {
                    File.Delete(unused.OverlayPath);
                }

                if (active.Count > 0)
                {
                    CommitOverlays(active, qmp, CancellationToken.None);
                }
            }
            catch (VmQuiesceException release)
            {
                _host.WriteWarning($"After the failure '{failure.Message}', releasing the overlays of VM '{VmName}' failed too: {release.Message} {release.Remedy}");
            }
        }

        /// <summary>
        /// A fleecing that made no view goes: nodes, jobs, exports, and the new checkpoints merged back into the previous
        /// ones. False when some of it could not go (it was said as a warning).
        /// </summary>
        private bool ReleaseFleecing(QemuFleecing? fleecing, QmpClient qmp)
        {
            try
            {
                fleecing?.Release(qmp, success: false);
                return true;
            }
            catch (VmQuiesceException e)
            {
                _host.WriteWarning($"VM '{VmName}': {e.Message} {e.Remedy}");
                return false;
            }
        }

        /// <summary>The record of this run, written before anything changes; without one (a warning says why) a dead run cannot be repaired automatically.</summary>
        private QemuRunRecord? BeginRunRecord(QemuPeer? qemu, bool mayFreeze, IReadOnlyList<QemuOverlay> overlays, string? snapshotTag)
        {
            try
            {
                return QemuRunRecord.Begin(VmName, _options.QmpSocket, mayFreeze ? _options.AgentSocket : null, qemu,
                    overlays.Select(o => new RecordedOverlay(o.TopName, o.BasePath, o.OverlayPath)), snapshotTag);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                _host.WriteWarning($"VM '{VmName}': the run record in '{QemuRunRecord.Folder}' cannot be written ({e.Message}): if this process dies, the next backup cannot tell what it left.");
                return null;
            }
        }

        /// <summary>
        /// Before the freeze: QEMU's NBD server started (it needs nothing from the freeze, and the way from the thaw to the
        /// copy is shorter without it), then incremental or full decided per disk from the repository's answer. When either
        /// fails nothing was frozen: the guardian armed for the freeze is disarmed and the record says so, so that no later
        /// command thaws or repairs on its word.
        /// </summary>
        private void PrepareTrackedRead(QemuFleecing fleecing, QmpClient qmp, Task<ChangeTrackingRequest> tracking, QemuRunRecord? run, FreezeGuardian? guardian, CancellationToken cancel)
        {
            try
            {
                fleecing.StartServer(qmp, run, cancel);
                fleecing.Decide(tracking.GetAwaiter().GetResult());
            }
            catch when (run != null)
            {
                guardian?.Disarm(run.RunId);
                run.MarkThawed(null);
                throw;
            }

            foreach (QemuDiskCheckpoint disk in fleecing.Disks.Where(d => d.Base == null))
            {
                _host.WriteVerbose($"VM '{VmName}': disk {disk.Disk.Name} is read in full ({disk.Reason}): {disk.Detail}.");
            }
        }

        /// <summary>Guards the freeze from outside this process; a warning when no guardian can be had.</summary>
        private FreezeGuardian? ArmGuardian(QemuRunRecord run)
        {
            FreezeGuardian? guardian = _options.Guardian?.Invoke();
            string? why = guardian == null ? "this process is no PowerShell that can start one" : null;
            if (guardian != null && !guardian.Arm(run, _options.AgentSocket!, out why))
            {
                guardian = null;
            }

            if (guardian == null)
            {
                _host.WriteVerbose($"VM '{VmName}': no guardian process watches this freeze ({why}); should this process die while the guest is frozen, the next backup of the VM thaws it.");
            }

            return guardian;
        }

        /// <summary>The guarded freeze; afterwards the guardian and the record learn whether the guest is thawed.</summary>
        private FrozenWindow<bool> RunGuarded(FreezeGuard guard, Func<CancellationToken, bool> snapshot, QemuRunRecord? run, FreezeGuardian? guardian, CancellationToken cancel)
        {
            bool thawed = false;
            try
            {
                FrozenWindow<bool> window = guard.Run(snapshot, cancel);
                thawed = true;
                return window;
            }
            catch (Exception e)
            {
                thawed = !(e is VmQuiesceException failure && failure.ErrorId == "ThawFailed");
                throw;
            }
            finally
            {
                if (run != null && thawed)
                {
                    guardian?.Disarm(run.RunId);
                    run.MarkThawed(null);
                }
                else if (run != null && guardian != null)
                {
                    // Once this process lets go of the agent's channel, the guardian takes over.
                    guardian.ThawNow(run.RunId);
                    _host.WriteWarning($"VM '{VmName}': a guardian process keeps trying to thaw the guest for {FreezeGuardian.ThawPersistence.TotalMinutes:0} minutes.");
                }
            }
        }

        /// <summary>
        /// A run that made no view: its record goes unless an overlay of it is still on disk, the guest may be frozen, or
        /// its fleecing could not all be released (an NBD server QEMU started though its answer was lost, a job): then the
        /// next command repairs it on the record's word, which is the only thing that says the server is VmQuiesce's.
        /// </summary>
        private static void EndRunRecord(QemuRunRecord? run, IReadOnlyList<QemuOverlay> planned, bool fleecingReleased)
        {
            if (run == null)
            {
                return;
            }

            if (planned.Any(o => File.Exists(o.OverlayPath)) || run.MayBeFrozen || !fleecingReleased)
            {
                run.EndRun();
            }
            else
            {
                run.Delete();
            }
        }

        /// <summary>Stands in for a freezer when the guest cannot be frozen: the guard still runs the hooks and the deadline.</summary>
        private sealed class NothingFrozen : IGuestFreezer
        {
            public NothingFrozen(string vmName)
            {
                Target = $"nothing in VM '{vmName}' (the guest is not frozen)";
            }

            public string Target { get; }

            public string ManualThawCommand => "nothing to thaw";

            public IReadOnlyList<string> Freeze(Action beforeSend, CancellationToken cancel)
            {
                // Nothing is sent, but the guard still decides whether the step runs.
                beforeSend();
                return Array.Empty<string>();
            }

            public void Thaw()
            {
            }
        }

        /// <summary>The guest agent, checked and asked before the freeze: its freezer (null when it cannot freeze), the consistency it reaches, and why.</summary>
        private sealed record PreparedAgent(GuestAgentClient Agent, GuestAgentFreezer? Freezer, Consistency Expected, string Why);
    }
}
