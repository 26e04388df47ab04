using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading;
using VmQuiesce.Core.Sources.VMware;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>The double is configured through process-wide environment variables: one test at a time.</summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class VmrunDoubleCollection
    {
        public const string Name = "vmrun double";
    }

    [Collection(VmrunDoubleCollection.Name)]
    public sealed class VmrunClientTests
    {
        private const string Password = "p@ss \"word\" 42";

        [VmrunDoubleFact]
        public void List_reports_running_vms_with_their_paths()
        {
            using var vmrun = new VmrunDouble();
            TestVm a = vmrun.CreateVm("a"), b = vmrun.CreateVm("with space");
            VmrunClient client = vmrun.Client();

            Assert.Empty(client.ListRunning(CancellationToken.None));
            client.Start(a.VmxPath, CancellationToken.None);
            client.Start(b.VmxPath, CancellationToken.None);

            Assert.Equal(new[] { a.VmxPath, b.VmxPath }, client.ListRunning(CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void Snapshot_list_delete_round_trip_and_vmrun_errors_map_to_ids()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            VmrunClient client = vmrun.Client();

            client.Snapshot(vm.VmxPath, "before update", CancellationToken.None);
            client.Snapshot(vm.VmxPath, "second", CancellationToken.None);
            Assert.Equal(new[] { "before update", "second" }, client.ListSnapshots(vm.VmxPath, CancellationToken.None));

            Assert.Equal("VmrunSnapshotExists", Assert.Throws<VmQuiesceException>(() => client.Snapshot(vm.VmxPath, "second", CancellationToken.None)).ErrorId);
            Assert.Equal("VmrunSnapshotNotFound", Assert.Throws<VmQuiesceException>(() => client.DeleteSnapshot(vm.VmxPath, "nope", CancellationToken.None)).ErrorId);
            Assert.Equal("VmrunVmNotRunning", Assert.Throws<VmQuiesceException>(() => client.Stop(vm.VmxPath, false, CancellationToken.None)).ErrorId);
            VmQuiesceException missing = Assert.Throws<VmQuiesceException>(() => client.ListSnapshots(vm.VmxPath + ".gone", CancellationToken.None));
            Assert.Equal("VmrunCannotOpenVm", missing.ErrorId);
            Assert.Contains("The virtual machine cannot be found", missing.Message, StringComparison.Ordinal);

            client.DeleteSnapshot(vm.VmxPath, "second", CancellationToken.None);
            Assert.Equal(new[] { "before update" }, client.ListSnapshots(vm.VmxPath, CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void An_error_line_with_exit_code_zero_is_still_a_failure()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: A snapshot operation is already in progress");
            vmrun.Set("VMRUN_DOUBLE_FAIL_EXIT", "0");

            var error = Assert.Throws<VmQuiesceException>(() => vmrun.Client().Snapshot(vm.VmxPath, "s", CancellationToken.None));

            Assert.Equal("VmrunSnapshotBusy", error.ErrorId);
            Assert.Contains("exit code 0", error.Message, StringComparison.Ordinal);
        }

        [VmrunDoubleFact]
        public void A_non_zero_exit_without_text_is_a_failure_naming_the_exit_code()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Set("VMRUN_DOUBLE_FAIL_COMMAND", "deleteSnapshot");
            vmrun.Set("VMRUN_DOUBLE_FAIL_EXIT", "3");

            var error = Assert.Throws<VmQuiesceException>(() => vmrun.Client().DeleteSnapshot(vm.VmxPath, "s", CancellationToken.None));

            Assert.Equal("VmrunFailed", error.ErrorId);
            Assert.Contains("exit code 3", error.Message, StringComparison.Ordinal);
        }

        [VmrunDoubleFact]
        public void A_hung_vmrun_is_killed_with_its_children_at_the_timeout()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Set("VMRUN_DOUBLE_HANG_COMMAND", "snapshot");

            var error = Assert.Throws<VmQuiesceException>(() => vmrun.Client(timeout: TimeSpan.FromSeconds(2)).Snapshot(vm.VmxPath, "s", CancellationToken.None));

            Assert.Equal("VmrunTimedOut", error.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, error.Kind);
            // Had only the script been killed, its sleeping child would have kept the output open: a different message.
            Assert.Contains("did not finish within 2 s", error.Message, StringComparison.Ordinal);
        }

        [VmrunDoubleFact]
        public void Cancellation_stops_vmrun()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Set("VMRUN_DOUBLE_HANG_COMMAND", "listSnapshots");
            using var cancel = new CancellationTokenSource();
            cancel.CancelAfter(TimeSpan.FromMilliseconds(300));

            Assert.ThrowsAny<OperationCanceledException>(() => vmrun.Client().ListSnapshots(vm.VmxPath, cancel.Token));
        }

        [VmrunDoubleFact]
        public void Server_password_reaches_vmrun_but_no_verbose_text_warning_or_error()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm("vm", Directory.CreateDirectory(Path.Combine(vmrun.Root, "store")).FullName);
            vmrun.Set("VMRUN_DOUBLE_DATASTORES", "standard=" + Path.Combine(vmrun.Root, "store"));
            vmrun.Set("VMRUN_DOUBLE_PASSWORD", Password);
            var verbose = new List<string>();
            var warnings = new List<string>();
            VmrunClient client = vmrun.Client(VmwareHostType.Server, "localhost", new NetworkCredential("backup", Password), verbose: verbose, warnings: warnings);

            client.Snapshot("[standard] vm/vm.vmx", "s1", CancellationToken.None);
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: Cannot open VM: [standard] vm/vm.vmx, echo of -p " + Password);
            var error = Assert.Throws<VmQuiesceException>(() => client.ListSnapshots("[standard] vm/vm.vmx", CancellationToken.None));

            IReadOnlyList<string> first = vmrun.Calls()[0];
            Assert.Equal(new[] { "-T", "server", "-h", "https://localhost:8333/sdk", "-u", "backup", "-p", Password, "snapshot", "[standard] vm/vm.vmx", "s1" }, first);
            Assert.True(File.Exists(vm.File("vm.vmsd")));
            string everythingShown = string.Join("\n", verbose.Concat(warnings).Append(error.Message).Append(error.Remedy ?? string.Empty).Append(client.DisplayCommand("deleteSnapshot", "x", "y")));
            Assert.DoesNotContain("p@ss", everythingShown, StringComparison.Ordinal);
            Assert.Contains("-p ********", verbose[0], StringComparison.Ordinal);
            Assert.Single(warnings);
            Assert.Contains("process listings", warnings[0], StringComparison.Ordinal);
        }

        [VmrunDoubleFact]
        public void Server_with_a_wrong_password_is_a_connection_failure()
        {
            using var vmrun = new VmrunDouble();
            vmrun.Set("VMRUN_DOUBLE_PASSWORD", "right");

            var error = Assert.Throws<VmQuiesceException>(() =>
                vmrun.Client(VmwareHostType.Server, "localhost", new NetworkCredential("backup", "wrong")).ListRunning(CancellationToken.None));

            Assert.Equal("VmrunConnectionFailed", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
        }

        [VmrunDoubleFact]
        public void Arguments_with_spaces_quotes_and_backslashes_reach_vmrun_unchanged()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm("odd \"name\"");
            string name = "snap \\\" with\\ tricky \\\\";

            vmrun.Client().Snapshot(vm.VmxPath, name, CancellationToken.None);

            Assert.Equal(new[] { "-T", "ws", "snapshot", vm.VmxPath, name }, vmrun.Calls()[0]);
        }

        [Fact]
        public void A_missing_vmrun_is_a_clear_error()
        {
            var client = new VmrunClient(new VmrunConnection(Path.Combine(Path.GetTempPath(), "no-such-vmrun-" + Guid.NewGuid().ToString("N")), VmwareHostType.Workstation));

            Assert.Equal("VmrunNotStartable", Assert.Throws<VmQuiesceException>(() => client.ListRunning(CancellationToken.None)).ErrorId);
        }
    }
}
