using System;
using VmQuiesce.Core;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    public sealed class QemuDiscoveryTests
    {
        [Fact]
        public void A_command_line_with_qmp_and_agent_sockets_gives_both_and_the_name()
        {
            string[] arguments =
            {
                "qemu-system-x86_64", "-name", "guest=web01,debug-threads=on", "-m", "128",
                "-chardev", "socket,id=qga0,path=/run/vms/web01/qga.sock,server=on,wait=off",
                "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0,id=qgaport",
                "-qmp", "unix:/run/vms/web01/qmp.sock,server=on,wait=off",
            };

            QemuProcess? process = QemuDiscovery.ParseCommandLine(42, arguments, "/");

            Assert.NotNull(process);
            Assert.Equal("web01", process!.Name);
            Assert.Equal("/run/vms/web01/qmp.sock", process.QmpSocket);
            Assert.Equal("/run/vms/web01/qga.sock", process.AgentSocket);
            Assert.Equal(42, process.ProcessId);
        }

        [Fact]
        public void A_monitor_chardev_in_control_mode_counts_and_relative_paths_use_the_working_directory()
        {
            string[] arguments =
            {
                "/usr/bin/qemu-system-x86_64", "--chardev", "socket,id=mon0,path=qmp.sock,server=on,wait=off",
                "-mon", "chardev=mon0,mode=control", "-name", "db",
            };

            QemuProcess? process = QemuDiscovery.ParseCommandLine(7, arguments, "/var/lib/vms/db");

            Assert.Equal("/var/lib/vms/db/qmp.sock", process!.QmpSocket);
            Assert.Null(process.AgentSocket);
            Assert.Equal("db", process.Name);
        }

        [Fact]
        public void Commas_doubled_in_a_path_are_literal_and_a_missing_name_comes_from_the_socket()
        {
            string[] arguments = { "qemu-system-aarch64", "-qmp", "unix:/tmp/a,,b/qmp.sock,server=on" };

            QemuProcess? process = QemuDiscovery.ParseCommandLine(9, arguments, null);

            Assert.Equal("/tmp/a,b/qmp.sock", process!.QmpSocket);
            // The name Get-BackupVm -QmpSocket gives the same VM: one VM, one name.
            Assert.Equal("qmp", process.Name);
            Assert.Equal(QemuDiscovery.NameFromSocket("/tmp/a,b/qmp.sock"), process.Name);
            Assert.Null(process.Uuid);
        }

        [Fact]
        public void A_libvirt_domain_is_named_after_its_domain_and_its_uuid_is_read()
        {
            string[] arguments =
            {
                "/usr/bin/qemu-system-x86_64", "-uuid", "8c1e7c4a-2b7f-4a55-9e0e-3f1c2d4b5a69",
                "-chardev", "socket,id=charmonitor,path=/var/lib/libvirt/qemu/domain-3-web01/monitor.sock,server=on,wait=off",
                "-mon", "chardev=charmonitor,id=monitor,mode=control",
            };

            QemuProcess? process = QemuDiscovery.ParseCommandLine(11, arguments, "/");

            Assert.Equal("web01", process!.Name);
            Assert.Equal(Guid.Parse("8c1e7c4a-2b7f-4a55-9e0e-3f1c2d4b5a69"), process.Uuid);
            Assert.Equal("web01", QemuDiscovery.NameFromSocket("unix:/var/lib/libvirt/qemu/domain-3-web01/monitor.sock"));
        }

        [Theory]
        [InlineData("00000000-0000-0000-0000-000000000000")]
        [InlineData("not-a-uuid")]
        [InlineData(null)]
        public void An_all_zero_or_malformed_uuid_is_no_uuid(string? text)
        {
            Assert.Null(QemuDiscovery.ParseUuid(text));
        }

        [Fact]
        public void A_command_line_without_a_qmp_unix_socket_is_not_a_backup_target()
        {
            string[] arguments = { "qemu-system-x86_64", "-qmp", "tcp:localhost:4444,server=on", "-monitor", "stdio" };

            Assert.Null(QemuDiscovery.ParseCommandLine(1, arguments, "/"));
        }

        [Fact]
        public void Discovery_finds_running_qemu_processes_on_linux_and_refuses_elsewhere()
        {
            if (HostPlatform.IsLinux)
            {
                // No assumption about what runs here: every result must come from a qemu-system process.
                foreach (QemuProcess process in QemuDiscovery.FindRunning())
                {
                    Assert.StartsWith("qemu-system-", System.IO.Path.GetFileName(System.IO.File.ReadAllText($"/proc/{process.ProcessId}/cmdline").Split('\0')[0]), StringComparison.Ordinal);
                }
            }
            else
            {
                Assert.Equal("DiscoveryNotSupported", Assert.Throws<VmQuiesceException>(() => QemuDiscovery.FindRunning()).ErrorId);
            }
        }

        [Fact]
        public void A_backup_vm_carries_its_sockets_and_opens_a_qemu_source()
        {
            BackupVm vm = new QemuVm("web01", "/run/qmp.sock", "/run/qga.sock", 12);

            Assert.Equal("Qemu", vm.Kind);
            Assert.Equal("/run/qmp.sock", vm.Location);
            Assert.Equal("/run/qga.sock", vm.Details["AgentSocket"]);
            Assert.Equal("12", vm.Details["ProcessId"]);
            var source = Assert.IsType<QemuSource>(vm.OpenSource());
            Assert.Equal("web01", source.VmName);
            Assert.Equal("/run/qga.sock", source.Options.AgentSocket);
        }
    }
}
