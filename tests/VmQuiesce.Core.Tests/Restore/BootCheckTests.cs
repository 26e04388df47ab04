using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Backup;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Restore
{
    /// <summary>
    /// The boot check against hostile restored images: real image files that name a host file the way qcow2 can
    /// (a backing file, an external data file), in restore points that record the format the source vouched for.
    /// </summary>
    public sealed class BootCheckTests : IDisposable
    {
        private readonly RepositoryFixture _fixture = new RepositoryFixture();

        public void Dispose() => _fixture.Dispose();

        /// <summary>A QEMU that does not exist: had the check started one, it would have thrown instead of refusing.</summary>
        private static BootCheckOptions NoQemu => new BootCheckOptions { QemuExecutable = "/nonexistent/qemu-system-x86_64", BootTimeout = TimeSpan.FromSeconds(30) };

        private string HostSecret()
        {
            string secret = Path.Combine(_fixture.Root, "host-secret.raw");
            File.WriteAllText(secret, "root's own data, which no restored disk may pull in\n");
            return secret;
        }

        private RestorePoint BackUp(string path, string? format) =>
            new BackupEngine(_fixture.Repository, 2).Run(
                new ViewSource(new StableFilesView(new[] { new ViewFile(Path.GetFileName(path), path, path) { Format = format } })),
                new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

        [LinuxFact]
        public void A_qcow2_disk_that_names_a_backing_file_on_the_host_is_refused_before_anything_starts()
        {
            string hostile = Path.Combine(_fixture.Root, "disk.qcow2");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", "-b", HostSecret(), "-F", "raw", hostile });

            BootCheckResult result = BootCheck.RunRestorePoint(_fixture.Repository, BackUp(hostile, "qcow2"), NoQemu, CancellationToken.None);

            Assert.False(result.Passed);
            Assert.Contains("Refused to boot", result.Failure, StringComparison.Ordinal);
            Assert.Contains("names the backing file", result.Failure, StringComparison.Ordinal);
            Assert.Empty(result.Disks);
        }

        [LinuxFact]
        public void A_qcow2_disk_that_names_an_external_data_file_is_refused_without_opening_it()
        {
            string hostile = Path.Combine(_fixture.Root, "disk.qcow2");
            string dataFile = Path.Combine(_fixture.Root, "data-file");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", "-o", $"data_file={dataFile},data_file_raw=on", hostile, "1M" });
            RestorePoint point = BackUp(hostile, "qcow2");
            // Now a FIFO: a qemu-img that opened it would wait for a writer until its deadline instead of answering.
            File.Delete(dataFile);
            HostCommand.RunChecked("mkfifo", new[] { dataFile });

            BootCheckResult result = BootCheck.RunRestorePoint(_fixture.Repository, point, NoQemu, CancellationToken.None);

            Assert.False(result.Passed);
            Assert.Contains("names an external data file", result.Failure, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void A_disk_whose_format_was_not_recorded_or_is_not_bootable_is_refused()
        {
            string disk = _fixture.WriteFile("disk.img", new byte[4096]);

            BootCheckResult unknown = BootCheck.Run(new[] { new BootDisk(disk, null) }, NoQemu, CancellationToken.None);
            BootCheckResult vmdk = BootCheck.Run(new[] { new BootDisk(disk, "vmdk") }, NoQemu, CancellationToken.None);

            Assert.Contains("does not record its disk format", unknown.Failure, StringComparison.Ordinal);
            Assert.Contains("boots raw and qcow2 disks", vmdk.Failure, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void A_snapshot_is_not_applied_to_a_restored_image_that_names_a_backing_file()
        {
            string image = Path.Combine(_fixture.Root, "disk.qcow2");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", "-b", HostSecret(), "-F", "raw", image });
            HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-c", "vmquiesce-test", image });

            var refused = Assert.Throws<VmQuiesceException>(() => QemuImage.ApplySnapshot(image, "vmquiesce-test", CancellationToken.None));

            Assert.Equal("ImageNamesOtherFiles", refused.ErrorId);
            Assert.Contains("names the backing file", refused.Message, StringComparison.Ordinal);
        }

        [GuestFact]
        public void A_raw_disk_holding_a_qcow2_header_that_names_a_host_disk_is_booted_as_the_raw_bytes_it_is()
        {
            // The host's disk boots the test guest: had the check read the header, the guest would run from it.
            string hostDisk = Path.Combine(_fixture.Root, "host-disk.raw");
            GuestDiskImage.Create(hostDisk, 64L << 20, GuestDiskFormat.Raw, "data");
            string hostile = Path.Combine(_fixture.Root, "guest-disk.img");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", "-b", hostDisk, "-F", "raw", hostile });

            BootCheckResult result = BootCheck.RunRestorePoint(_fixture.Repository, BackUp(hostile, "raw"), GuestBoot(), CancellationToken.None);

            Assert.False(result.AgentAnswered, result.ToString());
            Assert.Contains("VMQUIESCE-GUEST-FAILED: mount /dev/vda", result.Failure, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void Scratch_folders_are_made_for_this_user_alone()
        {
            using ScratchFolder scratch = ScratchFolder.Create("vmq-test");

            FileStatus stat = UnixFiles.Stat(scratch.Path);
            Assert.True(stat.IsDirectory);
            Assert.Equal(Libc.geteuid(), stat.Uid);
            Assert.Equal(Convert.ToUInt32("700", 8), stat.Mode & 0xFFF);
        }

        internal static BootCheckOptions GuestBoot() => new BootCheckOptions
        {
            Kernel = TestGuestEnvironment.KernelPath,
            Initrd = TestGuestEnvironment.InitramfsPath,
            Append = "console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks=1 vmquiesce.agent=once",
            MemoryMiB = 128,
            QemuExecutable = TestGuestEnvironment.QemuExecutable,
            BootTimeout = TimeSpan.FromSeconds(120),
        };
    }
}
