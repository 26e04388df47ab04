using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using VmQuiesce.Core.Sources.VMware;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    [Collection(VmrunDoubleCollection.Name)]
    public sealed class VmwareSourceTests
    {
        private static readonly QuiesceOptions CrashIsEnough = new QuiesceOptions { Required = Consistency.Crash };

        private static readonly QuiesceOptions KeepIt = new QuiesceOptions { Required = Consistency.Crash, KeepSnapshot = true };

        private static VmwareSource Source(VmrunDouble vmrun, TestVm vm, List<string>? warnings = null, bool force = false,
            VmrunClient? client = null, string? vmrunVmPath = null, string? writerConfig = null) =>
            new VmwareSource(new VmwareSourceOptions("vm", vm.VmxPath, client ?? vmrun.Client())
            {
                Force = force,
                VmrunVmPath = vmrunVmPath,
                WriterConfigPath = writerConfig,
            },
            new OperationHost(warn: warnings == null ? null : warnings.Add));

        private static Dictionary<string, string> Read(IConsistentView view) =>
            view.Files.ToDictionary(f => f.RelativePath, f => File.ReadAllText(f.ReadPath));

        [VmrunDoubleFact]
        public void With_KeepSnapshot_the_view_holds_the_frozen_state_keeps_the_snapshot_with_its_vmrun_and_revert_restores_it()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            VmrunClient client = vmrun.Client();
            client.Start(vm.VmxPath, CancellationToken.None);
            vm.GuestWrites("before;");
            VmwareSource source = Source(vmrun, vm);

            Dictionary<string, string> copied;
            CapturedSnapshot? snapshot;
            using (IConsistentView view = source.OpenConsistentView(KeepIt, CancellationToken.None))
            {
                Assert.Equal(Consistency.Crash, view.Reached);
                Assert.Equal("None", view.Quiesce.Method);
                Assert.Empty(view.Quiesce.Frozen);
                Assert.Equal(
                    new[] { "data.vmdk", "system.vmdk", "vm-Snapshot1.vmsn", "vm.nvram", "vm.vmsd", "vm.vmx", "vm.vmxf" },
                    view.Files.Select(f => f.RelativePath).ToArray());
                Assert.All(view.Files, f => Assert.Equal(vm.File(f.RelativePath), f.OriginalPath));
                Assert.Equal(new[] { "system-000001.vmdk", "data-000001.vmdk" }, vm.CurrentDisks());
                Assert.True(Directory.Exists(vm.VmxPath + ".lck"), "the running VM's lock folder exists but is not in the view");

                vm.GuestWrites("after;");
                copied = Read(view);
                snapshot = view.Snapshot;
                view.Complete(true, CancellationToken.None);
            }

            Assert.Equal("system-base;before;", copied["system.vmdk"]);
            Assert.Equal("data-base;before;", copied["data.vmdk"]);
            Assert.Equal("nvram-1+before;", copied["vm.nvram"]);
            Assert.Contains("scsi0:0.fileName = \"system-000001.vmdk\"", copied["vm.vmx"], StringComparison.Ordinal);
            Assert.NotNull(snapshot);
            Assert.Equal(VmwareSource.SourceKind, snapshot!.Kind);
            Assert.StartsWith(VmwareSource.SnapshotPrefix, snapshot.Name, StringComparison.Ordinal);
            Assert.Equal(VmrunDouble.ScriptPath, snapshot.VmrunPath);
            Assert.Equal("Workstation", snapshot.VmrunHostType);
            Assert.Equal(new[] { snapshot.Name }, client.ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
            Assert.Equal("system-base;before;after;", vm.DiskContent("system.vmdk"));

            // The restore: files back (VM off), then revert to the captured snapshot.
            client.Stop(vm.VmxPath, true, CancellationToken.None);
            foreach ((string relative, string content) in copied)
            {
                File.WriteAllText(vm.File(relative), content);
            }

            source.RevertToSnapshot(snapshot, CancellationToken.None);

            Assert.Equal("system-base;before;", vm.DiskContent("system.vmdk"));
            Assert.Equal("data-base;before;", vm.DiskContent("data.vmdk"));
        }

        [VmrunDoubleFact]
        public void Without_KeepSnapshot_the_snapshot_is_deleted_after_the_copy_and_the_copy_restores_whole_without_a_revert()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            VmrunClient client = vmrun.Client();
            client.Start(vm.VmxPath, CancellationToken.None);
            vm.GuestWrites("before;");
            VmwareSource source = Source(vmrun, vm);

            Dictionary<string, string> copied;
            using (IConsistentView view = source.OpenConsistentView(CrashIsEnough, CancellationToken.None))
            {
                Assert.Null(view.Snapshot);
                // The snapshot's own files are not in a point that has no snapshot; the configuration is the one from
                // before it, naming the disks it froze, not the deltas that follow it.
                Assert.Equal(new[] { "data.vmdk", "system.vmdk", "vm.nvram", "vm.vmx", "vm.vmxf" }, view.Files.Select(f => f.RelativePath).ToArray());
                vm.GuestWrites("after;");
                copied = Read(view);
                view.Complete(true, CancellationToken.None);
            }

            Assert.Contains("scsi0:0.fileName = \"system.vmdk\"", copied["vm.vmx"], StringComparison.Ordinal);
            Assert.Empty(client.ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.Equal(new[] { "system.vmdk", "data.vmdk" }, vm.CurrentDisks());
            Assert.Equal("system-base;before;after;", File.ReadAllText(vm.File("system.vmdk")));
            Assert.False(File.Exists(vm.VmxPath + VmwareSource.PendingMarkerSuffix));

            // The restore without a revert: the files back (VM off), and the VM is the frozen one.
            client.Stop(vm.VmxPath, true, CancellationToken.None);
            foreach ((string relative, string content) in copied)
            {
                File.WriteAllText(vm.File(relative), content);
            }

            Assert.Equal(new[] { "system.vmdk", "data.vmdk" }, vm.CurrentDisks());
            Assert.Equal("system-base;before;", vm.DiskContent("system.vmdk"));
            Assert.Equal("data-base;before;", vm.DiskContent("data.vmdk"));
        }

        [VmrunDoubleFact]
        public void A_failed_backup_deletes_its_snapshot_whether_completed_as_failed_or_only_disposed()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            VmwareSource source = Source(vmrun, vm);

            using (IConsistentView view = source.OpenConsistentView(CrashIsEnough, CancellationToken.None))
            {
                view.Complete(false, CancellationToken.None);
            }

            using (source.OpenConsistentView(CrashIsEnough, CancellationToken.None))
            {
                Assert.Single(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            }

            Assert.Empty(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void A_snapshot_that_cannot_be_deleted_is_reported_with_the_command_to_run_and_found_as_a_leftover()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            var warnings = new List<string>();
            VmwareSource source = Source(vmrun, vm, warnings);
            IConsistentView view = source.OpenConsistentView(CrashIsEnough, CancellationToken.None);
            vmrun.Set("VMRUN_DOUBLE_FAIL_COMMAND", "deleteSnapshot");
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: The file is already in use");

            view.Dispose();

            Assert.Contains(warnings, w => w.Contains("could not be deleted", StringComparison.Ordinal) && w.Contains("deleteSnapshot", StringComparison.Ordinal));
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", null);
            IReadOnlyList<string> leftovers = source.FindLeftovers(CancellationToken.None);
            Assert.Single(leftovers);
            Assert.Contains(VmwareSource.SnapshotPrefix, leftovers[0], StringComparison.Ordinal);
            var refused = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(CrashIsEnough, CancellationToken.None));
            Assert.Equal("LeftoversFound", refused.ErrorId);
            Assert.Single(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void Links_fifos_and_linked_folders_in_the_VM_folder_are_named_and_never_read()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string secret = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "host-secret.txt");
            File.WriteAllText(secret, "host secret");
            string secretFolder = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "host-folder");
            Directory.CreateDirectory(secretFolder);
            File.WriteAllText(Path.Combine(secretFolder, "inner.txt"), "host secret too");
            File.CreateSymbolicLink(vm.File("leak.txt"), secret);
            File.CreateSymbolicLink(vm.File("leakdir"), secretFolder); // symlink(2) links a folder as well
            HostCommand.RunChecked("mkfifo", new[] { vm.File("pipe") });
            var warnings = new List<string>();

            using IConsistentView view = Source(vmrun, vm, warnings).OpenConsistentView(CrashIsEnough, CancellationToken.None);

            Assert.DoesNotContain(view.Files, f => f.RelativePath.StartsWith("leak", StringComparison.Ordinal) || f.RelativePath == "pipe");
            Assert.Contains("vm.vmx", view.Files.Select(f => f.RelativePath));
            string warning = Assert.Single(warnings, w => w.Contains("only regular files", StringComparison.Ordinal));
            Assert.Contains("'leak.txt' is a link", warning, StringComparison.Ordinal);
            Assert.Contains("'leakdir' is a link", warning, StringComparison.Ordinal);
            Assert.Contains("'pipe' is a FIFO", warning, StringComparison.Ordinal);
        }

        [VmrunDoubleFact]
        public void A_file_or_folder_swapped_for_a_link_while_the_copy_runs_is_still_read_as_it_was_found()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string outside = Path.GetDirectoryName(vm.Folder)!;
            string secret = Path.Combine(outside, "host-secret.txt");
            File.WriteAllText(secret, "host secret");
            string secretFolder = Path.Combine(outside, "host-folder");
            Directory.CreateDirectory(secretFolder);
            File.WriteAllText(Path.Combine(secretFolder, "notes.txt"), "host secret too");
            File.WriteAllText(vm.File("notes.txt"), "vm notes");
            Directory.CreateDirectory(vm.File("sub"));
            File.WriteAllText(vm.File("sub/notes.txt"), "vm sub notes");

            using IConsistentView view = Source(vmrun, vm).OpenConsistentView(CrashIsEnough, CancellationToken.None);
            // Whoever can write the VM folder swaps a file and a folder for links after they were listed.
            File.Delete(vm.File("notes.txt"));
            File.CreateSymbolicLink(vm.File("notes.txt"), secret);
            Directory.Move(vm.File("sub"), vm.File("sub-moved"));
            File.CreateSymbolicLink(vm.File("sub"), secretFolder);
            Dictionary<string, string> read = Read(view);
            view.Complete(true, CancellationToken.None);

            Assert.Equal("vm notes", read["notes.txt"]);
            Assert.Equal("vm sub notes", read["sub/notes.txt"]);
            Assert.DoesNotContain(read.Values, content => content.Contains("host secret", StringComparison.Ordinal));
        }

        /// <summary>
        /// The restore gives each file back the owner and mode the point records: those of the file that was read, not of
        /// a host file that a link swapped in after the listing leads to (a configuration file too, read from its copy).
        /// </summary>
        [VmrunDoubleFact]
        public void A_file_swapped_for_a_link_after_it_was_listed_is_recorded_with_the_owner_and_mode_of_the_file_read()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();
            string secret = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "host-secret.txt");
            File.WriteAllText(secret, "host secret");
            HostCommand.RunChecked("chmod", new[] { "0604", secret });
            File.WriteAllText(vm.File("notes.txt"), "vm notes");
            HostCommand.RunChecked("chmod", new[] { "0640", vm.File("notes.txt"), vm.File("vm.nvram") });
            var swapped = new List<string>();
            var source = new AfterViewOpens(Source(vmrun, vm), () =>
            {
                // Whoever can write the VM folder swaps files for links to a host file once they were listed.
                foreach (string name in new[] { "notes.txt", "vm.nvram" })
                {
                    File.Move(vm.File(name), vm.File(name + ".moved"));
                    File.CreateSymbolicLink(vm.File(name), secret);
                    swapped.Add(name);
                }
            });

            RestorePoint point = new BackupEngine(repository.Repository, workers: 2).Run(source, CrashIsEnough, null, CancellationToken.None).RestorePoint;

            Assert.Equal(new[] { "notes.txt", "vm.nvram" }, swapped);
            FileStatus read = UnixFiles.Stat(vm.File("notes.txt.moved"));
            foreach (string name in swapped)
            {
                Assert.Equal($"{read.Uid}:{read.Gid} 0640", point.Files.Single(f => f.Path == name).OwnerValue?.ToString());
            }
        }

        /// <summary>A source that runs <c>then</c> once its view is open: what happens in the VM folder while the engine copies.</summary>
        private sealed class AfterViewOpens : IBackupSource
        {
            private readonly IBackupSource _inner;
            private readonly Action _then;

            public AfterViewOpens(IBackupSource inner, Action then)
            {
                _inner = inner;
                _then = then;
            }

            public string Kind => _inner.Kind;

            public string VmName => _inner.VmName;

            public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => _inner.FindLeftovers(cancel);

            public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
            {
                IConsistentView view = _inner.OpenConsistentView(options, cancel);
                _then();
                return view;
            }
        }

        [VmrunDoubleFact]
        public void The_copies_of_the_configuration_are_readable_by_this_user_only()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            foreach (QuiesceOptions options in new[] { CrashIsEnough, KeepIt })
            {
                using IConsistentView view = Source(vmrun, vm).OpenConsistentView(options, CancellationToken.None);
                string copy = view.Files.Single(f => f.RelativePath == "vm.vmx").ReadPath;
                string temp = Path.GetFullPath(Path.GetTempPath()).TrimEnd('/') + "/";
                Assert.StartsWith(temp, copy, StringComparison.Ordinal);
                string staging = temp + copy.Substring(temp.Length).Split('/')[0];

                Assert.Equal(Convert.ToInt32("700", 8), UnixFiles.Stat(staging).Permissions);
                Assert.Equal(Convert.ToInt32("600", 8), UnixFiles.Stat(copy).Permissions);
                view.Complete(true, CancellationToken.None);
                Assert.False(Directory.Exists(staging));
            }
        }

        [VmrunDoubleFact]
        public void Text_from_the_VM_folder_and_vmrun_is_shown_escaped_so_it_cannot_drive_the_terminal()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.WriteAllText(vm.VmxPath + VmwareSource.PendingMarkerSuffix, "vmquiesce-\u001b]0;owned\u0007");
            VmwareSource source = Source(vmrun, vm);

            string leftover = Assert.Single(source.FindLeftovers(CancellationToken.None));
            vmrun.Set("VMRUN_DOUBLE_FAIL_COMMAND", "listSnapshots");
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: Cannot open VM: \u001b[2J\u009b");
            var failure = Assert.Throws<VmQuiesceException>(() => vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));

            foreach (string shown in new[] { leftover, failure.Message })
            {
                Assert.DoesNotContain(shown, c => c == '\u001b' || c == '\u0007' || c == '\u009b');
                Assert.Contains("\\x1b", shown, StringComparison.Ordinal);
            }
        }

        [VmrunDoubleFact]
        public void A_marker_that_is_a_link_is_named_without_reading_what_it_leads_to_and_never_written_through()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string secret = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "host-secret.txt");
            File.WriteAllText(secret, "vmquiesce-host-secret");
            File.CreateSymbolicLink(vm.VmxPath + VmwareSource.PendingMarkerSuffix, secret);
            VmwareSource source = Source(vmrun, vm);

            string leftover = Assert.Single(source.FindLeftovers(CancellationToken.None));
            Assert.Contains("a symbolic link", leftover, StringComparison.Ordinal);
            Assert.DoesNotContain("vmquiesce-host-secret", leftover, StringComparison.Ordinal);
            Assert.Equal("LeftoversFound", Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(CrashIsEnough, CancellationToken.None)).ErrorId);
            Assert.Equal("vmquiesce-host-secret", File.ReadAllText(secret));
        }

        [VmrunDoubleFact]
        public void A_failed_snapshot_call_leaves_nothing_behind_and_keeps_vmruns_message()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Set("VMRUN_DOUBLE_FAIL_COMMAND", "snapshot");
            vmrun.Set("VMRUN_DOUBLE_FAIL_TEXT", "Error: Insufficient permissions in host operating system");
            VmwareSource source = Source(vmrun, vm);

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(CrashIsEnough, CancellationToken.None));

            Assert.Equal("VmrunPermissionDenied", error.ErrorId);
            Assert.Contains("Insufficient permissions in host operating system", error.Message, StringComparison.Ordinal);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
            Assert.Equal(new[] { "system.vmdk", "data.vmdk" }, vm.CurrentDisks());
        }

        [VmrunDoubleFact]
        public void Crash_is_all_vmrun_reaches_so_a_higher_requirement_fails_before_any_snapshot_unless_lower_is_allowed()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            var warnings = new List<string>();
            VmwareSource source = Source(vmrun, vm, warnings);

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { Required = Consistency.FileSystem }, CancellationToken.None));
            Assert.Equal("ConsistencyNotReached", error.ErrorId);
            Assert.Empty(vmrun.Calls());

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Application, AllowLower = true }, CancellationToken.None);
            Assert.Equal(Consistency.Crash, view.Reached);
            Assert.Contains(warnings, w => w.Contains("crash consistent", StringComparison.Ordinal));
            view.Complete(true, CancellationToken.None);
        }

        [VmrunDoubleFact]
        public void Independent_disks_are_refused_because_a_snapshot_does_not_freeze_them()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.AppendAllText(vm.VmxPath, "scsi0:1.mode = \"independent-persistent\"\n");

            var error = Assert.Throws<VmQuiesceException>(() => Source(vmrun, vm).OpenConsistentView(CrashIsEnough, CancellationToken.None));

            Assert.Equal("IndependentDiskNotSupported", error.ErrorId);
            Assert.Empty(vmrun.Calls());
        }

        [VmrunDoubleFact]
        public void Older_snapshots_deltas_are_part_of_the_view_the_live_ones_are_not()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Client().Snapshot(vm.VmxPath, "by hand", CancellationToken.None);
            vm.GuestWrites("between;");

            using IConsistentView view = Source(vmrun, vm).OpenConsistentView(KeepIt, CancellationToken.None);

            string[] names = view.Files.Select(f => f.RelativePath).ToArray();
            Assert.Contains("system-000001.vmdk", names);
            Assert.DoesNotContain("system-000002.vmdk", names);
            Assert.Contains("vm-Snapshot1.vmsn", names);
            Assert.Contains("vm-Snapshot2.vmsn", names);
            Assert.Equal("between;", Read(view)["system-000001.vmdk"]);
            // The delta the VM wrote until this backup is a disk VMware opens as a vmdk; the older base is named by no
            // .vmx, so its format is not certain, and the .vmx is no disk.
            Dictionary<string, string?> formats = view.Files.ToDictionary(f => f.RelativePath, f => f.Format);
            Assert.Equal("vmdk", formats["system-000001.vmdk"]);
            Assert.Null(formats["system.vmdk"]);
            Assert.Null(formats["vm.vmx"]);
            view.Complete(true, CancellationToken.None);
        }

        [VmrunDoubleFact]
        public void A_text_descriptor_says_which_extents_hold_raw_bytes_and_which_are_sparse()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.WriteAllText(vm.File("system.vmdk"), "# Disk DescriptorFile\nversion=1\ncreateType=\"twoGbMaxExtentFlat\"\nRW 4192256 FLAT \"system-f001.vmdk\" 0\nRW 4192256 SPARSE \"system-s002.vmdk\"\n");
            File.WriteAllText(vm.File("system-f001.vmdk"), "flat;");
            File.WriteAllText(vm.File("system-s002.vmdk"), "sparse;");

            using IConsistentView view = Source(vmrun, vm).OpenConsistentView(CrashIsEnough, CancellationToken.None);

            Dictionary<string, string?> formats = view.Files.ToDictionary(f => f.RelativePath, f => f.Format);
            Assert.Equal("vmdk", formats["system.vmdk"]);
            Assert.Equal("raw", formats["system-f001.vmdk"]);
            Assert.Equal("vmdk", formats["system-s002.vmdk"]);
            Assert.Equal("vmdk", formats["data.vmdk"]);
            Assert.Null(formats["vm.nvram"]);
            view.Complete(true, CancellationToken.None);
        }

        [VmrunDoubleFact]
        public void A_disk_that_is_a_FIFO_is_refused_before_the_snapshot_without_waiting_for_a_writer()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.WriteAllText(vm.VmxPath, File.ReadAllText(vm.VmxPath).Replace("\"data.vmdk\"", "\"pipe.vmdk\"", StringComparison.Ordinal));
            HostCommand.RunChecked("mkfifo", new[] { vm.File("pipe.vmdk") });
            VmwareSource source = Source(vmrun, vm);

            Task<IConsistentView> open = Task.Run(() => source.OpenConsistentView(CrashIsEnough, CancellationToken.None));
            bool finished = ((IAsyncResult)open).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(30));
            if (!finished)
            {
                // Release the blocked read (a writer's open ends the reader's wait) so the test run can end.
                Libc.close(UnixFiles.OpenAt(Libc.AtFdCwd, vm.File("pipe.vmdk"), Libc.OpenWriteOnly | Libc.OpenNonBlocking));
            }

            Assert.True(finished, "the backup waited for a writer of the FIFO the .vmx names as a disk");
            var error = Assert.Throws<VmQuiesceException>(() => open.GetAwaiter().GetResult().Dispose());
            Assert.Equal("DiskNotInVmFolder", error.ErrorId);
            Assert.Empty(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void A_disk_outside_the_VM_folder_is_refused_before_the_snapshot_rather_than_left_out_of_the_point()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string elsewhere = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "elsewhere.vmdk");
            File.WriteAllText(elsewhere, "data-elsewhere;");
            File.WriteAllText(vm.VmxPath, File.ReadAllText(vm.VmxPath).Replace("\"data.vmdk\"", "\"../elsewhere.vmdk\"", StringComparison.Ordinal));

            AssertRefusedBeforeSnapshot(vmrun, vm, "DiskNotInVmFolder", $"'{elsewhere}', which lies outside the VM folder");
        }

        /// <summary>A linked clone's disk is a delta of its template's base disk, in the template's folder: the point would lack it.</summary>
        [VmrunDoubleFact]
        public void A_linked_clones_base_disk_outside_the_VM_folder_is_refused_before_the_snapshot()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string template = Directory.CreateDirectory(Path.Combine(Path.GetDirectoryName(vm.Folder)!, "template")).FullName;
            string baseDisk = Path.Combine(template, "base.vmdk");
            File.WriteAllText(baseDisk, "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"base-flat.vmdk\" 0\n");
            File.WriteAllText(Path.Combine(template, "base-flat.vmdk"), "base;");
            File.WriteAllText(vm.File("data.vmdk"), "# Disk DescriptorFile\nversion=1\nparentCID=fffffffe\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"../template/base.vmdk\"\n");

            AssertRefusedBeforeSnapshot(vmrun, vm, "DiskNotInVmFolder", $"'{baseDisk}', which lies outside the VM folder");
        }

        [VmrunDoubleFact]
        public void A_disk_named_by_an_absolute_path_through_another_name_of_the_VM_folder_is_in_it()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string alias = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "alias-of-vm");
            File.CreateSymbolicLink(alias, vm.Folder);
            File.WriteAllText(vm.VmxPath, File.ReadAllText(vm.VmxPath).Replace("\"data.vmdk\"", $"\"{Path.Combine(alias, "data.vmdk")}\"", StringComparison.Ordinal));
            VmwareSource source = Source(vmrun, vm);

            using (IConsistentView view = source.OpenConsistentView(CrashIsEnough, CancellationToken.None))
            {
                view.Complete(false, CancellationToken.None);
            }

            Assert.Empty(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void A_descriptor_extent_outside_the_VM_folder_is_refused_before_the_snapshot()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string elsewhere = Path.Combine(Path.GetDirectoryName(vm.Folder)!, "system-flat.vmdk");
            File.WriteAllText(elsewhere, "flat;");
            File.WriteAllText(vm.File("system.vmdk"), "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 4192256 FLAT \"" + elsewhere + "\" 0\n");

            AssertRefusedBeforeSnapshot(vmrun, vm, "DiskNotInVmFolder", elsewhere);
        }

        /// <summary>
        /// A snapshot's or linked clone's delta disk is often a monolithic sparse extent: its descriptor, with the parent it
        /// is a delta of, is embedded in the binary file rather than a text file beside it.
        /// </summary>
        [VmrunDoubleFact]
        public void A_sparse_delta_disks_parent_outside_the_VM_folder_is_refused_before_the_snapshot()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            string template = Directory.CreateDirectory(Path.Combine(Path.GetDirectoryName(vm.Folder)!, "template")).FullName;
            string baseDisk = Path.Combine(template, "base.vmdk");
            File.WriteAllBytes(baseDisk, SparseExtent(SparseDescriptor("base.vmdk", parent: null)));
            File.WriteAllBytes(vm.File("data.vmdk"), SparseExtent(SparseDescriptor("data.vmdk", parent: "../template/base.vmdk")));

            AssertRefusedBeforeSnapshot(vmrun, vm, "DiskNotInVmFolder", $"'{baseDisk}', which lies outside the VM folder");
        }

        [VmrunDoubleFact]
        public void A_sparse_delta_whose_parent_is_in_the_VM_folder_is_backed_up_with_it()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            // A base extent that embeds no descriptor (as a split disk's extents): nothing to follow, nothing refused.
            File.WriteAllBytes(vm.File("data-base.vmdk"), SparseExtent(string.Empty, descriptorOffset: 0, descriptorSectors: 0));
            File.WriteAllBytes(vm.File("data.vmdk"), SparseExtent(SparseDescriptor("data.vmdk", parent: "data-base.vmdk")));

            using IConsistentView view = Source(vmrun, vm).OpenConsistentView(CrashIsEnough, CancellationToken.None);

            Assert.Contains("data-base.vmdk", view.Files.Select(f => f.RelativePath));
            Assert.Equal(DiskImageFormat.Vmdk, view.Files.Single(f => f.RelativePath == "data.vmdk").Format);
            view.Complete(false, CancellationToken.None);
        }

        /// <summary>
        /// Whoever can write the VM folder writes the sparse header too: a descriptor it makes huge, places on the header or
        /// past the end of the file (or where offset plus length overflows) is refused before the snapshot, never allocated or read.
        /// </summary>
        [VmrunDoubleTheory]
        [InlineData(1UL, ulong.MaxValue, "its embedded descriptor 18,446,744,073,709,551,615 sectors; expected at most 2,048 sectors (1,048,576 bytes)")]
        [InlineData(1UL, 2049UL, "its embedded descriptor 2,049 sectors; expected at most 2,048 sectors (1,048,576 bytes)")]
        [InlineData(ulong.MaxValue, 1UL, "at sector 18,446,744,073,709,551,615, 1 sectors long; expected a descriptor after the header and inside the file's 21 whole sectors")]
        [InlineData(0UL, 1UL, "at sector 0, 1 sectors long; expected a descriptor after the header")]
        [InlineData(20UL, 2UL, "at sector 20, 2 sectors long; expected a descriptor after the header and inside the file's 21 whole sectors")]
        public void A_sparse_header_that_places_its_descriptor_outside_the_file_or_makes_it_huge_is_refused_before_the_snapshot(ulong offset, ulong sectors, string expected)
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.WriteAllBytes(vm.File("data.vmdk"), SparseExtent(SparseDescriptor("data.vmdk", parent: null), offset, sectors));

            AssertRefusedBeforeSnapshot(vmrun, vm, "VmFolderReadFailed", $"'{vm.File("data.vmdk")}' is a sparse disk whose header ");
            AssertRefusedBeforeSnapshot(vmrun, vm, "VmFolderReadFailed", expected);
        }

        /// <summary>The descriptor a monolithic sparse disk embeds, as qemu-img writes it; <paramref name="parent"/> makes it a delta.</summary>
        private static string SparseDescriptor(string self, string? parent) =>
            "# Disk DescriptorFile\nversion=1\nCID=a1851940\n" +
            (parent == null ? "parentCID=ffffffff\ncreateType=\"monolithicSparse\"\n" : $"parentCID=16da2a\ncreateType=\"monolithicSparse\"\nparentFileNameHint=\"{parent}\"\n") +
            $"# Extent description\nRW 2048 SPARSE \"{self}\"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"ide\"\n";

        /// <summary>
        /// A hosted sparse extent laid out as qemu-img makes one (VMware Virtual Disk Format 1.1): the 512-byte SparseExtentHeader,
        /// "KDMV", version 1, flags 3, capacity and grain size, and where the embedded descriptor lies and how long it is in
        /// sectors (bytes 28 and 36, little-endian); the descriptor, zero-padded, from sector 1 to 20; no grains.
        /// </summary>
        private static byte[] SparseExtent(string descriptor, ulong descriptorOffset = 1, ulong descriptorSectors = 20)
        {
            var bytes = new byte[21 * 512];
            System.Text.Encoding.ASCII.GetBytes("KDMV").CopyTo(bytes, 0);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 3);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(12), 2048);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(20), 128);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(28), descriptorOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(36), descriptorSectors);
            System.Text.Encoding.ASCII.GetBytes(descriptor).CopyTo(bytes, 512);
            return bytes;
        }

        [VmrunDoubleFact]
        public void A_text_descriptor_far_larger_than_one_is_refused_and_no_snapshot_left()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            File.WriteAllText(vm.File("system.vmdk"), "# Disk DescriptorFile\n" + new string('#', 2 << 20) + "\n");

            AssertRefusedBeforeSnapshot(vmrun, vm, "VmFolderReadFailed", "text disk descriptor");
        }

        /// <summary>Opening a view of <paramref name="vm"/> fails with <paramref name="errorId"/>, naming <paramref name="named"/>, and leaves no snapshot or leftover.</summary>
        private static void AssertRefusedBeforeSnapshot(VmrunDouble vmrun, TestVm vm, string errorId, string named)
        {
            VmwareSource source = Source(vmrun, vm);

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(CrashIsEnough, CancellationToken.None));

            Assert.Equal(errorId, error.ErrorId);
            Assert.Contains(named, error.Message, StringComparison.Ordinal);
            Assert.Empty(vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [VmrunDoubleFact]
        public void Revert_to_a_snapshot_that_is_gone_names_what_exists()
        {
            using var vmrun = new VmrunDouble();
            TestVm vm = vmrun.CreateVm();
            vmrun.Client().Snapshot(vm.VmxPath, "by hand", CancellationToken.None);

            var error = Assert.Throws<VmQuiesceException>(() => Source(vmrun, vm).RevertToSnapshot(new CapturedSnapshot("vmquiesce-gone", null, "VMware"), CancellationToken.None));

            Assert.Equal("SnapshotNotFound", error.ErrorId);
            Assert.Contains("by hand", error.Message, StringComparison.Ordinal);
            Assert.Equal("SnapshotKindMismatch", Assert.Throws<VmQuiesceException>(() =>
                Source(vmrun, vm).RevertToSnapshot(new CapturedSnapshot("x", null, "QemuInternal"), CancellationToken.None)).ErrorId);
        }

        [VmrunDoubleFact]
        public void Server_refuses_to_overwrite_the_one_snapshot_unless_the_writer_config_allows_it()
        {
            using var vmrun = new VmrunDouble();
            string store = Directory.CreateDirectory(Path.Combine(vmrun.Root, "store")).FullName;
            TestVm vm = vmrun.CreateVm("vm", store);
            vmrun.Set("VMRUN_DOUBLE_DATASTORES", "standard=" + store);
            VmrunClient client = vmrun.Client(VmwareHostType.Server, "localhost", new NetworkCredential("backup", "pw"));
            client.Snapshot("[standard] vm/vm.vmx", "made by hand", CancellationToken.None);
            string config = Path.Combine(vmrun.Root, "vmvsswriter.cfg");
            File.WriteAllText(config, "vmwriter.overwriteSnapshots = \"FALSE\"\n");
            var warnings = new List<string>();
            VmwareSource Server(bool force) => Source(vmrun, vm, warnings, force: force, client: client, vmrunVmPath: "[standard] vm/vm.vmx", writerConfig: config);
            int callsBefore = vmrun.Calls().Count;

            var refused = Assert.Throws<VmQuiesceException>(() => Server(false).OpenConsistentView(CrashIsEnough, CancellationToken.None));

            Assert.Equal("SnapshotWouldBeOverwritten", refused.ErrorId);
            Assert.Contains("'made by hand'", refused.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(vmrun.Calls().Skip(callsBefore), call => call.Contains("snapshot"));
            Assert.Equal(new[] { "made by hand" }, client.ListSnapshots("[standard] vm/vm.vmx", CancellationToken.None));

            File.WriteAllText(config, "# allow\nvmwriter.overwriteSnapshots = \"TRUE\"\n");
            using (IConsistentView view = Server(false).OpenConsistentView(KeepIt, CancellationToken.None))
            {
                view.Complete(true, CancellationToken.None);
            }

            Assert.Contains(warnings, w => w.Contains("'made by hand'", StringComparison.Ordinal) && w.Contains("overwritten", StringComparison.Ordinal));
            string kept = Assert.Single(client.ListSnapshots("[standard] vm/vm.vmx", CancellationToken.None));
            Assert.StartsWith(VmwareSource.SnapshotPrefix, kept, StringComparison.Ordinal);

            File.WriteAllText(config, "vmwriter.overwriteSnapshots = \"FALSE\"\n");
            Assert.Equal("SnapshotWouldBeOverwritten", Assert.Throws<VmQuiesceException>(() => Server(false).OpenConsistentView(CrashIsEnough, CancellationToken.None)).ErrorId);
            using (IConsistentView view = Server(true).OpenConsistentView(KeepIt, CancellationToken.None))
            {
                view.Complete(true, CancellationToken.None);
            }

            Assert.NotEqual(kept, Assert.Single(client.ListSnapshots("[standard] vm/vm.vmx", CancellationToken.None)));
        }

        [VmrunDoubleFact]
        public void The_backup_engine_stores_the_frozen_files_while_the_guest_keeps_writing_and_records_the_snapshot()
        {
            using var vmrun = new VmrunDouble();
            using var repository = new RepositoryFixture();
            TestVm vm = vmrun.CreateVm();
            vmrun.Client().Start(vm.VmxPath, CancellationToken.None);
            vm.GuestWrites("before;");
            var hooks = new List<string>();
            var options = new QuiesceOptions
            {
                Required = Consistency.Crash,
                KeepSnapshot = true,
                PreFreeze = _ => hooks.Add("pre"),
                PostThaw = _ =>
                {
                    hooks.Add("post");
                    vm.GuestWrites("after;");
                },
            };

            BackupOutcome outcome = new BackupEngine(repository.Repository, workers: 2).Run(Source(vmrun, vm), options, null, CancellationToken.None);

            RestorePoint point = outcome.RestorePoint;
            Assert.Null(outcome.ReleaseFailure);
            Assert.Equal(new[] { "pre", "post" }, hooks);
            Assert.Equal("VMware", point.SourceKind);
            Assert.Equal(Consistency.Crash, point.ConsistencyValue);
            Assert.Equal("None", point.Quiesce.Method);
            Assert.Equal(new[] { point.Snapshot!.Name }, vmrun.Client().ListSnapshots(vm.VmxPath, CancellationToken.None));
            Assert.False(point.SnapshotReleased, "the snapshot -KeepSnapshot kept is still on the VM");
            Assert.Equal(VmrunDouble.ScriptPath, repository.Repository.GetRestorePoint(point.Id).Snapshot!.VmrunPath);
            RestorePointFile system = point.Files.Single(f => f.Path == "system.vmdk");
            Assert.Equal(vm.File("system.vmdk"), system.OriginalPath);
            Assert.Equal(RepositoryFixture.DigestOf(repository.WriteFile("expected", System.Text.Encoding.UTF8.GetBytes("system-base;before;"))), system.Digest);
            Assert.DoesNotContain(point.Files, f => f.Path.EndsWith(".log", StringComparison.Ordinal) || f.Path.Contains("-000001", StringComparison.Ordinal));
            Assert.True(repository.Repository.Verify(point, CancellationToken.None).IsValid);
        }
    }
}

namespace VmQuiesce.Core.Tests.VMware
{
    [Collection(VmrunDoubleCollection.Name)]
    public sealed class VmwareTargetsTests
    {
        [VmrunDoubleFact]
        public void Running_vms_become_targets_named_by_displayName_and_open_a_VMware_source()
        {
            using var vmrun = new VmrunDouble();
            TestVm a = vmrun.CreateVm("alpha"), b = vmrun.CreateVm("beta");
            var connection = VmwareTargets.Connect(VmrunDouble.ScriptPath, VmwareHostType.Workstation, null, null);
            var client = new VmrunClient(connection);
            client.Start(b.VmxPath, CancellationToken.None);
            client.Start(a.VmxPath, CancellationToken.None);
            File.Delete(b.VmxPath);
            var unreadable = new List<VmQuiesceException>();

            IReadOnlyList<BackupVm> targets = VmwareTargets.FindRunning(connection, CancellationToken.None, unreadable.Add);

            BackupVm target = Assert.Single(targets);
            Assert.Equal("alpha", target.Name);
            Assert.Equal("VMware", target.Kind);
            Assert.Equal(a.VmxPath, target.Details["VmxPath"]);
            Assert.Equal("VmxNotFound", Assert.Single(unreadable).ErrorId);
            IBackupSource source = target.OpenSource();
            Assert.Equal("VMware", source.Kind);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void Server_target_details_name_the_host_and_user_never_the_password()
        {
            string folder = Path.Combine(Path.GetTempPath(), "vmquiesce-vmware-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            try
            {
                string vmx = Path.Combine(folder, "db.vmx");
                File.WriteAllText(vmx, "displayName = \"Database\"\n");
                var connection = new VmrunConnection("/opt/vmrun", VmwareHostType.Server, "vmhost", new NetworkCredential("backup", "TopSecret1"));

                BackupVm target = VmwareTargets.CreateBackupVm(connection, vmx, "[standard] db/db.vmx");

                Assert.Equal("Database", target.Name);
                Assert.Equal("https://vmhost:8333/sdk", target.Details["Host"]);
                Assert.Equal("[standard] db/db.vmx", target.Details["DatastorePath"]);
                Assert.DoesNotContain(target.Details.Values, v => v.Contains("TopSecret1", StringComparison.Ordinal));
            }
            finally
            {
                Directory.Delete(folder, true);
            }
        }
    }
}
