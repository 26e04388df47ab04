using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// The machine a restore point records (machine type, memory, CPUs, CPU model): only allowlisted values are
    /// read back from a manifest anyone with write access to the repository could have edited, and the caller's
    /// options win over it when a VM is started.
    /// </summary>
    public class VmMachineTests
    {
        private static readonly VmMachine Recorded = new VmMachine { Type = "pc-q35-7.2", MemoryMiB = 160, Cpus = 2, CpuModel = "Skylake-Server-v4" };

        [Fact]
        public void A_recorded_machine_goes_through_the_manifest_unchanged_and_a_point_without_one_reads_as_before()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 1)));
            Assert.Null(point.Machine);
            // A manifest from before the machine was recorded has no such member.
            string manifest = ManifestOf(fixture, point);
            File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"machine\": null,", string.Empty, StringComparison.Ordinal));
            Assert.DoesNotContain("\"machine\"", File.ReadAllText(manifest), StringComparison.Ordinal);
            Assert.Null(fixture.Repository.GetRestorePoint(point.Id).Machine);

            RestorePoint read = ReadBack(point.ToJson().With("machine", Recorded.ToJson()));

            Assert.Equal(Recorded.ToString(), read.Machine!.ToString());
            Assert.Equal("pc-q35-7.2", read.Machine.Type);
            Assert.Equal(160, read.Machine.MemoryMiB);
            Assert.Equal(2, read.Machine.Cpus);
            Assert.Equal("Skylake-Server-v4", read.Machine.CpuModel);
        }

        [Theory]
        [InlineData("type", "q35,accel=kvm")] // a comma adds QEMU options
        [InlineData("type", "-kernel")]
        [InlineData("type", "q35\n")]
        [InlineData("type", "")]
        [InlineData("type", "pc q35")]
        [InlineData("type", "../../etc/passwd")]
        [InlineData("cpuModel", "host,+vmx")]
        [InlineData("cpuModel", "max=1")]
        [InlineData("cpuModel", "a\u202Eb")]
        [InlineData("type", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 65 characters
        public void A_hostile_name_in_the_manifest_makes_the_point_unreadable_naming_it(string member, string value)
        {
            JsonFormatException refused = Assert.Throws<JsonFormatException>(() => ReadBack(SomePoint().With("machine", Recorded.ToJson().With(member, value))));

            Assert.Contains(member == "type" ? "machine type" : "CPU model", refused.Message, StringComparison.Ordinal);
        }

        [Theory]
        [InlineData("memoryMiB", 0)]
        [InlineData("memoryMiB", -128)]
        [InlineData("memoryMiB", 16L * 1024 * 1024 + 1)]
        [InlineData("memoryMiB", long.MaxValue)]
        [InlineData("cpus", 0)]
        [InlineData("cpus", 4097)]
        [InlineData("cpus", 1L << 40)]
        public void An_out_of_bounds_number_in_the_manifest_makes_the_point_unreadable(string member, long value)
        {
            JsonFormatException refused = Assert.Throws<JsonFormatException>(() => ReadBack(SomePoint().With("machine", Recorded.ToJson().With(member, value))));

            Assert.Contains(member == "cpus" ? "CPU count" : "memory size", refused.Message, StringComparison.Ordinal);
        }

        [Theory]
        [InlineData("memoryMiB", "512")]
        [InlineData("type", 35L)]
        public void A_value_of_the_wrong_kind_in_the_manifest_is_refused(string member, object value)
        {
            Assert.Throws<JsonFormatException>(() => ReadBack(SomePoint().With("machine", Recorded.ToJson().With(member, value))));
        }

        [Fact]
        public void A_member_this_version_does_not_know_is_never_used()
        {
            RestorePoint read = ReadBack(SomePoint().With("machine", Recorded.ToJson().With("kernel", "/boot/vmlinuz").With("device", "vfio-pci,host=01:00.0")));

            BootCheckOptions options = new BootCheckOptions();
            string arguments = string.Join(" ", BootCheck.MachineArguments(options, options.MachineFor(read.Machine), "/tmp/console.log"));
            Assert.DoesNotContain("vmlinuz", arguments, StringComparison.Ordinal);
            Assert.DoesNotContain("vfio", arguments, StringComparison.Ordinal);
            Assert.Contains("-machine pc-q35-7.2 ", arguments, StringComparison.Ordinal);
        }

        [Fact]
        public void What_QEMU_answers_at_backup_time_is_recorded_only_within_the_allowlist()
        {
            var dropped = new System.Collections.Generic.List<string>();

            VmMachine kept = new VmMachine { Type = "pc,accel=kvm", MemoryMiB = 0, Cpus = 4, CpuModel = "max" }.Allowed(dropped);

            Assert.Null(kept.Type);
            Assert.Null(kept.MemoryMiB);
            Assert.Equal(4, kept.Cpus);
            Assert.Equal("max", kept.CpuModel);
            Assert.Equal(2, dropped.Count);
        }

        [Theory]
        [InlineData("pc-q35-7.2-machine", "pc-q35-7.2")]
        [InlineData("pc-i440fx-9.0-machine", "pc-i440fx-9.0")]
        [InlineData("microvm-machine", "microvm")]
        [InlineData("-machine", null)]
        [InlineData("pc-q35-7.2", null)]
        public void The_machine_type_is_QOMs_type_without_its_suffix(string qomType, string? expected) =>
            Assert.Equal(expected, QemuMachine.MachineType(qomType));

        [Theory]
        [InlineData("max-x86_64-cpu", "max")]
        [InlineData("Skylake-Server-v4-x86_64-cpu", "Skylake-Server-v4")]
        [InlineData("cortex-a57-arm-cpu", "cortex-a57")]
        [InlineData("qemu64", null)]
        [InlineData("x86_64-cpu", null)]
        public void The_CPU_model_is_QOMs_type_without_its_target_and_suffix(string qomType, string? expected) =>
            Assert.Equal(expected, QemuMachine.CpuModel(qomType));

        [Fact]
        public void The_caller_wins_over_the_recorded_machine_and_the_rest_comes_from_the_point()
        {
            var options = new BootCheckOptions { MemoryMiB = 1024, CpuModel = "qemu64" };

            VmMachine machine = options.MachineFor(Recorded);

            Assert.Equal("pc-q35-7.2", machine.Type);
            Assert.Equal(1024, machine.MemoryMiB);
            Assert.Equal(2, machine.Cpus);
            Assert.Equal("qemu64", machine.CpuModel);
            Assert.Equal(new[] { "MachineType", "Cpus" }, machine.FromRestorePoint);
            Assert.Equal(
                new[] { "-accel", "tcg", "-m", "1024" },
                BootCheck.MachineArguments(options, machine, "/tmp/console.log").Take(4));
            string arguments = string.Join(" ", BootCheck.MachineArguments(options, machine, "/tmp/console.log"));
            Assert.Contains("-machine pc-q35-7.2 -smp 2 -cpu qemu64", arguments, StringComparison.Ordinal);
        }

        [Fact]
        public void Without_a_recorded_machine_the_VM_starts_as_it_did_before()
        {
            var options = new BootCheckOptions();

            VmMachine machine = options.MachineFor(null);

            Assert.Empty(machine.FromRestorePoint);
            Assert.Equal(
                new[] { "-accel", "tcg", "-m", "512", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "file:/tmp/console.log" },
                BootCheck.MachineArguments(options, machine, "/tmp/console.log"));
        }

        [Theory]
        [InlineData("tcg", "max")]
        [InlineData("kvm:tcg", "host")]
        public void A_recorded_host_CPU_model_becomes_max_where_only_emulation_runs(string accelerator, string expected)
        {
            VmMachine machine = new BootCheckOptions { Accelerator = accelerator }.MachineFor(new VmMachine { CpuModel = "host" });

            Assert.Equal(expected, machine.CpuModel);
        }

        [Fact]
        public void A_hostile_option_from_the_caller_is_refused_before_anything_starts()
        {
            var options = new BootCheckOptions { MachineType = "q35,kernel=/etc/shadow", Cpus = 0 };

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() => options.MachineFor(Recorded));

            Assert.Equal("VmOptionInvalid", refused.ErrorId);
            Assert.Equal(FailureKind.InvalidArgument, refused.Kind);
            Assert.Contains("machine type", refused.Message, StringComparison.Ordinal);
            Assert.Contains("CPU count 0", refused.Message, StringComparison.Ordinal);
        }

        private static JsonObject SomePoint()
        {
            using var fixture = new RepositoryFixture();
            return fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(1000, 2))).ToJson();
        }

        /// <summary>A manifest as the repository reads one: through its text.</summary>
        private static RestorePoint ReadBack(JsonObject manifest) => RestorePoint.FromJson(JsonText.ParseObject(JsonText.Serialize(manifest, indented: false)));

        private static string ManifestOf(RepositoryFixture fixture, RestorePoint point) => Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
    }
}
