using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// Who VmQuiesce believes is QEMU, against real processes: a fake "qemu" a local user runs, a real QEMU
    /// run by a user that is not configured, and a real root QEMU whose disk is a link, a device or /dev/null.
    /// </summary>
    public sealed class QemuTrustTests
    {
        private const string SystemQemu = ThrowawayUser.SystemQemu;
        private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

        [ThrowawayUserFact]
        public void A_fake_qemu_a_local_user_runs_naming_etc_shadow_as_its_disk_is_refused_everywhere()
        {
            using var user = ThrowawayUser.Create();
            using var folder = new TempFolder();
            string script = folder.File("fake-qemu.pl");
            File.Copy(Path.Combine(AppContext.BaseDirectory, "fake-qemu", "fake-qemu.pl"), script);
            string socket = folder.File("qmp.sock");
            string name = "web-" + Guid.NewGuid().ToString("N").Substring(0, 6);
            user.Own(folder.Path);
            // The attack as found: argv[0] says qemu-system-x86_64, the program is perl.
            using Process fake = user.Start("/bin/bash", "-c", "exec -a qemu-system-x86_64 /usr/bin/perl \"$0\" \"$@\"", script,
                "-name", name, "-qmp", $"unix:{socket},server=on,wait=off", "-drive", "file=/etc/shadow,format=raw");
            try
            {
                WaitForSocket(fake, socket);

                var refused = new List<string>();
                IReadOnlyList<QemuProcess> found = QemuDiscovery.FindRunning(QemuProcessTrust.FromEnvironment(), refused);
                var source = new QemuSource(new QemuSourceOptions(name, socket));
                var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Crash }, CancellationToken.None));
                ReadinessCheck reachable = QemuReadiness.Check(new QemuSourceOptions(name, socket), CancellationToken.None).First();

                Assert.DoesNotContain(found, p => p.Name == name);
                string why = Assert.Single(refused, r => r.Contains(name, StringComparison.Ordinal));
                Assert.Contains($"Process {fake.Id}", why, StringComparison.Ordinal);
                Assert.Contains("'/usr/bin/perl', not a QEMU binary", why, StringComparison.Ordinal);
                Assert.Equal("QemuProcessUntrusted", error.ErrorId);
                Assert.Equal(FailureKind.SecurityError, error.Kind);
                Assert.Contains(socket, error.Message, StringComparison.Ordinal);
                Assert.Contains("'/usr/bin/perl', not a QEMU binary", error.Message, StringComparison.Ordinal);
                Assert.Equal(ReadinessStatus.Failed, reachable.StatusValue);
                Assert.Contains("not a QEMU binary", reachable.Detail, StringComparison.Ordinal);
            }
            finally
            {
                Stop(fake);
            }
        }

        [RootQemuFact]
        public void A_real_qemu_run_by_a_user_that_is_not_configured_is_refused_and_believed_once_configured()
        {
            using var user = ThrowawayUser.Create();
            using var folder = new TempFolder();
            string image = folder.File("disk.img");
            File.WriteAllBytes(image, new byte[1 << 20]);
            user.Own(folder.Path);
            string socket = folder.File("qmp.sock");
            using Process qemu = user.Start(SystemQemu, QemuArguments(image, socket));
            try
            {
                WaitForSocket(qemu, socket);

                var refused = new List<string>();
                QemuDiscovery.FindRunning(QemuProcessTrust.FromEnvironment(), refused);
                ReadinessCheck[] strict = QemuReadiness.Check(new QemuSourceOptions("vm", socket), CancellationToken.None).ToArray();
                ReadinessCheck[] configured = QemuReadiness.Check(new QemuSourceOptions("vm", socket) { Trust = new QemuProcessTrust(new[] { user.Name }) }, CancellationToken.None).ToArray();

                Assert.Contains(refused, r => r.Contains($"Process {qemu.Id}", StringComparison.Ordinal) && r.Contains($"runs as user '{user.Name}'", StringComparison.Ordinal));
                Assert.Equal(ReadinessStatus.Failed, strict[0].StatusValue);
                Assert.Contains($"runs as user '{user.Name}', not as root or a QEMU user", strict[0].Detail, StringComparison.Ordinal);
                Assert.Contains(QemuProcessTrust.UsersVariable, strict[0].Remedy, StringComparison.Ordinal);
                Assert.Equal(ReadinessStatus.Passed, configured.Single(c => c.Check == "QmpReachable").StatusValue);
                // The image is the file this QEMU has open: the disk checks pass too.
                Assert.Equal(ReadinessStatus.Passed, configured.Single(c => c.Check == "DisksSnapshotable").StatusValue);
            }
            finally
            {
                Stop(qemu);
            }
        }

        [RootQemuTheory]
        [InlineData("link")]
        [InlineData("link-to-dev-null")]
        [InlineData("device-node")]
        [InlineData("dev-null")]
        public void A_real_qemu_disk_that_is_a_link_a_device_or_dev_null_is_refused_before_anything_changes(string kind)
        {
            using var folder = new TempFolder();
            string real = folder.File("real.img");
            File.WriteAllBytes(real, new byte[1 << 20]);
            string image = folder.File("disk.img");
            switch (kind)
            {
                case "link":
                    File.CreateSymbolicLink(image, real);
                    break;
                case "link-to-dev-null":
                    File.CreateSymbolicLink(image, "/dev/null");
                    break;
                case "device-node":
                    HostCommand.RunChecked("/bin/mknod", new[] { image, "c", "1", "3" });
                    break;
                default:
                    image = "/dev/null";
                    break;
            }

            string socket = folder.File("qmp.sock");
            using Process qemu = Process.Start(new ProcessStartInfo(SystemQemu, QemuArguments(image, socket)) { UseShellExecute = false, RedirectStandardInput = true })!;
            try
            {
                WaitForSocket(qemu, socket);
                var source = new QemuSource(new QemuSourceOptions("vm", socket));

                var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Crash }, CancellationToken.None));

                Assert.Equal(kind == "dev-null" ? "DiskNotSnapshotable" : "DiskFileUntrusted", error.ErrorId);
                Assert.Contains(image, error.Message, StringComparison.Ordinal);
                Assert.Contains(kind switch
                {
                    "device-node" => "a character device, not a regular file",
                    "dev-null" => "is a host device",
                    _ => "it is a symbolic link",
                }, error.Message, StringComparison.Ordinal);
                Assert.Empty(Directory.GetFiles(folder.Path, "*.vmquiesce-*"));
            }
            finally
            {
                Stop(qemu);
            }
        }

        [Fact]
        public void A_monitor_that_names_a_file_its_process_does_not_have_open_is_refused()
        {
            using var vm = new FakeVm();
            // The stand-in QEMU (this test process) holds its own image open, but reports another file.
            vm.Qemu.Drives[0].Chain[0] = "/etc/hostname";
            vm.Qemu.Start();
            vm.Agent.Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = vm.Agent.SocketPath });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("DiskFileUntrusted", error.ErrorId);
            Assert.Contains("'/etc/hostname'", error.Message, StringComparison.Ordinal);
            Assert.Contains("does not have that file open", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("guest-fsfreeze-freeze", vm.Agent.Commands);
            Assert.DoesNotContain("transaction", vm.Qemu.Commands);
        }

        [LinuxFact]
        public void An_agent_connected_ahead_of_the_monitors_check_is_sent_nothing_when_the_monitors_process_is_refused()
        {
            using var vm = new FakeVm();
            vm.Qemu.Start();
            vm.Agent.Start();
            // The trust as configured: this test process, serving both sockets, is no QEMU binary.
            var source = new QemuSource(new QemuSourceOptions("vm1", vm.Qemu.SocketPath) { AgentSocket = vm.Agent.SocketPath, Guardian = null });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("QemuProcessUntrusted", error.ErrorId);
            lock (vm.Agent.Commands)
            {
                Assert.Empty(vm.Agent.Commands);
            }
        }

        [Fact]
        public async Task An_agent_connected_ahead_is_sent_nothing_while_the_monitors_process_is_not_verified()
        {
            using var vm = new FakeVm();
            vm.Qemu.Start();
            vm.Agent.Start();
            // The trust as configured: this test process, serving both sockets, is no QEMU binary.
            using var ahead = QemuAhead.Start(new QemuSourceOptions("vm1", vm.Qemu.SocketPath) { AgentSocket = vm.Agent.SocketPath, Guardian = null });

            Assert.Equal("QemuProcessUntrusted", (await Assert.ThrowsAsync<VmQuiesceException>(() => ahead.TakeMonitor()!)).ErrorId);
            using (GuestAgentClient agent = await ahead.TakeAgent()!)
            {
                lock (vm.Agent.Commands)
                {
                    Assert.Empty(vm.Agent.Commands);
                }
            }
        }

        [RootQemuFact]
        public void An_agent_socket_served_by_another_process_than_the_monitor_is_refused()
        {
            using var vm = new FakeVm();
            using var other = new TempFolder();
            vm.Qemu.Start();
            // A real QEMU's monitor socket stands for "another process's socket" in the agent's place.
            string image = other.File("disk.img");
            File.WriteAllBytes(image, new byte[1 << 20]);
            string socket = other.File("qmp.sock");
            using Process qemu = Process.Start(new ProcessStartInfo(SystemQemu, QemuArguments(image, socket)) { UseShellExecute = false, RedirectStandardInput = true })!;
            try
            {
                WaitForSocket(qemu, socket);
                var source = new QemuSource(new QemuSourceOptions("vm1", vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = socket });

                var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

                Assert.Equal("AgentSocketUntrusted", error.ErrorId);
                Assert.Contains($"served by process {qemu.Id}", error.Message, StringComparison.Ordinal);
                Assert.DoesNotContain("transaction", vm.Qemu.Commands);
            }
            finally
            {
                Stop(qemu);
            }
        }

        [RootQemuFact]
        public void A_root_qemu_is_not_asked_to_make_an_overlay_in_a_folder_others_may_put_a_link_in()
        {
            using var shared = new TempFolder();
            using var other = new TempFolder();
            File.SetUnixFileMode(shared.Path, (UnixFileMode)0x3FF); // 01777, as /tmp
            string image = shared.File("disk.img");
            File.WriteAllBytes(image, new byte[1 << 20]);
            string victim = other.File("victim");
            byte[] victimBefore = Guid.NewGuid().ToByteArray();
            File.WriteAllBytes(victim, victimBefore);
            string socket = other.File("qmp.sock");
            using Process qemu = Process.Start(new ProcessStartInfo(SystemQemu, QemuArguments(image, socket)) { UseShellExecute = false, RedirectStandardInput = true })!;
            IConsistentView? view = null;
            try
            {
                WaitForSocket(qemu, socket);
                ReadinessCheck disks = QemuReadiness.Check(new QemuSourceOptions("vm", socket), CancellationToken.None).Single(check => check.Check == "DisksSnapshotable");
                Assert.Equal(ReadinessStatus.Failed, disks.StatusValue);
                Assert.Contains("has mode 1777", disks.Detail, StringComparison.Ordinal);
                DateTime started = DateTime.UtcNow;
                var source = new QemuSource(new QemuSourceOptions("vm", socket)
                {
                    // Someone who may write the folder links every name the overlay can have had since the backup began.
                    BeforeSnapshot = _ => PlantOverlayLinks(image, started, victim),
                });

                Exception? refused = Record.Exception(() => view = source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Crash, FreezeTimeout = Generous }, CancellationToken.None));

                Assert.Equal(victimBefore, File.ReadAllBytes(victim));
                var e = Assert.IsType<VmQuiesceException>(refused);
                Assert.Equal("DiskFolderUnsafe", e.ErrorId);
                Assert.Contains("has mode 1777", e.Message, StringComparison.Ordinal);
            }
            finally
            {
                view?.Complete(false, CancellationToken.None);
                Stop(qemu);
            }
        }

        private static void PlantOverlayLinks(string image, DateTime from, string target)
        {
            for (DateTime at = from.AddMilliseconds(-1); at <= DateTime.UtcNow.AddMilliseconds(1); at = at.AddMilliseconds(1))
            {
                string overlay = QemuBlockOperations.OverlayPathFor(image, at.ToString("yyyyMMdd'T'HHmmssfff'Z'", System.Globalization.CultureInfo.InvariantCulture));
                if (RegularFile.StatNoFollow(overlay) == null)
                {
                    File.CreateSymbolicLink(overlay, target);
                }
            }
        }

        private static string[] QemuArguments(string image, string socket) => new[]
        {
            "-machine", "none", "-nodefaults", "-display", "none",
            "-drive", $"if=none,id=disk0,node-name=disk0fmt,file={image},format=raw",
            "-qmp", $"unix:{socket},server=on,wait=off",
        };

        /// <summary>Waits until the process accepts connections (its socket file appears just before it listens); fails at once if it exits first.</summary>
        private static void WaitForSocket(Process process, string socket)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                if (File.Exists(socket))
                {
                    using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
                    try
                    {
                        probe.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
                        return;
                    }
                    catch (System.Net.Sockets.SocketException)
                    {
                        // Bound, not yet listening.
                    }
                }

                Assert.False(process.HasExited, $"the process exited with code {(process.HasExited ? process.ExitCode : 0)} before listening on {socket}");
                Assert.True(clock.Elapsed < Generous, $"nothing listened on {socket} within {Generous.TotalSeconds} s");
                // Doubles as the poll interval: returns early when the process exits.
                process.WaitForExit(20);
            }
        }

        private static void Stop(Process process)
        {
            if (!process.HasExited)
            {
                process.Kill();
            }

            process.WaitForExit();
        }
    }
}
