using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// What an interrupted backup leaves, and how the next command finds and repairs it: run records of dead,
    /// living and ended runs against a scripted monitor and agent over real sockets.
    /// </summary>
    public sealed class QemuRecoveryTests : IDisposable
    {
        private readonly FakeVm _vm = new FakeVm();
        private readonly List<string> _warnings = new List<string>();

        public void Dispose() => _vm.Dispose();

        [LinuxFact]
        public void The_next_backup_thaws_the_guest_and_commits_the_overlay_a_dead_run_left_and_says_so()
        {
            string overlay = StartFrozenGuestWithOverlay();
            WriteRecord(DeadProcessId(), "1", mayBeFrozen: true, overlay);

            BackUpOnce();

            Assert.Contains(_warnings, w => w.Contains("FrozenGuest thawed", StringComparison.Ordinal) && w.Contains("left it frozen", StringComparison.Ordinal));
            Assert.Contains(_warnings, w => w.Contains("Overlay committed", StringComparison.Ordinal) && w.Contains(overlay, StringComparison.Ordinal));
            Assert.False(_vm.Agent.IsFrozen);
            Assert.False(File.Exists(overlay));
            Assert.Single(_vm.Qemu.Drives[0].Chain);
            Assert.False(File.Exists(QemuRunRecord.PathFor(_vm.Qemu.SocketPath)), "the record outlived the repair and the backup");
        }

        [LinuxFact]
        public void A_dead_runs_record_that_appears_after_the_agent_was_connected_ahead_still_gets_the_agents_channel_for_its_thaw()
        {
            string overlay = StartFrozenGuestWithOverlay();
            int dead = DeadProcessId();
            bool written = false;
            // Written while the monitor connects: the open found no record before, so it connected the agent ahead.
            _vm.Qemu.Override = (command, request, fake) =>
            {
                if (command == "qmp_capabilities" && !written)
                {
                    written = true;
                    WriteRecord(dead, "1", mayBeFrozen: true, overlay);
                }

                return false;
            };

            BackUpOnce();

            Assert.True(written);
            Assert.Contains(_warnings, w => w.Contains("FrozenGuest thawed", StringComparison.Ordinal));
            Assert.False(_vm.Agent.IsFrozen);
            Assert.False(File.Exists(overlay));
        }

        [LinuxFact]
        public void A_backup_whose_recorded_process_still_runs_is_not_started_and_nothing_is_touched()
        {
            string overlay = LeaveOverlay();
            _vm.Qemu.Start();
            _vm.Agent.Start();
            using Process alive = Process.Start(new ProcessStartInfo("/bin/cat") { RedirectStandardInput = true, UseShellExecute = false })!;
            try
            {
                WriteRecord(alive.Id, QemuRunRecord.ProcessStart(alive.Id)!, mayBeFrozen: false, overlay);

                var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None));
                var repair = Assert.Throws<VmQuiesceException>(() => QemuRepair.RepairRunning(Options(), false, (_, _) => true, CancellationToken.None));

                Assert.Equal("BackupInProgress", error.ErrorId);
                Assert.Contains($"VmQuiesce process {alive.Id}", error.Message, StringComparison.Ordinal);
                Assert.Equal("BackupInProgress", repair.ErrorId);
                Assert.True(File.Exists(overlay));
                Assert.DoesNotContain("block-commit", _vm.Qemu.Commands);
            }
            finally
            {
                alive.StandardInput.Close();
                alive.WaitForExit();
            }
        }

        [Fact]
        public void A_commit_that_failed_leaves_a_record_that_the_next_backup_of_the_same_process_repairs()
        {
            _vm.Qemu.Start();
            _vm.Agent.Start();
            IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            _vm.Qemu.FailCommits = true;
            string overlay = _vm.Qemu.Drives[0].Chain[0];
            Assert.Equal("OverlayCommitFailed", Assert.Throws<VmQuiesceException>(() => view.Complete(true, CancellationToken.None)).ErrorId);
            _vm.Qemu.FailCommits = false;

            BackUpOnce();

            Assert.Contains(_warnings, w => w.Contains("Overlay committed", StringComparison.Ordinal) && w.Contains(overlay, StringComparison.Ordinal));
            Assert.False(File.Exists(overlay));
            Assert.Single(_vm.Qemu.Drives[0].Chain);
        }

        [LinuxFact]
        public void An_nbd_server_qemu_started_while_the_monitor_was_lost_is_stopped_by_the_next_change_tracked_backup()
        {
            bool serverRunning = false;
            bool loseMonitorOnStart = true;
            _vm.Qemu.Override = (command, request, qemu) =>
            {
                switch (command)
                {
                    case "query-block-exports":
                        qemu.Answer(request, new JsonArray());
                        return true;
                    case "query-named-block-nodes":
                        qemu.Answer(request, new JsonArray { new JsonObject().With("node-name", "disk0fmt").With("dirty-bitmaps", new JsonArray()) });
                        return true;
                    case "blockdev-add":
                    case "blockdev-del":
                        qemu.Answer(request, new JsonObject());
                        return true;
                    case "nbd-server-start" when serverRunning:
                        qemu.AnswerError(request, "GenericError", "NBD server already running");
                        return true;
                    case "nbd-server-start":
                        // QEMU starts its server, and the monitor's connection is lost before its answer.
                        serverRunning = true;
                        if (loseMonitorOnStart)
                        {
                            loseMonitorOnStart = false;
                            qemu.DropClient();
                        }
                        else
                        {
                            qemu.Answer(request, new JsonObject());
                        }

                        return true;
                    case "nbd-server-stop":
                        serverRunning = false;
                        qemu.Answer(request, new JsonObject());
                        return true;
                    case "transaction":
                        // The second backup goes no further than its freeze's transaction.
                        qemu.AnswerError(request, "GenericError", "refused by the test");
                        return true;
                    default:
                        return false;
                }
            };
            _vm.Qemu.Start();
            _vm.Agent.Start();
            Task<ChangeTrackingRequest> noPrevious = Task.FromResult(new ChangeTrackingRequest(Array.Empty<PreviousDisk>(), null, verify: false));
            var options = new QuiesceOptions { AllowLower = true };

            Assert.Equal("QmpConnectionClosed", Assert.ThrowsAny<VmQuiesceException>(() => Source().OpenTrackedView(options, noPrevious, CancellationToken.None)).ErrorId);
            Assert.True(serverRunning);
            Assert.True(File.Exists(QemuRunRecord.PathFor(_vm.Qemu.SocketPath)), "the only word that the server is VmQuiesce's went with the record");

            VmQuiesceException second = Assert.ThrowsAny<VmQuiesceException>(() => Source().OpenTrackedView(options, noPrevious, CancellationToken.None));

            Assert.Contains("refused by the test", second.Message, StringComparison.Ordinal);
            Assert.Contains(_warnings, w => w.Contains("repaired what an interrupted backup left", StringComparison.Ordinal) && w.Contains("NBD", StringComparison.Ordinal));
            Assert.False(serverRunning, "the second backup's release left the server it started running");
            Assert.False(File.Exists(QemuRunRecord.PathFor(_vm.Qemu.SocketPath)));
        }

        [Fact]
        public void Repair_commits_vmquiesce_overlays_and_dismisses_its_jobs_without_a_record_and_changes_nothing_when_declined()
        {
            string overlay = LeaveOverlay();
            _vm.Qemu.Override = (command, request, fake) =>
            {
                if (command == "query-jobs" && !fake.ReceivedCommand("job-dismiss"))
                {
                    fake.Answer(request, new JsonArray { new JsonObject().With("id", "vmquiesce-save-x").With("type", "snapshot-save").With("status", "concluded") });
                    return true;
                }

                return command == "job-dismiss" && request.GetObject("arguments").GetString("id") == "vmquiesce-save-x" && Dismissed(request, fake);
            };
            _vm.Qemu.Start();
            _vm.Agent.Start();

            IReadOnlyList<VmRepairAction> declined = QemuRepair.RepairRunning(Options(), false, (_, _) => false, CancellationToken.None);
            Assert.All(declined, a => Assert.Equal("Skipped", a.Action));
            Assert.True(File.Exists(overlay));

            IReadOnlyList<VmRepairAction> done = QemuRepair.RepairRunning(Options(), false, (_, _) => true, CancellationToken.None);

            Assert.Contains(done, a => a.Leftover == "Job" && a.Action == "Dismissed" && a.Detail.Contains("vmquiesce-save-x", StringComparison.Ordinal));
            Assert.Contains(done, a => a.Leftover == "Overlay" && a.Action == "Committed" && a.Detail.Contains(overlay, StringComparison.Ordinal));
            Assert.False(File.Exists(overlay));
            Assert.Empty(QemuRepair.RepairRunning(Options(), false, (_, _) => true, CancellationToken.None));
        }

        [LinuxFact]
        public void After_qemu_restarted_the_dead_runs_overlay_file_is_kept_and_the_guest_is_not_thawed_on_the_records_word()
        {
            string overlay = _vm.Folder.File("base.qcow2.vmquiesce-20260101T000000000Z.qcow2");
            File.WriteAllText(overlay, "writes the restarted VM never saw");
            _vm.Qemu.Start();
            _vm.Agent.Start();
            FreezeGuest();
            WriteRecord(DeadProcessId(), "1", mayBeFrozen: true, overlay, qemuProcess: "1:1");

            IReadOnlyList<VmRepairAction> done = QemuRepair.RepairRunning(Options(), false, (_, _) => true, CancellationToken.None);

            Assert.Contains(done, a => a.Leftover == "OverlayFile" && a.Action == "Kept" && a.Detail.Contains(overlay, StringComparison.Ordinal));
            Assert.True(File.Exists(overlay));
            Assert.True(_vm.Agent.IsFrozen);
            Assert.DoesNotContain("guest-fsfreeze-thaw", _vm.Agent.Commands);
        }

        [RootQemuFact]
        public void An_overlay_whose_qemu_ended_is_merged_offline_into_its_base()
        {
            string image = _vm.Folder.File("disk.qcow2");
            string overlay = image + ".vmquiesce-20260101T000000000Z.qcow2";
            HostCommand.RunChecked("qemu-img", new[] { "create", "-f", "qcow2", image, "1M" });
            HostCommand.RunChecked("qemu-img", new[] { "create", "-f", "qcow2", "-b", image, "-F", "qcow2", overlay });
            HostCommand.RunChecked("qemu-io", new[] { "-f", "qcow2", "-c", "write -P 0x5a 0 64k", overlay });
            string stranger = _vm.Folder.File("other.qcow2.vmquiesce-20260101T000000000Z.qcow2");
            File.Copy(overlay, stranger);

            VmRepairAction done = QemuRepair.CommitOffline(overlay, (_, _) => true, CancellationToken.None);
            var refused = Assert.Throws<VmQuiesceException>(() => QemuRepair.CommitOffline(stranger, (_, _) => true, CancellationToken.None));

            Assert.Equal("Committed", done.Action);
            Assert.False(File.Exists(overlay));
            string merged = HostCommand.RunChecked("qemu-io", new[] { "-f", "qcow2", "-c", "read -P 0x5a 0 64k", image }).StandardOutput;
            Assert.Contains("read 65536/65536 bytes", merged, StringComparison.Ordinal);
            Assert.DoesNotContain("Pattern verification failed", merged, StringComparison.Ordinal);
            Assert.Equal("OverlayInvalid", refused.ErrorId);
            Assert.Contains("not the image", refused.Message, StringComparison.Ordinal);
        }

        private static bool Dismissed(JsonObject request, FakeQemu fake)
        {
            fake.Answer(request, new JsonObject());
            return true;
        }

        /// <summary>A pid no process has now: a child that has already ended.</summary>
        private static int DeadProcessId()
        {
            using Process ended = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
            ended.WaitForExit();
            return ended.Id;
        }

        /// <summary>The VM running with an overlay a run left and its guest frozen, as a run that died mid-backup leaves them; returns the overlay.</summary>
        private string StartFrozenGuestWithOverlay()
        {
            string overlay = LeaveOverlay();
            _vm.Qemu.Start();
            _vm.Agent.Start();
            FreezeGuest();
            return overlay;
        }

        /// <summary>A backup's open (which repairs what a dead run left) and release.</summary>
        private void BackUpOnce()
        {
            using IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            view.Complete(true, CancellationToken.None);
        }

        private string LeaveOverlay()
        {
            string overlay = _vm.Folder.File("base.qcow2.vmquiesce-20260101T000000000Z.qcow2");
            File.WriteAllText(overlay, "overlay of a killed run");
            _vm.Qemu.Drives[0].Chain.Insert(0, overlay);
            return overlay;
        }

        private void FreezeGuest()
        {
            using var client = GuestAgentClient.Connect(_vm.Agent.SocketPath);
            client.Freeze();
        }

        /// <summary>A run record as the run of <paramref name="processId"/> would have written it.</summary>
        private void WriteRecord(int processId, string processStart, bool mayBeFrozen, string overlay, string? qemuProcess = null)
        {
            var json = new JsonObject()
                .With("schema", 1L).With("runId", Guid.NewGuid().ToString("N")).With("vm", "vm1")
                .With("qmpSocket", _vm.Qemu.SocketPath).With("agentSocket", _vm.Agent.SocketPath)
                .With("processId", (long)processId).With("processStart", processStart).With("host", Environment.MachineName)
                .With("started", DateTime.UtcNow.ToString("o", System.Globalization.CultureInfo.InvariantCulture))
                .With("qemuProcess", qemuProcess).With("mayBeFrozen", mayBeFrozen)
                .With("overlays", new JsonArray { new JsonObject().With("disk", "disk0").With("base", _vm.Folder.File("base.qcow2")).With("overlay", overlay) });
            string path = QemuRunRecord.PathFor(_vm.Qemu.SocketPath);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, json.ToString());
        }

        private QemuSourceOptions Options() =>
            new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, Guardian = null };

        private QemuSource Source() => new QemuSource(Options(), new OperationHost(warn: _warnings.Add));
    }
}
