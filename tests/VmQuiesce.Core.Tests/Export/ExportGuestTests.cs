using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.Restore;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// A point of the real test guest, used straight from the repository: booted (Test-VmBackup -Boot), mounted
    /// (Mount-VmBackup) and a file copied out of it (Restore-VmBackupItem), with nothing restored first.
    /// </summary>
    public sealed class ExportGuestTests : IClassFixture<ExportGuestTests.GuestPoint>
    {
        private readonly GuestPoint _guest;

        public ExportGuestTests(GuestPoint guest) => _guest = guest;

        /// <summary>
        /// One backup of the test guest, with a marker file (mode 0640) and a link to a host file, shared by the tests.
        /// The guest runs as a machine unlike every default (q35, 160 MiB, 2 CPUs, CPU model max), which its point records.
        /// </summary>
        public sealed class GuestPoint : IDisposable
        {
            public GuestPoint()
            {
                if (TestGuestEnvironment.UnavailableReason != null)
                {
                    return;
                }

                var machine = new TestGuestOptions { MemoryMiB = RecordedMemoryMiB };
                foreach (string argument in new[] { "-machine", "q35", "-smp", "2", "-cpu", "max" })
                {
                    machine.ExtraQemuArguments.Add(argument);
                }

                using TestGuestVm vm = TestGuestVm.Boot(machine);
                QemuSourceGuestTests.GuestShell(vm, "echo served-marker > /mnt/data/marker.txt && chmod 0640 /mnt/data/marker.txt && ln -s /etc/shadow /mnt/data/link && mkdir -p /mnt/data/dir/sub && echo inner > /mnt/data/dir/sub/f");
                var source = new QemuSource(new QemuSourceOptions("guest", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, Mode = QemuSnapshotMode.External });
                Point = new BackupEngine(Fixture.Repository).Run(source, new QuiesceOptions(), null, CancellationToken.None).RestorePoint;
            }

            internal const int RecordedMemoryMiB = 160;

            internal RepositoryFixture Fixture { get; } = new RepositoryFixture();

            public RestorePoint Point { get; } = null!;

            public void Dispose() => Fixture.Dispose();
        }

        [GuestFact]
        public void The_point_records_the_machine_QEMU_ran_the_guest_as()
        {
            VmMachine machine = Assert.IsType<VmMachine>(_guest.Point.Machine);

            Assert.StartsWith("pc-q35-", machine.Type, StringComparison.Ordinal); // the versioned type QEMU resolved "q35" to
            Assert.Equal(GuestPoint.RecordedMemoryMiB, machine.MemoryMiB);
            Assert.Equal(2, machine.Cpus);
            Assert.Equal("max", machine.CpuModel);
            Assert.Equal(machine.ToString(), _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id).Machine!.ToString());
        }

        [GuestFact]
        public void The_boot_check_boots_the_point_from_the_repository_without_restoring_or_writing_it()
        {
            string[] before = Directory.EnumerateFiles(_guest.Fixture.RepositoryPath, "*", SearchOption.AllDirectories).OrderBy(f => f).ToArray();

            BootCheckResult boot = BootCheck.RunRestorePoint(_guest.Fixture.Repository, _guest.Point, BootCheckTests.GuestBoot(), CancellationToken.None);

            Assert.True(boot.Passed, boot.ToString());
            Assert.Equal(new[] { "MachineType", "Cpus", "CpuModel" }, boot.Machine!.FromRestorePoint); // the memory is the caller's
            Assert.Contains(boot.FileSystems, fileSystem => fileSystem.MountPoint == "/mnt/data");
            Assert.Equal(DiskCheckStatus.Clean, boot.Disks.Single().StatusValue);
            Assert.Equal(before, Directory.EnumerateFiles(_guest.Fixture.RepositoryPath, "*", SearchOption.AllDirectories).OrderBy(f => f).ToArray());
            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
        }

        [GuestTheory]
        [InlineData(true)] // under the image header: refused before QEMU starts
        [InlineData(false)] // further in: an I/O error to whoever reads it (the guest, or the file system check after it)
        public void A_damaged_chunk_fails_the_boot_check_naming_it(bool first)
        {
            using var fixture = new RepositoryFixture();
            // A copy of the point in a repository of its own, with one chunk damaged.
            CopyRepository(_guest.Fixture.RepositoryPath, fixture.RepositoryPath);

            string damaged = first ? _guest.Point.Files[0].Chunks.First(hash => hash != null)! : _guest.Point.Files[0].Chunks.Last(hash => hash != null)!;
            string chunkFile = fixture.ChunkFiles().Single(path => Path.GetFileName(path) == damaged);
            byte[] stored = File.ReadAllBytes(chunkFile);
            stored[^1] ^= 0xFF;
            File.WriteAllBytes(chunkFile, stored);

            BootCheckResult boot = BootCheck.RunRestorePoint(fixture.Repository, fixture.Repository.GetRestorePoint(_guest.Point.Id), BootCheckTests.GuestBoot(), CancellationToken.None);

            Assert.False(boot.Passed);
            Assert.Contains(damaged, boot.ToString(), StringComparison.Ordinal);
        }

        [MountGuestFact]
        public void A_mounted_point_shows_the_marker_read_only_and_items_are_copied_out_with_their_mode_never_through_a_link()
        {
            using var folder = new TempFolder();
            string mountFolder = folder.File("mnt");
            string destination = folder.File("out");

            using (RestorePointMount mount = RestorePointMount.Mount(_guest.Fixture.Repository, _guest.Point, mountFolder, CancellationToken.None))
            {
                MountedFileSystem data = Assert.Single(mount.FileSystems);
                Assert.Equal(Path.Combine(mountFolder, "disk0"), data.Path);
                // The guest's files keep their guest owners and modes: only root reaches them.
                Assert.Equal(Convert.ToUInt32("700", 8), VmQuiesce.Core.Platform.UnixFiles.Stat(mountFolder).Mode & 0xFFF);
                Assert.Equal("ext4", data.Type);
                Assert.Equal("served-marker\n", File.ReadAllText(Path.Combine(data.Path, "marker.txt")));
                Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(data.Path, "new.txt"), "x"));
                Assert.Contains(RestorePointMount.Find(), found => found.Id == mount.Id && found.IsServed);
                // Dismount-VmBackup finds it by the folder as given, or through a link to a folder above it.
                File.CreateSymbolicLink(folder.File("alias"), folder.Path);
                Assert.Equal(mount.Id, RestorePointMount.FindOn(RestorePointMount.Find(), Path.Combine(folder.File("alias"), "mnt"))?.Id);
                Assert.Equal(mount.Id, RestorePointMount.FindOn(RestorePointMount.Find(), mountFolder + "/")?.Id);

                RestoredItem marker = mount.CopyItem("disk0/marker.txt", destination, force: false, CancellationToken.None);
                Assert.Equal("served-marker\n", File.ReadAllText(Path.Combine(destination, "marker.txt")));
                Assert.Equal(Convert.ToUInt32("640", 8), VmQuiesce.Core.Platform.UnixFiles.Stat(marker.Destination).Mode & 0xFFF);
                Assert.Equal(File.GetLastWriteTimeUtc(Path.Combine(data.Path, "marker.txt")), File.GetLastWriteTimeUtc(marker.Destination));
                Assert.Equal("ItemExists", Assert.Throws<VmQuiesceException>(() => mount.CopyItem("disk0/marker.txt", destination, force: false, CancellationToken.None)).ErrorId);
                mount.CopyItem("disk0/marker.txt", destination, force: true, CancellationToken.None);

                Assert.Equal("ItemIsLink", Assert.Throws<VmQuiesceException>(() => mount.CopyItem("disk0/link", destination, force: false, CancellationToken.None)).ErrorId);
                Assert.Equal("ItemPathInvalid", Assert.Throws<VmQuiesceException>(() => mount.CopyItem("disk0/../../etc", destination, force: false, CancellationToken.None)).ErrorId);
                RestoredItem tree = mount.CopyItem("disk0", destination, force: false, CancellationToken.None);
                Assert.Equal("inner\n", File.ReadAllText(Path.Combine(destination, "disk0", "dir", "sub", "f")));
                Assert.Contains(tree.Skipped, skipped => skipped.Contains("link", StringComparison.Ordinal) && skipped.Contains("symbolic link", StringComparison.Ordinal));
                Assert.False(File.Exists(Path.Combine(destination, "disk0", "link")));
            }

            Assert.False(Directory.Exists(mountFolder));
            Assert.DoesNotContain(mountFolder, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
            Assert.DoesNotContain(RestorePointMount.Find(), found => found.Path == mountFolder);
            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
        }

        [GuestFact]
        public void An_instant_restore_runs_the_guest_at_once_keeps_its_writes_through_the_copy_and_runs_on_without_the_repository()
        {
            using var fixture = new RepositoryFixture();
            CopyRepository(_guest.Fixture.RepositoryPath, fixture.RepositoryPath);
            using var folder = new TempFolder();
            BootCheckOptions vm = BootCheckTests.GuestBoot();
            vm.Append = vm.Append!.Replace("vmquiesce.agent=once", "vmquiesce.agent=respawn", StringComparison.Ordinal);
            vm.MemoryMiB = 192; // the caller's option wins over the recorded 160 MiB; the rest is as recorded

            // Throttled until the guest has written, so the copy is seen running; unthrottled then.
            DateTime started = DateTime.UtcNow;
            InstantRestore restore = InstantRestore.Start(fixture.Repository, fixture.Repository.GetRestorePoint(_guest.Point.Id), folder.File("vm"), vm, 256 * 1024, CancellationToken.None);
            try
            {
                // The VM runs on an overlay over the export; the local disk is the mirror's target and never names the repository.
                ImageInfo(restore.Overlays.Single(), out string? overlayBacking, out _);
                Assert.StartsWith("nbd+unix:", overlayBacking, StringComparison.Ordinal);
                ImageInfo(restore.Disks.Single(), out string? diskBacking, out _);
                Assert.Null(diskBacking);
                Assert.Equal(new[] { "MachineType", "Cpus", "CpuModel" }, restore.Machine!.FromRestorePoint);

                using (GuestAgentClient agent = GuestAgentClient.Connect(restore.AgentSocket, TimeSpan.FromSeconds(60)))
                {
                    agent.Sync(TimeSpan.FromSeconds(120));
                    Assert.Equal("served-marker\n", Shell(agent, "cat /mnt/data/marker.txt"));
                    Shell(agent, "echo written-while-copying > /mnt/data/during.txt && sync");
                }

                Assert.Equal(InstantRestoreState.Copying, restore.StateValue);
                Assert.Null(restore.CompletionTime);
                DateTime unthrottled = DateTime.UtcNow;
                restore.CopyRateLimit = 0;
                Assert.True(restore.WaitForCompletion(TimeSpan.FromMinutes(5), CancellationToken.None), restore.Error ?? restore.State.ToString());
                Assert.InRange(restore.CompletionTime!.Value, unthrottled, DateTime.UtcNow); // what the bench times the copy by
                Assert.True(started < unthrottled);
                Assert.Equal(restore.TotalBytes, restore.CopiedBytes);
                Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
                Assert.False(File.Exists(restore.Overlays.Single()));
                using (QmpClient qmp = QmpClient.Connect(restore.QmpSocket, TimeSpan.FromSeconds(30))) // QEMU serves one QMP client: the copy's watch held it until now
                {
                    VmMachine running = QemuMachine.Query(qmp, "restored", OperationHost.None, CancellationToken.None, out _)!;
                    Assert.Equal(_guest.Point.Machine!.Type, running.Type);
                    Assert.Equal(192, running.MemoryMiB);
                    Assert.Equal(2, running.Cpus);
                    Assert.Equal("max", running.CpuModel);
                    JsonObject inserted = qmp.ExecuteArray("query-block").OfType<JsonObject>().Single(device => device.GetString("device") == "disk0").GetObject("inserted");
                    Assert.Equal(restore.Disks.Single(), inserted.GetString("file")); // the mirror moved the VM onto its local disk
                    Assert.Equal(DirectIoWorksIn(folder), inserted.GetObject("cache").GetBoolean("direct")); // copied past the page cache, as a restore writes
                }

                // The repository is gone: whatever the guest reads now comes from its local disk.
                Directory.Delete(fixture.RepositoryPath, recursive: true);
                using (GuestAgentClient agent = GuestAgentClient.Connect(restore.AgentSocket, TimeSpan.FromSeconds(60)))
                {
                    Shell(agent, "sync && echo 3 > /proc/sys/vm/drop_caches");
                    Assert.Equal("served-marker\n", Shell(agent, "cat /mnt/data/marker.txt"));
                    Assert.Equal("written-while-copying\n", Shell(agent, "cat /mnt/data/during.txt"));
                    Assert.Equal("inner\n", Shell(agent, "cat /mnt/data/dir/sub/f"));
                }

                ImageInfo(restore.Disks.Single(), out string? backing, out long clusterSize);
                Assert.Null(backing);
                Assert.Equal(512 * 1024, clusterSize); // 3-4x the copy rate of 64 KiB clusters
            }
            finally
            {
                using (QmpClient qmp = QmpClient.Connect(restore.QmpSocket, TimeSpan.FromSeconds(10)))
                {
                    qmp.Execute("quit");
                }

                restore.Stop();
            }
        }

        [GuestFact]
        public void A_damaged_chunk_stops_the_background_copy_naming_the_chunk_pauses_the_guest_that_reads_it_and_Stop_leaves_nothing_behind()
        {
            using var fixture = new RepositoryFixture();
            CopyRepository(_guest.Fixture.RepositoryPath, fixture.RepositoryPath);
            string damaged = _guest.Point.Files[0].Chunks.Last(hash => hash != null)!;
            string chunkFile = fixture.ChunkFiles().Single(path => Path.GetFileName(path) == damaged);
            byte[] stored = File.ReadAllBytes(chunkFile);
            stored[^1] ^= 0xFF;
            File.WriteAllBytes(chunkFile, stored);
            using var folder = new TempFolder();

            InstantRestore restore = InstantRestore.Start(fixture.Repository, fixture.Repository.GetRestorePoint(_guest.Point.Id), folder.File("vm"), BootCheckTests.GuestBoot(), 0, CancellationToken.None);
            bool completed = restore.WaitForCompletion(TimeSpan.FromMinutes(5), CancellationToken.None);
            string status = StatusAfterTheGuestReadsItsWholeDisk(restore);
            restore.Stop();

            // rerror=stop: the guest is paused at the damaged range, never handed an error or other bytes.
            Assert.Equal("io-error", status);

            Assert.False(completed);
            Assert.Contains(damaged, restore.Error, StringComparison.Ordinal);
            Assert.Equal(InstantRestoreState.Stopped, restore.StateValue);
            Assert.False(File.Exists(restore.Disks.Single()));
            Assert.False(File.Exists(restore.Overlays.Single()));
            Assert.False(Directory.Exists($"/proc/{restore.ProcessId}"));
            Assert.DoesNotContain(InstantRestore.Running, running => running.Id == restore.Id);
            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
        }

        /// <summary>
        /// A start that fails once QEMU runs (here a folder appears at the local disk's path, so making the disk fails;
        /// as a cancelled QMP connect or a failing qemu-img would) ends that VM before deleting its overlays and its
        /// export, and says which path it failed on; no VM is left running untracked.
        /// </summary>
        [GuestFact]
        public void A_start_that_fails_after_QEMU_started_ends_that_VM_and_leaves_no_record_overlay_or_export()
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            RestorePoint point = _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id);
            string disk = LocalDisk(destination, point);
            BootCheckOptions vm = BootCheckTests.GuestBoot();
            vm.QemuExecutable = folder.File("qemu-then-block-disk");
            File.WriteAllText(vm.QemuExecutable, $"#!/bin/sh\n'{HostTools.ForThisHost.Find(TestGuestEnvironment.QemuExecutable)}' \"$@\" || exit $?\nmkdir '{disk}'\n");
            File.SetUnixFileMode(vm.QemuExecutable, UnixFileMode.UserRead | UnixFileMode.UserExecute);

            Exception? failed = Record.Exception(() => InstantRestore.Start(_guest.Fixture.Repository, point, destination, vm, 0, CancellationToken.None));

            int[] left = EndProcessesNaming(destination);
            Assert.True(left.Length == 0, $"Start failed with '{failed?.Message}' and left {left.Length} process(es) running on '{destination}'.");
            Assert.IsType<VmQuiesceException>(failed);
            Assert.Contains(disk, failed.Message, StringComparison.Ordinal);
            Assert.False(File.Exists(disk + ".overlay"));
            Assert.DoesNotContain(InstantRestore.Running, restore => restore.Destination == destination);
            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
        }

        /// <summary>
        /// Ctrl+C while QEMU starts (its first process has not returned, so no pid of it was read; here QEMU runs,
        /// as it does once it forked its daemon, and the program named as QEMU has not ended) ends that QEMU before
        /// its overlays and export go.
        /// </summary>
        [GuestFact]
        public void Ctrl_C_while_QEMU_starts_ends_that_QEMU_and_leaves_no_record_overlay_or_export()
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            RestorePoint point = _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id);
            string started = folder.File("started");
            Assert.Equal(0, HostCommand.Run("/usr/bin/mkfifo", new[] { started }).ExitCode);
            BootCheckOptions vm = BootCheckTests.GuestBoot();
            vm.QemuExecutable = folder.File("qemu-still-starting");
            File.WriteAllText(vm.QemuExecutable, $"#!/bin/sh\n'{HostTools.ForThisHost.Find(TestGuestEnvironment.QemuExecutable)}' \"$@\"\nstatus=$?\necho $status > '{started}'\n[ $status = 0 ] || exit $status\nexec /bin/sleep 600\n");
            File.SetUnixFileMode(vm.QemuExecutable, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            using var cancel = new CancellationTokenSource();
            try
            {
                var start = System.Threading.Tasks.Task.Run(() => InstantRestore.Start(_guest.Fixture.Repository, point, destination, vm, 0, cancel.Token));
                var said = System.Threading.Tasks.Task.Run(() => File.ReadAllText(started));
                Assert.Equal(0, System.Threading.Tasks.Task.WaitAny(new System.Threading.Tasks.Task[] { said, start }, TimeSpan.FromMinutes(3)));
                Assert.Equal("0\n", said.Result);
                (int Pid, string Ticks)[] qemu = ProcessesNaming(destination).Where(pid => File.ReadAllText($"/proc/{pid}/comm").StartsWith("qemu", StringComparison.Ordinal))
                    .Select(pid => (pid, ProcessIdentity.StartTicksOf(pid)!)).ToArray();
                Assert.NotEmpty(qemu);

                cancel.Cancel();

                Exception? failed = Record.Exception(() => start.GetAwaiter().GetResult());
                Assert.IsAssignableFrom<OperationCanceledException>(failed);
                foreach ((int pid, string ticks) in qemu)
                {
                    Assert.True(ProcessIdentity.StartTicksOf(pid) != ticks || ProcessIdentity.IsZombie(pid), $"QEMU {pid} of the cancelled restore still runs.");
                }

                Assert.False(File.Exists(LocalDisk(destination, point) + ".overlay"));
                Assert.DoesNotContain(InstantRestore.Running, restore => restore.Destination == destination);
                Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == _guest.Point.Id);
            }
            finally
            {
                EndProcessesNaming(destination);
            }
        }

        /// <summary>
        /// A start that fails once the background copy's local disk was made (here the mirror is refused: another
        /// block job, a stream, has put its filter over the disk) deletes that local disk with the overlays, so the destination can be used again.
        /// </summary>
        [GuestFact]
        public void A_start_that_fails_after_the_local_disk_was_made_deletes_it()
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            RestorePoint point = _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id);
            string started = folder.File("started"), go = folder.File("go");
            Assert.Equal(0, HostCommand.Run("/usr/bin/mkfifo", new[] { started, go }).ExitCode);
            BootCheckOptions vm = BootCheckTests.GuestBoot();
            vm.QemuExecutable = folder.File("qemu-then-wait");
            File.WriteAllText(vm.QemuExecutable, $"#!/bin/sh\n'{HostTools.ForThisHost.Find(TestGuestEnvironment.QemuExecutable)}' \"$@\" || exit $?\necho started > '{started}'\nread line < '{go}'\n");
            File.SetUnixFileMode(vm.QemuExecutable, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            try
            {
                var start = System.Threading.Tasks.Task.Run(() => InstantRestore.Start(_guest.Fixture.Repository, point, destination, vm, 0, CancellationToken.None));
                var said = System.Threading.Tasks.Task.Run(() => File.ReadAllText(started));
                Assert.Equal(0, System.Threading.Tasks.Task.WaitAny(new System.Threading.Tasks.Task[] { said, start }, TimeSpan.FromMinutes(3)));
                using (QmpClient qmp = QmpClient.Connect(Path.Combine(destination, "qmp.sock"), TimeSpan.FromSeconds(30)))
                {
                    qmp.Execute("block-stream", new JsonObject().With("device", "disk0").With("job-id", "busy").With("speed", 1));
                }

                File.WriteAllText(go, "go\n");

                Exception? failed = Record.Exception(() => start.GetAwaiter().GetResult());
                string message = Assert.IsAssignableFrom<VmQuiesceException>(failed).Message;
                Assert.True(message.Contains("refused 'blockdev-mirror'", StringComparison.Ordinal), message);
                Assert.False(File.Exists(LocalDisk(destination, point)));
                Assert.False(File.Exists(LocalDisk(destination, point) + ".overlay"));
                Assert.Empty(ProcessesNaming(destination));
                Assert.DoesNotContain(InstantRestore.Running, restore => restore.Destination == destination);
            }
            finally
            {
                EndProcessesNaming(destination);
            }
        }

        /// <summary>QEMU writes nothing through a link planted in the destination: it is given no pidfile there.</summary>
        [GuestFact]
        public void A_link_planted_at_a_pidfile_path_in_the_destination_is_never_written_through()
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            Directory.CreateDirectory(destination);
            string victim = folder.File("victim");
            File.WriteAllText(victim, "kept\n");
            File.CreateSymbolicLink(Path.Combine(destination, "qemu.pid"), victim);
            try
            {
                InstantRestore restore = InstantRestore.Start(_guest.Fixture.Repository, _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id), destination, BootCheckTests.GuestBoot(), 0, CancellationToken.None);
                restore.Stop();

                Assert.Equal("kept\n", File.ReadAllText(victim));
                Assert.False(Directory.Exists($"/proc/{restore.ProcessId}") && !ProcessIdentity.IsZombie(restore.ProcessId));
            }
            finally
            {
                EndProcessesNaming(destination);
            }
        }

        [GuestFact]
        public void A_folder_at_a_local_disk_path_is_refused_by_name_before_anything_starts()
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            RestorePoint point = _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id);
            string disk = LocalDisk(destination, point);
            Directory.CreateDirectory(disk);

            Exception? refused = Record.Exception(() => InstantRestore.Start(_guest.Fixture.Repository, point, destination, BootCheckTests.GuestBoot(), 0, CancellationToken.None));

            Assert.Empty(EndProcessesNaming(destination));
            Assert.Equal("InstantRestoreDiskPathInvalid", Assert.IsType<VmQuiesceException>(refused).ErrorId);
            Assert.Contains($"'{disk}' is a folder", refused.Message, StringComparison.Ordinal);
            Assert.Equal(new[] { disk }, Directory.EnumerateFileSystemEntries(destination));
            Assert.DoesNotContain(InstantRestore.Running, restore => restore.Destination == destination);
        }

        /// <summary>
        /// QEMU writes its files in the destination as root and Stop deletes them, by path: a destination another user
        /// could rename (a folder above it writable by others), fill (sticky but writable by all, as /tmp), or reach
        /// through a link of theirs (checked and used as its real path) is refused before anything starts.
        /// </summary>
        [GuestTheory]
        [InlineData("below a folder of mode 0777")]
        [InlineData("a folder of mode 1777")]
        [InlineData("through another user's link")]
        public void A_destination_another_user_could_rename_or_fill_is_refused_before_anything_starts(string where)
        {
            using var folder = new TempFolder();
            string open = folder.File("open");
            Directory.CreateDirectory(open);
            HostCommand.RunChecked("chmod", new[] { where == "a folder of mode 1777" ? "1777" : "0777", open });
            string destination = Path.Combine(open, "vm");
            if (where == "a folder of mode 1777")
            {
                destination = open;
            }
            else if (where == "through another user's link")
            {
                string theirs = folder.File("theirs");
                Directory.CreateDirectory(theirs);
                File.CreateSymbolicLink(Path.Combine(theirs, "link"), open);
                HostCommand.RunChecked("chown", new[] { "-h", "65534:65534", theirs, Path.Combine(theirs, "link") });
                destination = Path.Combine(theirs, "link", "vm");
            }

            Exception? refused = Record.Exception(() => InstantRestore.Start(_guest.Fixture.Repository, _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id), destination, BootCheckTests.GuestBoot(), 0, CancellationToken.None));

            Assert.Empty(EndProcessesNaming(folder.Path));
            Assert.Equal("InstantRestoreDiskPathInvalid", Assert.IsType<VmQuiesceException>(refused).ErrorId);
            Assert.Contains(where == "a folder of mode 1777" ? $"'{open}' has mode 1777, so other users can put files" : $"'{open}' has mode 0777", refused.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.EnumerateFileSystemEntries(open));
        }

        /// <summary>QEMU, as root, truncates and writes its console log: a link or second name planted there is refused before anything starts.</summary>
        [GuestTheory]
        [InlineData("link")]
        [InlineData("hard link")]
        public void A_link_planted_at_the_console_log_is_refused_before_QEMU_writes_through_it(string kind)
        {
            using var folder = new TempFolder();
            string destination = folder.File("vm");
            Directory.CreateDirectory(destination);
            string victim = folder.File("victim");
            File.WriteAllText(victim, "kept\n");
            string console = Path.Combine(destination, "console.log");
            Assert.Equal(0, HostCommand.Run("/bin/ln", kind == "link" ? new[] { "-s", victim, console } : new[] { victim, console }).ExitCode);
            InstantRestore? started = null;
            try
            {
                Exception? refused = Record.Exception(() => started = InstantRestore.Start(_guest.Fixture.Repository, _guest.Fixture.Repository.GetRestorePoint(_guest.Point.Id), destination, BootCheckTests.GuestBoot(), 0, CancellationToken.None));
                started?.Stop();

                Assert.Equal("kept\n", File.ReadAllText(victim));
                Assert.Equal("InstantRestoreDiskPathInvalid", Assert.IsType<VmQuiesceException>(refused).ErrorId);
                Assert.Contains($"'{console}' is a ", refused.Message, StringComparison.Ordinal);
                Assert.Empty(EndProcessesNaming(destination));
            }
            finally
            {
                EndProcessesNaming(destination);
            }
        }

        /// <summary>Where an instant restore into <paramref name="destination"/> makes the point's first disk: its name as qcow2.</summary>
        private static string LocalDisk(string destination, RestorePoint point) => Path.Combine(destination, Path.GetFileNameWithoutExtension(point.Files[0].Path) + ".qcow2");

        /// <summary>
        /// Ends each process whose command line names <paramref name="folder"/> (a test's own fresh folder, so only
        /// what the test started), that a failing test leaves no VM behind; returns their ids.
        /// </summary>
        private static int[] EndProcessesNaming(string folder)
        {
            int[] found = ProcessesNaming(folder);
            foreach (int pid in found)
            {
                try
                {
                    using var process = System.Diagnostics.Process.GetProcessById(pid);
                    process.Kill();
                    process.WaitForExit(10_000);
                }
                catch (ArgumentException)
                {
                    // Ended meanwhile.
                }
            }

            return found;
        }

        /// <summary>The processes whose command line names <paramref name="folder"/>.</summary>
        private static int[] ProcessesNaming(string folder) =>
            Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(name => name!.All(char.IsDigit)).Select(name => int.Parse(name!, System.Globalization.CultureInfo.InvariantCulture))
                .Where(pid =>
                {
                    try
                    {
                        return File.ReadAllText($"/proc/{pid}/cmdline").Contains(folder, StringComparison.Ordinal);
                    }
                    catch (IOException)
                    {
                        return false; // ended meanwhile
                    }
                })
                .ToArray();

        /// <summary>True when files in <paramref name="folder"/> can be written past the page cache (O_DIRECT; tmpfs cannot).</summary>
        private static bool DirectIoWorksIn(TempFolder folder)
        {
            using DirectFileStream? probe = DirectFileStream.TryCreateNew(folder.File("direct-probe"));
            return probe != null;
        }

        /// <summary>
        /// The VM's run state once the guest has read every byte of its disk, or paused trying (the QMP event
        /// BLOCK_IO_ERROR says when; a paused guest never answers its agent, so the read runs aside).
        /// </summary>
        private static string StatusAfterTheGuestReadsItsWholeDisk(InstantRestore restore)
        {
            using QmpClient qmp = QmpClient.Connect(restore.QmpSocket, TimeSpan.FromSeconds(30));
            string status = qmp.ExecuteObject("query-status").GetString("status");
            if (status != "running")
            {
                return status; // it read the damaged range while booting
            }

            var read = System.Threading.Tasks.Task.Run(() =>
            {
                using GuestAgentClient agent = GuestAgentClient.Connect(restore.AgentSocket, TimeSpan.FromSeconds(60));
                agent.Sync(TimeSpan.FromSeconds(120));
                return agent.Exec("/bin/sh", new[] { "-c", "echo 3 > /proc/sys/vm/drop_caches && cat /dev/vda > /dev/null" }, TimeSpan.FromSeconds(180));
            });
            QmpEvent? ioError = qmp.TryWaitForEvent("BLOCK_IO_ERROR", null, TimeSpan.FromMinutes(4));
            status = qmp.ExecuteObject("query-status").GetString("status");
            Assert.True(ioError != null || status != "running", read.Status == System.Threading.Tasks.TaskStatus.RanToCompletion ? $"The guest read its disk: {read.Result.StandardError}" : "No read error within 4 minutes.");
            return status;
        }

        private static string Shell(GuestAgentClient agent, string command)
        {
            GuestExecResult result = agent.Exec("/bin/sh", new[] { "-c", command }, TimeSpan.FromSeconds(120));
            Assert.True(result.Succeeded, $"'{command}': {result.StandardError}");
            return result.StandardOutput;
        }

        private static void ImageInfo(string image, out string? backing, out long clusterSize)
        {
            string json = HostCommand.RunChecked("qemu-img", new[] { "info", "-U", "--output=json", "-f", "qcow2", image }).StandardOutput;
            using var document = System.Text.Json.JsonDocument.Parse(json);
            backing = document.RootElement.TryGetProperty("backing-filename", out var value) ? value.GetString() : null;
            clusterSize = document.RootElement.GetProperty("cluster-size").GetInt64();
        }

        private static void CopyRepository(string from, string to)
        {
            foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            {
                string target = file.Replace(from, to, StringComparison.Ordinal);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target, overwrite: true);
            }
        }
    }

    /// <summary>A guest fact that also mounts: skipped, with the reason, without root or qemu-storage-daemon.</summary>
    public sealed class MountGuestFactAttribute : FactAttribute
    {
        public MountGuestFactAttribute()
        {
            Skip = TestGuestEnvironment.SkipReason
                ?? (Libc.geteuid() != 0 ? "Mount-VmBackup needs root (loop devices and mount); this test runs as another user." : null)
                ?? VmQuiesce.Core.Tests.Nbd.NbdTools.MissingReason(new[] { "qemu-storage-daemon" });
        }
    }
}
