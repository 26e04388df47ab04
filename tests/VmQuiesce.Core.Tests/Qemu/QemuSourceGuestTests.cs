using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// Two real guests shared by the tests of <see cref="QemuSourceGuestTests"/> (each test uses its own
    /// files, so they do not interfere), booted in parallel on first use. Guest A also has a second
    /// virtio-serial channel that no agent listens on.
    /// </summary>
    public sealed class SharedGuests : IDisposable
    {
        private readonly Lazy<(TestGuestVm A, TestGuestVm B)> _guests;
        private readonly string _deadChannelFolder = Path.Combine(Path.GetTempPath(), "vmq-dead-" + Guid.NewGuid().ToString("N").Substring(0, 8));

        public SharedGuests()
        {
            DeadAgentSocket = Path.Combine(_deadChannelFolder, "nobody.sock");
            _guests = new Lazy<(TestGuestVm, TestGuestVm)>(() =>
            {
                Directory.CreateDirectory(_deadChannelFolder);
                var withDeadChannel = new TestGuestOptions();
                withDeadChannel.ExtraQemuArguments.Add("-chardev");
                withDeadChannel.ExtraQemuArguments.Add($"socket,id=dead0,path={DeadAgentSocket},server=on,wait=off");
                withDeadChannel.ExtraQemuArguments.Add("-device");
                withDeadChannel.ExtraQemuArguments.Add("virtserialport,chardev=dead0,name=org.example.nobody-listens,id=deadport");
                TestGuestVm a = TestGuestVm.Start(withDeadChannel);
                TestGuestVm? b = null;
                try
                {
                    b = TestGuestVm.Start();
                    a.WaitUntilReady();
                    b.WaitUntilReady();
                    return (a, b);
                }
                catch
                {
                    a.Dispose();
                    b?.Dispose();
                    throw;
                }
            });
        }

        public TestGuestVm A => _guests.Value.A;

        public TestGuestVm B => _guests.Value.B;

        /// <summary>The host side of a channel into guest A that no agent answers.</summary>
        public string DeadAgentSocket { get; }

        public void Dispose()
        {
            if (_guests.IsValueCreated)
            {
                _guests.Value.A.Dispose();
                _guests.Value.B.Dispose();
            }

            if (Directory.Exists(_deadChannelFolder))
            {
                Directory.Delete(_deadChannelFolder, recursive: true);
            }
        }
    }

    /// <summary>The QEMU source against real guests with a real qemu-ga (TCG).</summary>
    public sealed class QemuSourceGuestTests : IClassFixture<SharedGuests>
    {
        private static readonly TimeSpan Generous = TimeSpan.FromSeconds(90);
        private readonly SharedGuests _guests;
        private readonly Xunit.Abstractions.ITestOutputHelper _output;

        public QemuSourceGuestTests(SharedGuests guests, Xunit.Abstractions.ITestOutputHelper output)
        {
            _guests = guests;
            _output = output;
        }

        [GuestFact]
        public void Ten_real_freezes_report_their_median_frozen_window()
        {
            TestGuestVm vm = _guests.B;
            var windows = new List<double>();
            for (int i = 0; i < 10; i++)
            {
                using IConsistentView view = Source(vm).OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
                windows.Add(view.Quiesce.FrozenMilliseconds);
                view.Complete(true, CancellationToken.None);
            }

            windows.Sort();
            double median = (windows[4] + windows[5]) / 2;
            string report = $"Frozen window over {windows.Count} freezes (freeze returned -> thaw returned, external overlay, TCG guest): " +
                $"min {windows[0]:0.0} ms, median {median:0.0} ms, max {windows[^1]:0.0} ms";
            _output.WriteLine(report);
            // build.ps1 sets VMQUIESCE_TEST_OUT; the report lands next to the test results.
            if (Environment.GetEnvironmentVariable("VMQUIESCE_TEST_OUT") is string outFolder && Directory.Exists(Path.Combine(outFolder, "TestResults")))
            {
                File.WriteAllText(Path.Combine(outFolder, "TestResults", "frozen-window.txt"), report + Environment.NewLine);
            }

            Assert.All(windows, w => Assert.InRange(w, 0.001, 10_000));
            Assert.Empty(Overlays(vm));
        }

        [GuestFact]
        public void Data_written_just_before_the_backup_is_in_the_view_data_written_after_the_thaw_is_not_and_the_copy_is_clean()
        {
            TestGuestVm vm = _guests.A;
            string id = NewId();
            // No sync: the data sits in the guest's page cache until the freeze flushes it.
            GuestShell(vm, $"echo before-{id} > /mnt/data/before-{id}.txt");

            using IConsistentView view = Source(vm).OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            GuestShell(vm, $"echo after-{id} > /mnt/data/after-{id}.txt && sync");

            Assert.Equal(Consistency.FileSystem, view.Reached);
            Assert.Equal("GuestAgent", view.Quiesce.Method);
            Assert.Contains("/mnt/data", view.Quiesce.Frozen);
            Assert.InRange(view.Quiesce.FrozenMilliseconds, 0.001, 10_000);
            string baseImage = Assert.Single(view.Files).ReadPath;
            Assert.Equal(vm.DiskPaths[0], view.Files[0].OriginalPath);
            Assert.Equal($"before-{id}\n", GuestDiskImage.ReadFile(baseImage, $"/before-{id}.txt"));
            Assert.Null(GuestDiskImage.ReadFile(baseImage, $"/after-{id}.txt"));
            Assert.False(GuestDiskImage.NeedsRecovery(baseImage));
            Assert.Equal(0, GuestDiskImage.Fsck(baseImage));
            Assert.Equal("thawed", FreezeStatus(vm));

            view.Complete(true, CancellationToken.None);

            Assert.Empty(Overlays(vm));
            Assert.Empty(Source(vm).FindLeftovers(CancellationToken.None));
            // The commit brought the writes made during the backup back into the base.
            GuestShell(vm, "sync");
            Assert.Equal($"after-{id}\n", GuestDiskImage.ReadFile(vm.DiskPaths[0], $"/after-{id}.txt"));
        }

        [GuestFact]
        public void The_guest_is_thawed_and_nothing_is_left_after_an_exception_in_the_snapshot_step()
        {
            TestGuestVm vm = _guests.A;
            bool frozenInStep = false;
            QemuSource source = Source(vm, before: _ =>
            {
                frozenInStep = true;
                throw new InvalidOperationException("the snapshot step failed on purpose");
            });

            var error = Assert.Throws<InvalidOperationException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.True(frozenInStep);
            Assert.Equal("the snapshot step failed on purpose", error.Message);
            Assert.Equal("thawed", FreezeStatus(vm));
            Assert.Empty(Overlays(vm));
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [GuestFact]
        public void The_guest_is_thawed_after_cancellation_in_the_frozen_window()
        {
            TestGuestVm vm = _guests.A;
            using var cancel = new CancellationTokenSource();
            QemuSource source = Source(vm, before: token =>
            {
                cancel.Cancel();
                token.ThrowIfCancellationRequested();
            });

            Assert.ThrowsAny<OperationCanceledException>(() => source.OpenConsistentView(new QuiesceOptions(), cancel.Token));

            Assert.Equal("thawed", FreezeStatus(vm));
            Assert.Empty(Overlays(vm));
        }

        [GuestFact]
        public void A_hung_snapshot_step_is_thawed_by_the_watchdog_while_it_still_hangs()
        {
            TestGuestVm vm = _guests.A;
            string id = NewId();
            bool guestWroteWhileStepHung = false;
            // A guest writer that starts after the freeze: its line reaches the console only once the guest is thawed.
            var source = new QemuSource(new QemuSourceOptions("guest-a", vm.QmpSocketPath)
            {
                AgentSocket = vm.AgentSocketPath,
                PreFreezeHook = new[] { "/bin/sh", "-c", $"(sleep 1; echo probe > /mnt/data/probe-{id}.txt; echo PROBE-{id} > /dev/console) </dev/null >/dev/null 2>&1 &" },
                BeforeSnapshot = _ =>
                {
                    // Hangs, ignoring its token, until the guest proves it can write again.
                    vm.WaitForConsoleLine("PROBE-" + id, 1, Generous);
                    guestWroteWhileStepHung = true;
                },
            });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { FreezeTimeout = TimeSpan.FromSeconds(3) }, CancellationToken.None));

            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.True(guestWroteWhileStepHung);
            Assert.Equal("thawed", FreezeStatus(vm));
            Assert.Empty(Overlays(vm));
        }

        [GuestFact]
        public void An_agent_that_does_not_answer_is_a_timeout_naming_its_socket_and_leaves_no_overlay()
        {
            TestGuestVm vm = _guests.A;
            var source = new QemuSource(new QemuSourceOptions("guest-a", vm.QmpSocketPath) { AgentSocket = _guests.DeadAgentSocket, AgentTimeout = TimeSpan.FromSeconds(2) });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("GuestAgentTimeout", error.ErrorId);
            Assert.Contains(_guests.DeadAgentSocket, error.Message, StringComparison.Ordinal);
            Assert.Empty(Overlays(vm));
            using QmpClient qmp = QmpClient.Connect(vm.QmpSocketPath);
            Assert.Equal(new[] { vm.DiskPaths[0] }, QemuBlockOperations.QueryDisks(qmp, CancellationToken.None).Single().Chain);
        }

        [GuestFact]
        public void Two_vms_are_backed_up_in_one_run_each_with_its_own_data()
        {
            string id = NewId();
            GuestShell(_guests.A, $"echo vm-a-{id} > /mnt/data/which-{id}.txt");
            GuestShell(_guests.B, $"echo vm-b-{id} > /mnt/data/which-{id}.txt");

            IConsistentView[] views = new[] { _guests.A, _guests.B }
                .AsParallel()
                .Select(vm => Source(vm).OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
                .ToArray();
            try
            {
                var contents = views.Select(v => GuestDiskImage.ReadFile(v.Files.Single().ReadPath, $"/which-{id}.txt")).OrderBy(c => c).ToArray();
                Assert.Equal(new[] { $"vm-a-{id}\n", $"vm-b-{id}\n" }, contents);
                Assert.All(views, v => Assert.Equal(Consistency.FileSystem, v.Reached));
            }
            finally
            {
                foreach (IConsistentView view in views)
                {
                    view.Complete(true, CancellationToken.None);
                    view.Dispose();
                }
            }

            Assert.Empty(Overlays(_guests.A));
            Assert.Empty(Overlays(_guests.B));
        }

        [GuestFact]
        public void Internal_mode_captures_ram_and_disks_in_a_named_qcow2_snapshot()
        {
            TestGuestVm vm = _guests.B;
            string id = NewId();
            GuestShell(vm, $"echo internal-{id} > /mnt/data/internal-{id}.txt");
            var source = new QemuSource(new QemuSourceOptions("guest-b", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, Mode = QemuSnapshotMode.Internal });

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { KeepSnapshot = true }, CancellationToken.None);
            string tag = view.Snapshot!.Name;
            view.Complete(true, CancellationToken.None);

            Assert.Equal("QemuInternal", view.Snapshot.Kind);
            Assert.Equal($"internal-{id}\n", GuestDiskImage.ReadFile(vm.DiskPaths[0], $"/internal-{id}.txt", tag));
            Assert.False(GuestDiskImage.NeedsRecovery(vm.DiskPaths[0], tag));
            Assert.Contains(tag, HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-U", "-l", vm.DiskPaths[0] }).StandardOutput, StringComparison.Ordinal);
            Assert.Equal("thawed", FreezeStatus(vm));
            Assert.Empty(Overlays(vm));

            // A backup that did not succeed leaves no internal snapshot behind.
            using IConsistentView failed = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            failed.Complete(false, CancellationToken.None);
            string snapshots = HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-U", "-l", vm.DiskPaths[0] }).StandardOutput;
            Assert.DoesNotContain(failed.Snapshot!.Name, snapshots, StringComparison.Ordinal);
            Assert.Contains(tag, snapshots, StringComparison.Ordinal);

            // Without -KeepSnapshot a successful backup lets the live image drop it: the copy holds it.
            using IConsistentView released = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            released.Complete(true, CancellationToken.None);
            snapshots = HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-U", "-l", vm.DiskPaths[0] }).StandardOutput;
            Assert.DoesNotContain(released.Snapshot!.Name, snapshots, StringComparison.Ordinal);
            Assert.Contains(tag, snapshots, StringComparison.Ordinal);
        }

        internal static string NewId() => Guid.NewGuid().ToString("N").Substring(0, 8);

        internal static QemuSource Source(TestGuestVm vm, Action<CancellationToken>? before = null) =>
            new QemuSource(new QemuSourceOptions("guest", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, BeforeSnapshot = before });

        /// <summary>Runs a shell command in the guest through the agent; it must succeed.</summary>
        internal static void GuestShell(TestGuestVm vm, string command)
        {
            using GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(60));
            GuestExecResult result = agent.Exec("/bin/sh", new[] { "-c", command }, TimeSpan.FromSeconds(60));
            Assert.True(result.Succeeded, $"'{command}' in the guest: exit {result.ExitCode} signal {result.Signal}: {result.StandardError}");
        }

        internal static string FreezeStatus(TestGuestVm vm)
        {
            using GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(60));
            return agent.GetFreezeStatus();
        }

        internal static IReadOnlyList<string> Overlays(TestGuestVm vm) => Directory.GetFiles(vm.WorkFolder, "*.vmquiesce-*");
    }

    /// <summary>The agent's life cycle on guests of their own: booting, and killed while the guest is frozen.</summary>
    public sealed class GuestAgentLifecycleGuestTests
    {
        [GuestFact]
        public void An_agent_that_dies_mid_freeze_and_stays_dead_is_reported_loudly_with_the_thaw_command()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { AgentRespawns = false });
            var warnings = new List<string>();
            var source = new QemuSource(new QemuSourceOptions("guest", vm.QmpSocketPath)
            {
                AgentSocket = vm.AgentSocketPath,
                AgentTimeout = TimeSpan.FromSeconds(2),
                PreFreezeHook = new[] { "/bin/sh", "-c", "(sleep 1; kill -9 $(pidof qemu-ga)) </dev/null >/dev/null 2>&1 &" },
                BeforeSnapshot = _ => vm.WaitForConsoleLine(TestGuestVm.AgentExitedMarker, 1, TimeSpan.FromSeconds(60)),
            }, new OperationHost(warn: warnings.Add));

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { FreezeTimeout = TimeSpan.FromSeconds(60) }, CancellationToken.None));

            Assert.Equal("ThawFailed", error.ErrorId);
            Assert.Contains("MAY STILL BE FROZEN", error.Message, StringComparison.Ordinal);
            Assert.Contains(vm.AgentSocketPath, error.Message, StringComparison.Ordinal);
            Assert.Contains($"Repair-BackupVm -AgentSocket '{vm.AgentSocketPath}' -Thaw", error.Remedy, StringComparison.Ordinal);
            Assert.Equal(3, warnings.Count(w => w.Contains("Thawing", StringComparison.Ordinal) && w.Contains("failed (attempt", StringComparison.Ordinal)));
            // The snapshot itself was taken and released: no overlay is left on the host.
            Assert.Empty(QemuSourceGuestTests.Overlays(vm));
        }

        [GuestFact]
        public void Sync_keeps_asking_through_the_boot_and_discards_the_replies_to_earlier_syncs()
        {
            using TestGuestVm vm = TestGuestVm.Start();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(vm.AgentSocketPath))
            {
                Assert.False(vm.Process.HasExited, "QEMU exited before creating the agent socket");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "QEMU created no agent socket within 60 s");
                vm.Process.WaitForExit(50);
            }

            using GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(90));
            bool readyBeforeSync = vm.ReadConsole().Contains(TestGuestVm.ReadyMarker, StringComparison.Ordinal);
            agent.Sync(TimeSpan.FromSeconds(90));

            Assert.False(readyBeforeSync, "the guest was up before the sync started, so nothing was proven");
            Assert.Equal("thawed", agent.GetFreezeStatus());
            agent.Ping();
        }

        [GuestFact]
        public void The_guest_is_thawed_by_the_restarted_agent_when_the_agent_dies_mid_freeze()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            var warnings = new List<string>();
            bool agentDiedWhileFrozen = false;
            var source = new QemuSource(new QemuSourceOptions("guest", vm.QmpSocketPath)
            {
                AgentSocket = vm.AgentSocketPath,
                // Killed from a detached job after the freeze; init restarts qemu-ga as a service manager would.
                PreFreezeHook = new[] { "/bin/sh", "-c", "(sleep 1; kill -9 $(pidof qemu-ga)) </dev/null >/dev/null 2>&1 &" },
                BeforeSnapshot = _ =>
                {
                    vm.WaitForConsoleLine(TestGuestVm.AgentExitedMarker, 1, TimeSpan.FromSeconds(60));
                    agentDiedWhileFrozen = true;
                },
            }, new OperationHost(warn: warnings.Add));

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { FreezeTimeout = TimeSpan.FromSeconds(30) }, CancellationToken.None);
            view.Complete(true, CancellationToken.None);

            Assert.True(agentDiedWhileFrozen);
            // Only the restarted agent can have answered the thaw; init reports the restart once it polled the port.
            vm.WaitForConsoleLine(TestGuestVm.AgentRestartedMarker, 1, TimeSpan.FromSeconds(60));
            Assert.Equal(Consistency.FileSystem, view.Reached);
            Assert.Equal("thawed", QemuSourceGuestTests.FreezeStatus(vm));
            QemuSourceGuestTests.GuestShell(vm, "echo writable > /mnt/data/after-agent-death.txt && sync");
            Assert.Empty(QemuSourceGuestTests.Overlays(vm));
        }
    }
}
