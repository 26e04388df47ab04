using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    public sealed class QemuReadinessTests : IDisposable
    {
        private readonly FakeVm _vm = new FakeVm();

        public void Dispose() => _vm.Dispose();

        [Fact]
        public void A_ready_vm_passes_every_check_in_a_stable_order()
        {
            _vm.Qemu.Start();
            _vm.Agent.Start();

            var checks = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, CancellationToken.None);

            Assert.Equal(new[] { "QmpReachable", "AgentAnswering", "FreezeSupported", "DisksSnapshotable", "OverlaySpace", "NoLeftovers" }, checks.Select(c => c.Check));
            Assert.All(checks, c => Assert.Equal(ReadinessStatus.Passed, c.StatusValue));
            Assert.Contains("FileSystem", checks[2].Detail, StringComparison.Ordinal);
            Assert.All(checks, c => Assert.Equal("vm1", c.VmName));
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void An_agent_that_reports_no_operating_system_is_named_the_guest_not_an_empty_name()
        {
            _vm.Qemu.Start();
            // Some agents (a minimal guest, an old qemu-ga) answer guest-get-osinfo with empty or missing fields.
            _vm.Agent.Override = (command, request, agent) =>
            {
                if (command != "guest-get-osinfo")
                {
                    return false;
                }

                agent.Answer(request, new VmQuiesce.Core.Json.JsonObject().With("id", "").With("pretty-name", " "));
                return true;
            };
            _vm.Agent.Start();

            var checks = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, CancellationToken.None);

            string detail = checks.Single(c => c.Check == "AgentAnswering").Detail;
            Assert.EndsWith(" for the guest.", detail, StringComparison.Ordinal);
            Assert.DoesNotContain("()", detail, StringComparison.Ordinal);
            Assert.Equal("Debian GNU/Linux 12 (debian)", new GuestOsInfo("debian", "Debian GNU/Linux", "Debian GNU/Linux 12", "12", "6.1").Describe());
            Assert.Equal("the guest (mswindows)", new GuestOsInfo("mswindows", "", "", "", "").Describe());
        }

        [Fact]
        public void An_unreachable_monitor_fails_with_a_remedy_and_skips_the_rest()
        {
            var checks = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Folder.File("gone.sock")) { Trust = FakeQemu.TrustThisProcess }, CancellationToken.None);

            Assert.Equal(ReadinessStatus.Failed, checks[0].StatusValue);
            Assert.Contains("gone.sock", checks[0].Detail, StringComparison.Ordinal);
            Assert.NotNull(checks[0].Remedy);
            Assert.All(checks.Skip(1), c => Assert.Equal(ReadinessStatus.Skipped, c.StatusValue));
        }

        [Fact]
        public void No_agent_is_a_warning_and_a_silent_agent_a_failure_naming_its_socket()
        {
            _vm.Qemu.Start();
            _vm.Agent.Answers = false;
            _vm.Agent.Start();

            var withoutAgent = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess }, CancellationToken.None);
            var silentAgent = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, AgentTimeout = TimeSpan.FromMilliseconds(300) }, CancellationToken.None);

            Assert.Equal(ReadinessStatus.Warning, withoutAgent.Single(c => c.Check == "AgentAnswering").StatusValue);
            ReadinessCheck silent = silentAgent.Single(c => c.Check == "AgentAnswering");
            Assert.Equal(ReadinessStatus.Failed, silent.StatusValue);
            Assert.Contains(_vm.Agent.SocketPath, silent.Detail, StringComparison.Ordinal);
            Assert.Equal(ReadinessStatus.Skipped, silentAgent.Single(c => c.Check == "FreezeSupported").StatusValue);
        }

        [Fact]
        public void Disabled_freeze_a_device_image_and_leftovers_fail_their_checks()
        {
            _vm.Agent.FreezeEnabled = false;
            _vm.Qemu.Drives.Add(new FakeQemu.FakeDrive("disk1", "disk1fmt", "raw"));
            _vm.Qemu.Drives[1].Chain.Add("/dev/sdz");
            File.WriteAllText(_vm.Folder.File("base.qcow2.vmquiesce-20250101T000000000Z.qcow2"), "left over");
            _vm.Qemu.Start();
            _vm.Agent.Start();

            var checks = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, CancellationToken.None);

            Assert.Equal(ReadinessStatus.Failed, checks.Single(c => c.Check == "FreezeSupported").StatusValue);
            ReadinessCheck disks = checks.Single(c => c.Check == "DisksSnapshotable");
            Assert.Equal(ReadinessStatus.Failed, disks.StatusValue);
            Assert.Contains("/dev/sdz", disks.Detail, StringComparison.Ordinal);
            Assert.Equal(ReadinessStatus.Failed, checks.Single(c => c.Check == "NoLeftovers").StatusValue);
        }
    }
}
