using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Export;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;
using Xunit.Abstractions;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// Change-tracked backups of real guests (TCG, real qemu-ga, real qcow2 and raw disks): incremental chains
    /// restored and compared byte for byte with what the guest had, every fallback forced for real, the
    /// verification catching a cleared bitmap, and faults mid-read leaving nothing behind.
    /// </summary>
    public sealed class ChangeTrackingGuestTests : IDisposable
    {
        private const long MiB = 1024 * 1024;
        private readonly ITestOutputHelper _output;
        private readonly TempFolder _folder = new TempFolder();
        private readonly BackupRepository _repository;
        private readonly List<string> _warnings = new List<string>();

        public ChangeTrackingGuestTests(ITestOutputHelper output)
        {
            _output = output;
            _repository = BackupRepository.OpenOrCreate(_folder.File("repo"), 1 * (int)MiB);
        }

        public void Dispose() => _folder.Dispose();

        [GuestFact]
        public void A_chain_of_six_points_each_restores_to_what_the_guest_had_and_reads_about_what_it_wrote()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { DiskSizeBytes = 128 * MiB });
            Qmp(vm, "block-dirty-bitmap-add", new JsonObject().With("node", "disk0fmt").With("name", "admin-own").With("persistent", true));

            for (int i = 1; i <= 6; i++)
            {
                // 1 MiB of new data and a marker per point; the frozen copy is what the point must restore to.
                QemuSourceGuestTests.GuestShell(vm, $"dd if=/dev/urandom of=/mnt/data/data-{i} bs=64k count=16 2>/dev/null && echo point-{i} > /mnt/data/marker && sync");
                string frozenCopy = _folder.File($"frozen-{i}.raw");
                RestorePoint point = BackUp(vm, verify: false, inFreeze: () => CopyDisk(vm.DiskPaths[0], frozenCopy));

                ChangeTrackingRecord record = Assert.Single(point.Files).ChangeTrackingValue!;
                _output.WriteLine($"point {i}: {record} read {record.BytesRead} B, changed {record.ChangedBytes} B, stored {point.StoredBytes} B, frozen {point.Quiesce.FrozenMilliseconds:0.0} ms (the copy into the frozen copy included)");
                if (i == 1)
                {
                    Assert.Equal(ChangeTrackingMode.Full, record.ModeValue);
                    Assert.Equal(ChangeTrackingRecord.Reasons.NoCheckpoint, record.Reason);
                    Assert.Contains(_warnings, w => w.Contains("NoCheckpoint", StringComparison.Ordinal));
                }
                else
                {
                    Assert.Equal(ChangeTrackingMode.Incremental, record.ModeValue);
                    Assert.NotNull(record.BasePoint);
                    // Reads are about what the guest wrote: at least the 1 MiB it wrote, at most twice that plus the
                    // file system's own metadata at the bitmap's 64 KiB granularity, and never more than twice what was
                    // marked (a chunk at least half marked is read whole).
                    Assert.InRange(record.BytesRead, 1 * MiB, 2 * MiB + 2 * MiB);
                    Assert.True(record.BytesRead <= 2 * record.ChangedBytes, $"read {record.BytesRead} B, more than twice the {record.ChangedBytes} B marked changed");
                }

                Assert.True(record.Persistent);
                string restored = Restore(point, $"restored-{i}");
                Assert.Equal(0, Compare(restored, frozenCopy));
                Assert.Equal($"point-{i}\n", GuestDiskImage.ReadFile(restored, "/marker"));
                JsonObject info = ImageInfo(restored);
                Assert.Equal("qcow2", info.GetString("format"));
                Assert.Equal(65536, info.GetInt64("cluster-size"));
                Assert.Equal("1.1", info.GetObject("format-specific").GetObject("data").GetString("compat"));
                File.Delete(frozenCopy);
            }

            // Test-VmBackup -Boot on an incremental point: restored as qcow2 and booted, the agent answers.
            RestorePoint last = _repository.ListRestorePoints().OrderBy(p => p.StartTime).Last();
            BootCheckResult booted = BootCheck.RunRestorePoint(_repository, last, VmQuiesce.Core.Tests.Restore.BootCheckTests.GuestBoot(), CancellationToken.None);
            Assert.True(booted.AgentAnswered, booted.ToString());

            // Pruning every earlier point, chunks collected, breaks no later point: the last restores to the same image.
            string lastRestored = Restore(last, "last-before-prune");
            _repository.Prune(_repository.PlanRemoval(_repository.ListRestorePoints().Where(p => p.Id != last.Id).Select(p => p.Id).ToArray(), e => throw e), collectGarbage: true, removeStaleLock: false, CancellationToken.None);
            Assert.Equal(0, HostCommand.Run("qemu-img", new[] { "compare", Restore(last, "last-after-prune"), lastRestored }).ExitCode);

            // Copy-VmBackup's copy of the incremental point into a repository with its own key is a whole point there:
            // it restores, in its original format, to the same image.
            BackupRepository copyRepository = BackupRepository.OpenOrCreate(_folder.File("copy"), 1 * (int)MiB, RepositoryKey.Generate());
            using (ObjectRepository copyObjects = ObjectRepository.Open(new FileObjectStorage(copyRepository.Path)))
            {
                RestorePointCopy.Copy(_repository, last, copyObjects, CancellationToken.None);
            }

            BackupRepository copyReopened = BackupRepository.Open(copyRepository.Path);
            var copyEngine = new RestoreEngine(copyReopened);
            RestoreResult fromCopy = copyEngine.Run(copyEngine.Plan(new RestoreRequest(copyReopened.GetRestorePoint(last.Id)) { Destination = _folder.File("from-copy") }, CancellationToken.None), null, CancellationToken.None);
            Assert.Equal("qcow2", ImageInfo(fromCopy.Files[0].Path).GetString("format"));
            Assert.Equal(0, HostCommand.Run("qemu-img", new[] { "compare", fromCopy.Files[0].Path, lastRestored }).ExitCode);

            // Exactly one checkpoint of VmQuiesce's and the administrator's own bitmap, untouched; nothing else left.
            var bitmaps = Bitmaps(vm);
            Assert.Contains("admin-own", bitmaps);
            Assert.Single(bitmaps, b => b.StartsWith("vmquiesce-", StringComparison.Ordinal));
            AssertNothingLeft(vm);
        }

        [GuestFact]
        public void Each_fallback_gives_a_correct_full_point_with_its_reason_and_verification_catches_a_cleared_bitmap()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { DiskSizeBytes = 96 * MiB });
            BackUp(vm, verify: false);
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "incremental")).ModeValue);

            // Disk resized.
            Qmp(vm, "block_resize", new JsonObject().With("node-name", "disk0fmt").With("size", 128 * MiB));
            AssertFull(BackUpAfterWrite(vm, "resized"), ChangeTrackingRecord.Reasons.DiskResized);
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "after-resize")).ModeValue);

            // The base pruned: the disk's checkpoint belongs to a point the repository no longer has.
            RestorePoint pruned = BackUpAfterWrite(vm, "to-prune");
            _repository.Prune(_repository.PlanRemoval(new[] { pruned.Id }, e => throw e), collectGarbage: false, removeStaleLock: false, CancellationToken.None);
            AssertFull(BackUpAfterWrite(vm, "after-prune"), ChangeTrackingRecord.Reasons.PreviousPointMissing);

            // The checkpoint's bitmap disabled behind VmQuiesce's back: it no longer records, so it cannot say what changed.
            Qmp(vm, "block-dirty-bitmap-disable", new JsonObject().With("node", "disk0fmt").With("name", Assert.Single(Bitmaps(vm))));
            AssertFull(BackUpAfterWrite(vm, "after-disable"), ChangeTrackingRecord.Reasons.BitmapNotUsable);
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "after-not-usable")).ModeValue);

            // -VerifyChangeTracking on a bitmap cleared behind VmQuiesce's back: the missed changes come out loudly.
            string bitmap = Assert.Single(Bitmaps(vm));
            QemuSourceGuestTests.GuestShell(vm, "dd if=/dev/urandom of=/mnt/data/missed bs=64k count=8 2>/dev/null && sync");
            Qmp(vm, "block-dirty-bitmap-clear", new JsonObject().With("node", "disk0fmt").With("name", bitmap));
            string frozenCopy = _folder.File("verify.raw");
            BackupOutcome outcome = Run(vm, verify: true, inFreeze: () => CopyDisk(vm.DiskPaths[0], frozenCopy));
            Assert.Equal("ChangeTrackingMissedChanges", outcome.ChangeTrackingFailure?.ErrorId);
            Assert.Contains("region(s) changed that the checkpoint marked unchanged", outcome.ChangeTrackingFailure!.Message, StringComparison.Ordinal);
            AssertFull(outcome.RestorePoint, ChangeTrackingRecord.Reasons.VerifyFailed);
            Assert.True(Checkpoint(outcome.RestorePoint).Verified);
            Assert.Equal(0, Compare(Restore(outcome.RestorePoint, "verified"), frozenCopy));
            // A sound checkpoint passes the verification.
            RestorePoint verified = Run(vm, verify: true, afterWrite: "verified-ok").RestorePoint;
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(verified).ModeValue);
            Assert.True(Checkpoint(verified).Verified);

            // A clean restart keeps a qcow2 v3 disk's checkpoint: QEMU stores the bitmap as it closes the image.
            vm.QuitAndRestart();
            vm.WaitUntilReady();
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "after-restart")).ModeValue);

            // QEMU killed while it has a stored bitmap open: the bitmap comes back inconsistent.
            vm.QuitAndRestart();
            vm.WaitUntilReady();
            QemuSourceGuestTests.GuestShell(vm, "dd if=/dev/urandom of=/mnt/data/before-kill bs=64k count=4 2>/dev/null && sync");
            vm.KillAndRestart();
            vm.WaitUntilReady();
            RestorePoint afterKill = BackUpAfterWrite(vm, "after-kill");
            AssertFull(afterKill, ChangeTrackingRecord.Reasons.BitmapInconsistent);
            Assert.Equal("after-kill\n", GuestDiskImage.ReadFile(Restore(afterKill, "after-kill"), "/marker"));
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "after-kill-2")).ModeValue);
            AssertNothingLeft(vm);
        }

        [GuestFact]
        public void This_hosts_checkpoint_record_is_checked_against_the_repository_and_a_mismatch_gives_a_full_point_naming_it()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { DiskSizeBytes = 64 * MiB });
            RestorePoint first = BackUp(vm, verify: false);
            string record = HostCheckpointRecord.PathOf(HostCheckpoints, first.SourceKind, first.VmName);
            JsonObject saved = JsonText.ParseObject(File.ReadAllText(record));
            JsonObject disk = Assert.IsType<JsonObject>(Assert.Single(saved.GetArray("disks")));
            Assert.Equal((_repository.Location, first.Id), (saved.GetString("repository"), saved.GetString("point")));
            Assert.Equal((Checkpoint(first).Bitmap, vm.DiskPaths[0], 64 * MiB), (disk.GetString("bitmap"), disk.GetString("image"), disk.GetInt64("virtualSize")));
            Assert.Equal(Convert.ToInt32("600", 8), UnixFiles.Stat(record).Permissions);
            Assert.Equal(Convert.ToInt32("700", 8), UnixFiles.Stat(HostCheckpoints).Permissions);
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "agreed")).ModeValue);

            // A record from another repository: the VM was last backed up there, so the checkpoints are that repository's.
            BackupRepository other = BackupRepository.OpenOrCreate(_folder.File("other"), 1 * (int)MiB);
            AssertFull(Run(vm, verify: false, afterWrite: "into-other", into: other).RestorePoint, ChangeTrackingRecord.Reasons.NoCheckpoint);
            RestorePoint back = BackUpAfterWrite(vm, "back");
            AssertFull(back, ChangeTrackingRecord.Reasons.HostRecordMismatch);
            Assert.Contains($"of the repository '{other.Location}'", Checkpoint(back).Detail, StringComparison.Ordinal);
            Assert.Equal("back\n", GuestDiskImage.ReadFile(Restore(back, "back"), "/marker"));

            // A record whose point was pruned.
            RestorePoint pruned = BackUpAfterWrite(vm, "to-prune");
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(pruned).ModeValue);
            _repository.Prune(_repository.PlanRemoval(new[] { pruned.Id }, e => throw e), collectGarbage: false, removeStaleLock: false, CancellationToken.None);
            RestorePoint afterPrune = BackUpAfterWrite(vm, "after-prune");
            AssertFull(afterPrune, ChangeTrackingRecord.Reasons.PreviousPointMissing);
            Assert.Contains($"this host's checkpoint record names restore point {pruned.Id}, which is no longer in the repository", Checkpoint(afterPrune).Detail, StringComparison.Ordinal);

            // The bitmap on the disk is sound and the repository names it, but this host's record names another: full.
            string bitmap = Checkpoint(afterPrune).Bitmap;
            File.WriteAllText(record, File.ReadAllText(record).Replace(bitmap, QemuDiskCheckpoint.BitmapPrefix + "edited"));
            AssertFull(BackUpAfterWrite(vm, "edited"), ChangeTrackingRecord.Reasons.HostRecordMismatch);

            // A link in the record's place is never followed; the next point's record replaces the link, not its target.
            string elsewhere = _folder.File("elsewhere.json");
            File.Copy(record, elsewhere);
            string planted = File.ReadAllText(elsewhere);
            File.Delete(record);
            Assert.Equal(0, HostCommand.Run("ln", new[] { "-s", elsewhere, record }).ExitCode);
            AssertFull(BackUpAfterWrite(vm, "linked"), ChangeTrackingRecord.Reasons.HostRecordInvalid);
            Assert.Null(UnixFiles.ReadLink(record));
            Assert.Equal(planted, File.ReadAllText(elsewhere));
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "agreed-again")).ModeValue);
            AssertNothingLeft(vm);
        }

        [GuestFact]
        public void A_raw_disk_loses_its_checkpoint_with_a_restart_and_a_hot_added_disk_starts_in_full()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { DiskFormat = GuestDiskFormat.Raw });
            RestorePoint first = BackUp(vm, verify: false);
            Assert.False(Checkpoint(first).Persistent);
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "raw-incremental")).ModeValue);

            vm.KillAndRestart();
            vm.WaitUntilReady();
            AssertFull(BackUpAfterWrite(vm, "after-restart"), ChangeTrackingRecord.Reasons.BitmapMissing);

            string added = _folder.File("added.raw");
            File.WriteAllBytes(added, new byte[4 * MiB]);
            Qmp(vm, "blockdev-add", new JsonObject().With("driver", "raw").With("node-name", "added0").With("file", new JsonObject().With("driver", "file").With("filename", added)));
            Qmp(vm, "device_add", new JsonObject().With("driver", "virtio-blk-pci").With("drive", "added0").With("id", "added0dev"));
            RestorePoint withNewDisk = BackUpAfterWrite(vm, "hot-added");
            Assert.Equal(2, withNewDisk.Files.Count);
            Assert.Equal(ChangeTrackingMode.Incremental, withNewDisk.Files.Single(f => f.OriginalPath == vm.DiskPaths[0]).ChangeTrackingValue!.ModeValue);
            ChangeTrackingRecord addedRecord = withNewDisk.Files.Single(f => f.OriginalPath == added).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingRecord.Reasons.NoCheckpoint, addedRecord.Reason);
            Assert.Contains("new since restore point", addedRecord.Detail, StringComparison.Ordinal);
            string restored = Restore(withNewDisk, "raw");
            Assert.Equal("hot-added\n", GuestDiskImage.ReadFile(restored, "/marker"));

            // The hot-added disk's image replaced under the same node (blockdev-reopen onto another file): the bitmap
            // is still on the node, but it says nothing of the new image's content.
            string replacement = _folder.File("replacement.raw");
            File.Copy(added, replacement);
            Qmp(vm, "blockdev-add", new JsonObject().With("driver", "file").With("node-name", "replacement0").With("filename", replacement));
            Qmp(vm, "blockdev-reopen", new JsonObject().With("options", new JsonArray(new object?[] { new JsonObject().With("driver", "raw").With("node-name", "added0").With("file", "replacement0") })));
            RestorePoint replaced = BackUpAfterWrite(vm, "replaced");
            ChangeTrackingRecord replacedRecord = replaced.Files.Single(f => f.OriginalPath == replacement).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingRecord.Reasons.DiskReplaced, replacedRecord.Reason);
            Assert.Contains(_warnings, w => w.Contains(ChangeTrackingRecord.Reasons.DiskReplaced, StringComparison.Ordinal));
            Assert.Equal(ChangeTrackingMode.Incremental, replaced.Files.Single(f => f.OriginalPath == vm.DiskPaths[0]).ChangeTrackingValue!.ModeValue);
            AssertNothingLeft(vm);
        }

        [GuestFact]
        public void The_export_cut_off_or_QEMU_killed_mid_read_leaves_no_point_no_export_no_scratch_node_and_a_thawed_guest()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            BackUp(vm, verify: false);
            int points = _repository.ListRestorePoints().Count;

            // An internal-snapshot backup copies whole image files: change tracking is refused, naming why, before the guest is touched.
            var internalMode = new QemuSource(new QemuSourceOptions("tracked", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, Mode = QemuSnapshotMode.Internal });
            var refused = Assert.Throws<VmQuiesceException>(() => new BackupEngine(_repository).Run(internalMode, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions()));
            Assert.Equal("ChangeTrackingNeedsExternalMode", refused.ErrorId);
            Assert.Equal(points, _repository.ListRestorePoints().Count);

            // A guest another tool froze is refused once the agent has answered, after the monitor's checks: the scratch
            // images and nodes made meanwhile go, nothing is left, and the checkpoint stays.
            using (GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(60)))
            {
                agent.Freeze();
            }

            try
            {
                var frozen = Assert.Throws<VmQuiesceException>(() => Run(vm, verify: false));
                Assert.Equal("GuestAlreadyFrozen", frozen.ErrorId);
                AssertNothingLeft(vm);
            }
            finally
            {
                using GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(60));
                agent.Thaw();
            }

            Assert.Equal(points, _repository.ListRestorePoints().Count);

            // The export goes away as the copy starts: the read fails, nothing is published, the checkpoint survives.
            var cutOff = Assert.ThrowsAny<VmQuiesceException>(() => Run(vm, verify: false, afterWrite: "cut", onCopy: () =>
            {
                foreach (JsonObject export in QmpArray(vm, "query-block-exports").OfType<JsonObject>())
                {
                    Qmp(vm, "block-export-del", new JsonObject().With("id", export.GetString("id")).With("mode", "hard"));
                }
            }));
            _output.WriteLine("export cut off: " + cutOff.ErrorId + ": " + cutOff.Message);
            Assert.Equal(points, _repository.ListRestorePoints().Count);
            AssertNothingLeft(vm);
            Assert.Equal("thawed", QemuSourceGuestTests.FreezeStatus(vm));
            // The writes made before the failed backup are still tracked: the next point is incremental and holds them.
            RestorePoint next = Run(vm, verify: false).RestorePoint;
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(next).ModeValue);
            Assert.Equal("cut\n", GuestDiskImage.ReadFile(Restore(next, "after-cut"), "/marker"));

            // QEMU killed as the copy starts.
            Assert.ThrowsAny<VmQuiesceException>(() => Run(vm, verify: false, afterWrite: "killed", onCopy: vm.Kill));
            Assert.Equal(points + 1, _repository.ListRestorePoints().Count);
            Assert.Empty(Directory.GetFiles(vm.WorkFolder, "*.vmquiesce-*"));
            Assert.Contains(_warnings, w => w.Contains("cannot be reached", StringComparison.Ordinal));
        }

        [GuestFact]
        public async Task The_scratch_nodes_are_made_while_the_repository_is_still_read_and_go_with_the_run_record_when_that_read_fails()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            var request = new TaskCompletionSource<ChangeTrackingRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var scratchMade = new ManualResetEventSlim();
            using var watcher = new FileSystemWatcher(vm.WorkFolder, "*.vmquiesce-*");
            watcher.Created += (_, _) => scratchMade.Set();
            watcher.EnableRaisingEvents = true;
            var source = new QemuSource(new QemuSourceOptions("tracked", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath });

            Task<IConsistentView> opening = Task.Run(() => source.OpenTrackedView(new QuiesceOptions(), request.Task, CancellationToken.None));

            Assert.True(scratchMade.Wait(TimeSpan.FromMinutes(2)), "no scratch image was made while the repository's answer was pending");
            Assert.False(opening.IsCompleted);
            request.SetException(new VmQuiesceException("RestorePointUnreadable", FailureKind.InvalidData, "the previous manifest cannot be read", "repo"));
            Assert.Equal("RestorePointUnreadable", (await Assert.ThrowsAsync<VmQuiesceException>(() => opening)).ErrorId);
            AssertNothingLeft(vm);
            // The run's record is written before the repository's answer is awaited; nothing was frozen, so it goes as well
            // (left saying the guest may be frozen, it would have the next command thaw and repair on its word).
            Assert.Null(QemuRunRecord.Load(vm.QmpSocketPath));
            Assert.Empty(Bitmaps(vm));
            Assert.Equal("thawed", QemuSourceGuestTests.FreezeStatus(vm));
        }

        [GuestFact]
        public void A_copy_that_fails_after_its_reads_ended_merges_its_checkpoint_back_into_the_previous_one()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            BackUpAfterWrite(vm, "first");
            IReadOnlyList<string> checkpoints = Bitmaps(vm);
            var source = new QemuSource(new QemuSourceOptions("tracked", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath });
            ChangeTrackingRequest request = new BackupEngine(_repository) { HostCheckpointFolder = HostCheckpoints }.PreviousCheckpoints(source, verify: false);

            // The fleecing is taken down as the reads end; the copy then fails (a flush, the point's making): the writes since
            // the point in time, which only the new checkpoint saw, must reach the previous one.
            using (IConsistentView view = source.OpenTrackedView(new QuiesceOptions(), Task.FromResult(request), CancellationToken.None))
            {
                QemuSourceGuestTests.GuestShell(vm, "echo during > /mnt/data/during && sync");
                ((IReleasePreparation)view).ReadsEnded();
                view.Complete(false, CancellationToken.None);
            }

            AssertNothingLeft(vm);
            Assert.Equal(checkpoints, Bitmaps(vm));
            RestorePoint next = BackUpAfterWrite(vm, "after-failed-copy");
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(next).ModeValue);
            string restored = Restore(next, "after-failed-copy");
            Assert.Equal("during\n", GuestDiskImage.ReadFile(restored, "/during"));
            Assert.Equal("after-failed-copy\n", GuestDiskImage.ReadFile(restored, "/marker"));
        }

        [GuestFact]
        public void A_run_that_died_right_after_starting_QEMUs_NBD_server_leaves_a_server_the_next_backup_stops()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            // While a tracked read runs, its record says the NBD server is the run's; a finished run leaves no record.
            QemuRunRecord? during = null;
            BackUpAfterWrite(vm, "first", onCopy: () => during = QemuRunRecord.Load(vm.QmpSocketPath));
            Assert.True(during!.NbdServerStarted);
            Assert.Null(QemuRunRecord.Load(vm.QmpSocketPath));

            // What a process killed between nbd-server-start and its first export leaves: its record and a server with
            // no export, which no name marks as VmQuiesce's. It made every later change-tracked backup fail (QemuNbdServerBusy).
            QemuRunRecord dead = QemuRunRecord.Begin("tracked", vm.QmpSocketPath, null, null, Array.Empty<RecordedOverlay>(), null);
            dead.MarkNbdServer(started: true);
            dead.EndRun();
            var address = new JsonObject().With("addr", new JsonObject().With("type", "unix").With("data", new JsonObject().With("path", _folder.File("left.sock"))));
            Qmp(vm, "nbd-server-start", address);

            RestorePoint next = BackUpAfterWrite(vm, "after-dead-run");

            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(next).ModeValue);
            Assert.Equal("after-dead-run\n", GuestDiskImage.ReadFile(Restore(next, "after-dead-run"), "/marker"));
            Assert.Contains(_warnings, w => w.Contains("NbdServer stopped", StringComparison.Ordinal) && w.Contains("before it exported anything", StringComparison.Ordinal));
            Assert.Null(QemuRunRecord.Load(vm.QmpSocketPath));
            AssertNothingLeft(vm);
            Qmp(vm, "nbd-server-start", address);
            Qmp(vm, "nbd-server-stop", new JsonObject());
        }

        [GuestFact]
        public void A_scratch_node_and_image_a_release_left_without_a_record_go_with_the_next_backup_tracked_or_not()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            BackUp(vm, verify: false);
            var source = new QemuSource(new QemuSourceOptions("tracked", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath }, new OperationHost(warn: w => { lock (_warnings) { _warnings.Add(w); } }));
            // What a release that lost the monitor after nbd-server-stop leaves (the chaos run's proxy found it): the scratch
            // node and its image, and no run record, as the backup itself ended well.
            string LeaveScratch(string unique)
            {
                string image = vm.DiskPaths[0] + QemuDiskCheckpoint.ScratchImageMarker + unique + ".qcow2";
                QemuImage.CreateEmptyQcow2(image, 64 * MiB);
                Qmp(vm, "blockdev-add", new JsonObject().With("driver", "qcow2").With("node-name", QemuDiskCheckpoint.ScratchPrefix + unique)
                    .With("file", new JsonObject().With("driver", "file").With("filename", image)).With("backing", "disk0fmt"));
                Assert.Null(QemuRunRecord.Load(vm.QmpSocketPath));
                Assert.Contains(source.FindLeftovers(CancellationToken.None), l => l.Contains($"the scratch image '{image}'", StringComparison.Ordinal));
                return image;
            }

            // A backup without change tracking removes them too (into a repository of its own, so the checkpoints' chain goes on).
            string first = LeaveScratch("0badf00d");
            new BackupEngine(BackupRepository.OpenOrCreate(_folder.File("plain"), 1 * (int)MiB)).Run(source, new QuiesceOptions(), null, CancellationToken.None);

            Assert.Contains(_warnings, w => w.Contains($"removed the scratch image '{first}'", StringComparison.Ordinal));
            AssertNothingLeft(vm);

            string second = LeaveScratch("0badcafe");
            RestorePoint next = BackUpAfterWrite(vm, "after-left-scratch");

            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(next).ModeValue);
            Assert.Contains(_warnings, w => w.Contains("removed the scratch node", StringComparison.Ordinal));
            Assert.Contains(_warnings, w => w.Contains($"removed the scratch image '{second}'", StringComparison.Ordinal));
            AssertNothingLeft(vm);
            Assert.Equal("after-left-scratch\n", GuestDiskImage.ReadFile(Restore(next, "after-left-scratch"), "/marker"));
        }

        [GuestFact]
        public void Another_tools_NBD_server_refuses_the_backup_before_the_freeze_and_keeps_running()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            BackUp(vm, verify: false);
            IReadOnlyList<string> checkpoints = Bitmaps(vm);
            JsonObject Address(string name) => new JsonObject().With("addr", new JsonObject().With("type", "unix").With("data", new JsonObject().With("path", _folder.File(name))));
            Qmp(vm, "nbd-server-start", Address("other.sock"));

            // QEMU runs one NBD server: VmQuiesce's is started before the freeze, so the guest is never frozen for a read that cannot be.
            bool snapshotted = false;
            var busy = Assert.Throws<VmQuiesceException>(() => BackUpAfterWrite(vm, "refused", inFreeze: () => snapshotted = true));

            Assert.Equal("QemuNbdServerBusy", busy.ErrorId);
            Assert.False(snapshotted);
            Assert.Equal("thawed", QemuSourceGuestTests.FreezeStatus(vm));
            AssertNothingLeft(vm);
            Assert.Null(QemuRunRecord.Load(vm.QmpSocketPath));
            Assert.Equal(checkpoints, Bitmaps(vm));
            Assert.Throws<QemuCommandException>(() => Qmp(vm, "nbd-server-start", Address("second.sock")));
            Qmp(vm, "nbd-server-stop", new JsonObject());
            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(BackUpAfterWrite(vm, "after-other-server")).ModeValue);
        }

        [MountGuestFact]
        public void An_incremental_point_mounts_and_starts_as_an_instant_restore_like_a_full_one()
        {
            RestorePoint incremental;
            using (TestGuestVm vm = TestGuestVm.Boot())
            {
                BackUp(vm, verify: false);
                incremental = BackUpAfterWrite(vm, "served-incremental");
            }

            Assert.Equal(ChangeTrackingMode.Incremental, Checkpoint(incremental).ModeValue);

            // Mount-VmBackup: the guest's file system as the incremental point holds it, read-only.
            string mountFolder = _folder.File("mnt");
            using (RestorePointMount mount = RestorePointMount.Mount(_repository, incremental, mountFolder, CancellationToken.None))
            {
                MountedFileSystem data = Assert.Single(mount.FileSystems);
                Assert.Equal("served-incremental\n", File.ReadAllText(Path.Combine(data.Path, "marker")));
                Assert.Equal(4 * 65536, new FileInfo(Path.Combine(data.Path, "served-incremental")).Length);
            }

            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == incremental.Id);

            // Start-VmInstantRestore: the point's disk served to a new QEMU and copied to a local qcow2 behind it.
            BootCheckOptions boot = VmQuiesce.Core.Tests.Restore.BootCheckTests.GuestBoot();
            boot.Append = boot.Append!.Replace("vmquiesce.agent=once", "vmquiesce.agent=respawn", StringComparison.Ordinal);
            InstantRestore restore = InstantRestore.Start(_repository, incremental, _folder.File("instant"), boot, 0, CancellationToken.None);
            try
            {
                using (GuestAgentClient agent = GuestAgentClient.Connect(restore.AgentSocket, TimeSpan.FromSeconds(60)))
                {
                    agent.Sync(TimeSpan.FromSeconds(120));
                    GuestExecResult marker = agent.Exec("/bin/cat", new[] { "/mnt/data/marker" }, TimeSpan.FromSeconds(120));
                    Assert.Equal("served-incremental\n", marker.StandardOutput);
                }

                Assert.True(restore.WaitForCompletion(TimeSpan.FromMinutes(5), CancellationToken.None), restore.Error ?? restore.State.ToString());
                Assert.Equal(restore.TotalBytes, restore.CopiedBytes);
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

        private string HostCheckpoints => _folder.File("host-checkpoints");

        private RestorePoint BackUpAfterWrite(TestGuestVm vm, string marker, Action? onCopy = null, Action? inFreeze = null) =>
            Run(vm, verify: false, inFreeze: inFreeze, afterWrite: marker, onCopy: onCopy).RestorePoint;

        private RestorePoint BackUp(TestGuestVm vm, bool verify, Action? inFreeze = null) => Run(vm, verify, inFreeze: inFreeze).RestorePoint;

        private BackupOutcome Run(TestGuestVm vm, bool verify, Action? inFreeze = null, string? afterWrite = null, Action? onCopy = null, BackupRepository? into = null)
        {
            if (afterWrite != null)
            {
                QemuSourceGuestTests.GuestShell(vm, $"dd if=/dev/urandom of=/mnt/data/{afterWrite} bs=64k count=4 2>/dev/null && echo {afterWrite} > /mnt/data/marker && sync");
            }

            bool copying = false;
            var host = new OperationHost(warn: w => { lock (_warnings) { _warnings.Add(w); } _output.WriteLine("WARNING: " + w); }, progress: p =>
            {
                if (p is BackupProgress backup && backup.Phase == BackupPhase.Copying && !copying)
                {
                    copying = true;
                    onCopy?.Invoke();
                }
            });
            var source = new QemuSource(new QemuSourceOptions("tracked", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, BeforeSnapshot = inFreeze == null ? null : _ => inFreeze() }, host);
            return new BackupEngine(into ?? _repository) { HostCheckpointFolder = HostCheckpoints }.Run(source, new QuiesceOptions(), host, CancellationToken.None, new ChangeTrackingOptions { Verify = verify });
        }

        private string Restore(RestorePoint point, string name)
        {
            string destination = _folder.File(name);
            var engine = new RestoreEngine(_repository);
            RestoreResult result = engine.Run(engine.Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None), null, CancellationToken.None);
            return result.Files[0].Path;
        }

        private static ChangeTrackingRecord Checkpoint(RestorePoint point) => Assert.Single(point.Files).ChangeTrackingValue!;

        private void AssertFull(RestorePoint point, string reason)
        {
            ChangeTrackingRecord record = Checkpoint(point);
            Assert.Equal(ChangeTrackingMode.Full, record.ModeValue);
            Assert.Equal(reason, record.Reason);
            Assert.Equal("Full", point.ChangeTracking);
            if (reason != ChangeTrackingRecord.Reasons.VerifyFailed)
            {
                Assert.Contains(_warnings, w => w.Contains(reason, StringComparison.Ordinal) && w.Contains("disk disk0", StringComparison.Ordinal));
            }
        }

        /// <summary>No export, no scratch node, no job, no scratch file: what a backup made is gone.</summary>
        private static void AssertNothingLeft(TestGuestVm vm)
        {
            Assert.Empty(QmpArray(vm, "query-block-exports"));
            Assert.Empty(QmpArray(vm, "query-jobs"));
            Assert.DoesNotContain(QmpArray(vm, "query-named-block-nodes").OfType<JsonObject>(), n => (n.GetOptionalString("node-name") ?? "").StartsWith("vmquiesce-", StringComparison.Ordinal));
            Assert.Empty(Directory.GetFiles(vm.WorkFolder, "*.vmquiesce-*"));
        }

        private static IReadOnlyList<string> Bitmaps(TestGuestVm vm) =>
            QmpArray(vm, "query-named-block-nodes").OfType<JsonObject>().Where(n => n.GetOptionalString("node-name") == "disk0fmt")
                .SelectMany(n => (n.GetOptionalArray("dirty-bitmaps") ?? new JsonArray()).OfType<JsonObject>()).Select(b => b.GetString("name")).ToList();

        private static void Qmp(TestGuestVm vm, string command, JsonObject arguments)
        {
            using QmpClient qmp = QmpClient.Connect(vm.QmpSocketPath);
            qmp.Execute(command, arguments);
        }

        private static JsonArray QmpArray(TestGuestVm vm, string command)
        {
            using QmpClient qmp = QmpClient.Connect(vm.QmpSocketPath);
            return qmp.ExecuteArray(command);
        }

        /// <summary>The disk as the guest sees it, read while the guest is frozen (QEMU flushed its caches for the freeze).</summary>
        private static void CopyDisk(string image, string raw) =>
            HostCommand.RunChecked("qemu-img", new[] { "convert", "-U", "-O", "raw", image, raw });

        private static int Compare(string restored, string raw) => HostCommand.Run("qemu-img", new[] { "compare", "-F", "raw", restored, raw }).ExitCode;

        private static JsonObject ImageInfo(string image) =>
            JsonText.ParseObject(HostCommand.RunChecked("qemu-img", new[] { "info", "--output=json", image }).StandardOutput);
    }
}
