using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Restore
{
    /// <summary>
    /// The whole job on a real guest: write a marker, back up while it runs, shut it down, damage the disk,
    /// restore, and boot the restored disk: the marker is there and the file system is clean.
    /// </summary>
    public sealed class RestoreGuestTests
    {
        [GuestFact]
        public void A_damaged_disk_is_restored_in_place_and_boots_clean_with_the_marker()
        {
            using var fixture = new RepositoryFixture();
            using TestGuestVm vm = TestGuestVm.Boot();
            string disk = vm.DiskPaths[0];
            RestorePoint point = BackUpWithMarker(fixture, vm, QemuSnapshotMode.External, "in-place");

            var running = Assert.Throws<VmQuiesceException>(() => new RestoreEngine(fixture.Repository).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None));
            Assert.Equal("VmRunning", running.ErrorId);
            Assert.Contains($"process {vm.Process.Id}", running.Message, StringComparison.Ordinal);

            ShutDown(vm);
            Damage(disk);
            Assert.NotEqual(point.Files.Single().Digest, RepositoryFixture.DigestOf(disk));

            var engine = new RestoreEngine(fixture.Repository);
            RestoreResult result = engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None);

            Assert.Equal(RevertStatus.NotNeeded, result.RevertValue);
            Assert.True(result.Files.Single().Replaced);
            Assert.Equal("in-place\n", GuestDiskImage.ReadFile(disk, "/marker.txt"));
            Assert.False(GuestDiskImage.NeedsRecovery(disk));
            Assert.Equal(0, GuestDiskImage.Fsck(disk));
            AssertBootsClean(disk);
        }

        [GuestFact]
        public void An_internal_snapshot_backup_is_restored_to_another_folder_reverted_and_boots_clean()
        {
            using var fixture = new RepositoryFixture();
            using TestGuestVm vm = TestGuestVm.Boot();
            RestorePoint point = BackUpWithMarker(fixture, vm, QemuSnapshotMode.Internal, "destination");
            ShutDown(vm);
            Damage(vm.DiskPaths[0]);
            string destination = Path.Combine(fixture.Root, "restored");

            var engine = new RestoreEngine(fixture.Repository);
            RestoreResult result = engine.Run(engine.Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None), null, CancellationToken.None);

            string restored = Path.Combine(destination, point.Files.Single().Path);
            Assert.Equal(RevertStatus.Reverted, result.RevertValue);
            Assert.Contains(point.Snapshot!.Name, result.RevertDetail, StringComparison.Ordinal);
            Assert.Equal(restored, result.Files.Single().Path);
            Assert.Equal("destination\n", GuestDiskImage.ReadFile(restored, "/marker.txt"));
            Assert.Equal(0, GuestDiskImage.Fsck(restored));
            Assert.Contains(point.Snapshot.Name, VmSnapshotCatalog.ForImage(restored, CancellationToken.None).Select(snapshot => snapshot.Name));
            AssertBootsClean(restored);
        }

        [GuestFact]
        public void The_snapshots_of_a_running_vm_are_listed_through_qmp()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            using (QmpClient qmp = QmpClient.Connect(vm.QmpSocketPath))
            {
                qmp.Execute("blockdev-snapshot-internal-sync", new JsonObject().With("device", "disk0").With("name", "listed-online"));
            }

            var snapshots = VmSnapshotCatalog.ForVm(new QemuVm("guest", vm.QmpSocketPath, vm.AgentSocketPath), CancellationToken.None);

            VmSnapshot snapshot = Assert.Single(snapshots);
            Assert.Equal("listed-online", snapshot.Name);
            Assert.Equal("disk0", snapshot.Disk);
            Assert.Equal("guest", snapshot.VmName);
            Assert.Equal("QemuInternal", snapshot.Kind);
            Assert.InRange(snapshot.Date, DateTime.UtcNow.AddMinutes(-10), DateTime.UtcNow.AddMinutes(1));
            Assert.True(snapshot.VmClock > 0);
        }

        private static RestorePoint BackUpWithMarker(RepositoryFixture fixture, TestGuestVm vm, QemuSnapshotMode mode, string marker)
        {
            QemuSourceGuestTests.GuestShell(vm, $"echo {marker} > /mnt/data/marker.txt");
            var source = new QemuSource(new QemuSourceOptions("guest", vm.QmpSocketPath) { AgentSocket = vm.AgentSocketPath, Mode = mode });
            RestorePoint point = new BackupEngine(fixture.Repository).Run(source, new QuiesceOptions(), null, CancellationToken.None).RestorePoint;
            Assert.Equal(Consistency.FileSystem, point.ConsistencyValue);
            return point;
        }

        private static void ShutDown(TestGuestVm vm)
        {
            using (GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath, TimeSpan.FromSeconds(60)))
            {
                try
                {
                    agent.Execute("guest-shutdown", timeout: TimeSpan.FromSeconds(5));
                }
                catch (VmQuiesceException)
                {
                    // No reply on success: the guest powers off.
                }
            }

            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(90)), "QEMU did not exit after guest-shutdown");
        }

        /// <summary>Overwrites the first 4 MiB (image header and the file system's start) with random bytes.</summary>
        private static void Damage(string disk)
        {
            using var file = new FileStream(disk, FileMode.Open, FileAccess.Write);
            file.Write(RepositoryFixture.Random(4 * 1024 * 1024, 99), 0, 4 * 1024 * 1024);
        }

        private static void AssertBootsClean(string disk)
        {
            BootCheckResult boot = BootCheck.Run(new[] { new BootDisk(disk, "qcow2") }, BootCheckTests.GuestBoot(), CancellationToken.None);

            Assert.True(boot.Passed, boot.ToString());
            Assert.Contains(boot.FileSystems, fileSystem => fileSystem.MountPoint == "/mnt/data");
            Assert.Equal(DiskCheckStatus.Clean, boot.Disks.Single().StatusValue);
            if (Libc.geteuid() == 0)
            {
                // Sandboxed and dropped to a throwaway user id that no account has, once its files were open.
                Assert.NotNull(boot.QemuUid);
                Assert.InRange(boot.QemuUid!.Value, 2_000_000_000u, 2_099_999_999u);
            }
        }
    }
}
