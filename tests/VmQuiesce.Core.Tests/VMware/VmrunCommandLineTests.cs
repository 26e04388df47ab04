using System;
using System.Net;
using VmQuiesce.Core.Sources.VMware;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    public sealed class VmrunCommandLineTests
    {
        private const string Password = "S3cr\"et pass\\";

        private static VmrunConnection Server() =>
            new VmrunConnection("/opt/vmrun", VmwareHostType.Server, "esx01", new NetworkCredential("backup", Password));

        [Theory]
        [InlineData(VmwareHostType.Workstation, "ws")]
        [InlineData(VmwareHostType.Player, "player")]
        [InlineData(VmwareHostType.Fusion, "fusion")]
        public void Local_host_types_pass_only_the_type_before_the_command(VmwareHostType type, string expected)
        {
            var line = VmrunCommandLine.Build(new VmrunConnection("/opt/vmrun", type), "snapshot", "/vms/a b/a.vmx", "vmquiesce-1");

            Assert.Equal(new[] { "-T", expected, "snapshot", "/vms/a b/a.vmx", "vmquiesce-1" }, line.DisplayArguments);
            Assert.Equal($"-T {expected} snapshot \"/vms/a b/a.vmx\" vmquiesce-1", line.Display);
        }

        [Fact]
        public void Server_passes_host_url_user_and_masked_password_then_the_datastore_path()
        {
            var line = VmrunCommandLine.Build(Server(), "snapshot", "[standard] vm/vm.vmx", "vmquiesce-1");

            Assert.Equal(
                new[] { "-T", "server", "-h", "https://esx01:8333/sdk", "-u", "backup", "-p", VmrunCommandLine.Mask, "snapshot", "[standard] vm/vm.vmx", "vmquiesce-1" },
                line.DisplayArguments);
            Assert.DoesNotContain("S3cr", line.Display, StringComparison.Ordinal);
        }

        [Fact]
        public void The_password_stays_a_placeholder_in_the_arguments_until_the_process_starts()
        {
            var line = VmrunCommandLine.Build(Server(), "listSnapshots", "[standard] vm/vm.vmx");

            Assert.Null(line.Arguments[7]);
            Assert.Equal("-p", line.Arguments[6]);
            Assert.Equal(Password.Length, line.Password!.Length);
        }

        [Theory]
        [InlineData("esx01", "https://esx01:8333/sdk")]
        [InlineData("esx01:9443", "https://esx01:9443/sdk")]
        [InlineData("https://esx01:8333/sdk", "https://esx01:8333/sdk")]
        [InlineData("[fe80::1]", "https://[fe80::1]:8333/sdk")]
        public void Server_host_becomes_the_sdk_url(string host, string expected) =>
            Assert.Equal(expected, VmrunConnection.ToServerUrl(host));

        [Theory]
        [InlineData("esx 01")]
        [InlineData("esx\"01")]
        [InlineData("esx\n01")]
        public void Server_host_with_space_quote_or_control_character_is_refused(string host) =>
            Assert.Equal("VmrunHostInvalid", Assert.Throws<VmQuiesceException>(() => VmrunConnection.ToServerUrl(host)).ErrorId);

        [Fact]
        public void Server_without_credential_or_host_is_refused_and_local_types_refuse_a_host()
        {
            Assert.Equal("VmrunCredentialRequired", Assert.Throws<VmQuiesceException>(() => new VmrunConnection("/v", VmwareHostType.Server, "esx01")).ErrorId);
            Assert.Equal("VmrunHostRequired", Assert.Throws<VmQuiesceException>(() => new VmrunConnection("/v", VmwareHostType.Server, null, new NetworkCredential("u", "p"))).ErrorId);
            Assert.Equal("VmrunHostNotSupported", Assert.Throws<VmQuiesceException>(() => new VmrunConnection("/v", VmwareHostType.Workstation, "esx01")).ErrorId);
        }

        [Fact]
        public void Redaction_masks_the_password_wherever_it_appears_and_any_password_flag_value()
        {
            var line = VmrunCommandLine.Build(Server(), "list");

            string redacted = line.Redact($"vmrun said: bad password {Password} and -p \"{Password}\" and -gp guestpw and -vp hunter2");

            Assert.DoesNotContain("S3cr", redacted, StringComparison.Ordinal);
            Assert.DoesNotContain("guestpw", redacted, StringComparison.Ordinal);
            Assert.DoesNotContain("hunter2", redacted, StringComparison.Ordinal);
            Assert.Contains("-gp ********", redacted, StringComparison.Ordinal);
        }

        [Fact]
        public void Redaction_leaves_text_without_secrets_alone()
        {
            var line = VmrunCommandLine.Build(new VmrunConnection("/v", VmwareHostType.Workstation), "list");

            Assert.Equal("Total running VMs: 1\n/vms/a-p/a.vmx", line.Redact("Total running VMs: 1\n/vms/a-p/a.vmx"));
        }
    }

    public sealed class VmrunOutputTests
    {
        [Fact]
        public void Running_list_is_parsed_with_paths_containing_spaces()
        {
            var vms = VmrunClient.ParseCountedList("Total running VMs: 2\r\n/vms/a b/a.vmx\r\nC:\\VMs\\b\\b.vmx\r\n", "Total running VMs:", "list", "(host)");

            Assert.Equal(new[] { "/vms/a b/a.vmx", "C:\\VMs\\b\\b.vmx" }, vms);
        }

        [Fact]
        public void Empty_lists_parse_to_nothing()
        {
            Assert.Empty(VmrunClient.ParseCountedList("Total running VMs: 0\n", "Total running VMs:", "list", "(host)"));
            Assert.Empty(VmrunClient.ParseCountedList("Total snapshots: 0\n", "Total snapshots:", "listSnapshots", "vm"));
        }

        [Fact]
        public void Snapshot_names_are_parsed_in_order()
        {
            Assert.Equal(new[] { "before update", "vmquiesce-20260101T000000000Z" },
                VmrunClient.ParseCountedList("Total snapshots: 2\nbefore update\nvmquiesce-20260101T000000000Z\n", "Total snapshots:", "listSnapshots", "vm"));
        }

        [Theory]
        [InlineData("Total snapshots: 2\nonly one\n")]
        [InlineData("Snapshots: 1\na\n")]
        [InlineData("Total snapshots: many\n")]
        [InlineData("")]
        public void Unrecognised_or_inconsistent_output_is_an_error_not_a_guess(string output) =>
            Assert.Equal("VmrunOutputUnrecognized",
                Assert.Throws<VmQuiesceException>(() => VmrunClient.ParseCountedList(output, "Total snapshots:", "listSnapshots", "vm")).ErrorId);

        [Theory]
        [InlineData("Error: The virtual machine is not powered on: /vms/a.vmx\n", "Error: The virtual machine is not powered on: /vms/a.vmx")]
        [InlineData("Unable to connect to host.\nError: Insufficient permissions in host operating system\n", "Unable to connect to host. Error: Insufficient permissions in host operating system")]
        [InlineData("Total snapshots: 0\n", null)]
        public void Error_text_is_found_from_the_first_error_line(string output, string? expected) =>
            Assert.Equal(expected, VmrunClient.FindError(output));
    }

    public sealed class VmrunErrorsTests
    {
        [Theory]
        [InlineData("Error: The virtual machine is not powered on: /vms/a.vmx", "VmrunVmNotRunning", FailureKind.InvalidOperation)]
        [InlineData("Error: A snapshot with the name already exists", "VmrunSnapshotExists", FailureKind.ResourceBusy)]
        [InlineData("Error: The specified snapshot does not exist", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound)]
        [InlineData("Error: Invalid snapshot name 'x'", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound)]
        [InlineData("Error: A file by that name does not exist", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound)]
        [InlineData("Error: The name does not uniquely identify one snapshot", "VmrunSnapshotAmbiguous", FailureKind.InvalidOperation)]
        [InlineData("Error: A snapshot operation is already in progress", "VmrunSnapshotBusy", FailureKind.ResourceBusy)]
        [InlineData("Error: Cannot open VM: /vms/a.vmx, The virtual machine cannot be found", "VmrunCannotOpenVm", FailureKind.ObjectNotFound)]
        [InlineData("Error: The file is already in use", "VmrunFileInUse", FailureKind.ResourceBusy)]
        [InlineData("Error: Insufficient permissions in host operating system", "VmrunPermissionDenied", FailureKind.PermissionDenied)]
        [InlineData("Unable to connect to host. Error: Insufficient permissions in host operating system", "VmrunConnectionFailed", FailureKind.ConnectionError)]
        [InlineData("Error: The operation is not supported for the specified parameters", "VmrunNotSupported", FailureKind.NotSupported)]
        [InlineData("Error: Something VMware never told anyone about", "VmrunFailed", FailureKind.InvalidOperation)]
        [InlineData("", "VmrunFailed", FailureKind.InvalidOperation)]
        public void Each_known_message_maps_to_a_stable_id_and_kind(string message, string errorId, FailureKind kind)
        {
            VmQuiesceException error = VmrunErrors.Map(message, 255, "snapshot", "/vms/a.vmx");

            Assert.Equal(errorId, error.ErrorId);
            Assert.Equal(kind, error.Kind);
            Assert.Equal("/vms/a.vmx", error.Target);
            Assert.Contains("vmrun snapshot for '/vms/a.vmx' failed (exit code 255)", error.Message, StringComparison.Ordinal);
            Assert.NotNull(error.Remedy);
        }
    }
}
