using System;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>Tests that name the storage daemon through its VMQUIESCE_TOOL_ setting, a process-wide variable: one at a time.</summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class StorageDaemonSettingCollection
    {
        public const string Name = "qemu-storage-daemon setting";
    }

    /// <summary>Dismount-VmBackup, and a mount that fails or is stopped, remove what the mount made and nothing else.</summary>
    [Collection(StorageDaemonSettingCollection.Name)]
    public sealed class MountCleanupTests : IDisposable
    {
        private readonly RepositoryFixture _fixture = new RepositoryFixture();

        public void Dispose() => _fixture.Dispose();

        [MountFact]
        public void Dismount_leaves_a_loop_device_someone_attached_after_the_mount_lost_its_own()
        {
            RestorePoint point = CraftedGuestDisk.BackUp(_fixture, "echo x > f");
            string other = Path.Combine(_fixture.Root, "theirs.img");
            HostCommand.RunChecked("truncate", new[] { "-s", "8M", other });
            RestorePointMount mount = RestorePointMount.Mount(_fixture.Repository, point, Path.Combine(_fixture.Root, "mnt"), CancellationToken.None);
            string loop = mount.FileSystems.Single().Device;
            try
            {
                // The mount's session is gone and an administrator tidied up by hand; the freed device went to another file.
                HostCommand.RunChecked("umount", new[] { mount.FileSystems.Single().Path });
                HostCommand.RunChecked("losetup", new[] { "--detach", loop });
                HostCommand.RunChecked("losetup", new[] { loop, other });

                mount.Dismount();

                Assert.Equal(other, File.ReadAllText($"/sys/block/{Path.GetFileName(loop)}/loop/backing_file").TrimEnd('\n'));
                Assert.DoesNotContain(RestorePointMount.Find(), found => found.Id == mount.Id);
            }
            finally
            {
                HostCommand.Run("losetup", new[] { "--detach", loop });
            }
        }

        [MountFact]
        public void Dismount_gives_back_a_folder_the_mount_did_not_make_as_it_was()
        {
            RestorePoint point = CraftedGuestDisk.BackUp(_fixture, "echo x > f");
            string folder = Path.Combine(_fixture.Root, "mnt");
            Directory.CreateDirectory(folder);
            HostCommand.RunChecked("chmod", new[] { "0755", folder });

            RestorePointMount mount = RestorePointMount.Mount(_fixture.Repository, point, folder, CancellationToken.None);
            Assert.Equal(Convert.ToUInt32("700", 8), UnixFiles.Stat(folder).Mode & 0xFFF); // the guest's owners are some host user's too
            mount.Dismount();

            Assert.True(Directory.Exists(folder), "the caller's folder was removed");
            Assert.Equal(Convert.ToUInt32("755", 8), UnixFiles.Stat(folder).Mode & 0xFFF);
            Assert.Empty(Directory.EnumerateFileSystemEntries(folder));
        }

        [MountFact]
        public void A_mount_stopped_while_its_storage_daemon_starts_ends_that_daemon()
        {
            RestorePoint point = CraftedGuestDisk.BackUp(_fixture, "echo x > f");
            // The real daemon detaches itself; the program VmQuiesce ran then waits, as if Ctrl+C came before it returned.
            using var daemon = new NotedStorageDaemon(_fixture.Root, hold: true);
            using var cancel = new CancellationTokenSource();
            Task<RestorePointMount> mounting = Task.Run(() => RestorePointMount.Mount(_fixture.Repository, point, Path.Combine(_fixture.Root, "mnt"), cancel.Token));
            Assert.True(SpinWait.SpinUntil(() => daemon.GuestViews.Length > 0 || mounting.IsCompleted, TimeSpan.FromMinutes(2)), "the storage daemon never started");
            Assert.False(mounting.IsCompleted, "the mount finished before the stop");
            string guestView = Assert.Single(daemon.GuestViews);
            Assert.NotEmpty(ProcessesNaming(guestView));

            cancel.Cancel();

            Assert.ThrowsAny<OperationCanceledException>(() => mounting.GetAwaiter().GetResult());
            AssertNothingLeft(point, Path.Combine(_fixture.Root, "mnt"), daemon);
        }

        [MountFact]
        public void A_point_with_no_file_system_to_mount_leaves_nothing()
        {
            RestorePoint point = CraftedGuestDisk.BackUp(_fixture, "echo x > f", "4M", spoil: "head -c 4M /dev/urandom > \"$1\"");
            using var daemon = new NotedStorageDaemon(_fixture.Root, hold: false);

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(_fixture.Repository, point, Path.Combine(_fixture.Root, "mnt"), CancellationToken.None));

            Assert.Equal("MountNoFileSystems", e.ErrorId);
            Assert.Single(daemon.GuestViews);
            AssertNothingLeft(point, Path.Combine(_fixture.Root, "mnt"), daemon);
        }

        [MountFact]
        public void A_file_system_the_kernel_refuses_to_mount_leaves_nothing()
        {
            // blkid still finds ext4 by its superblock; the kernel refuses its garbled group descriptors (block 1).
            RestorePoint point = CraftedGuestDisk.BackUp(_fixture, "echo x > f", spoil: "head -c 4096 /dev/urandom | dd of=\"$1\" bs=4096 seek=1 conv=notrunc status=none");
            using var daemon = new NotedStorageDaemon(_fixture.Root, hold: false);

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(_fixture.Repository, point, Path.Combine(_fixture.Root, "mnt"), CancellationToken.None));

            Assert.Equal("MountFailed", e.ErrorId);
            Assert.Contains("mount", e.Message, StringComparison.Ordinal);
            AssertNothingLeft(point, Path.Combine(_fixture.Root, "mnt"), daemon);
        }

        /// <summary>No daemon, loop device or mount of the FUSE files the mount's daemons served, no record of the point, no folder.</summary>
        private static void AssertNothingLeft(RestorePoint point, string folder, NotedStorageDaemon daemon)
        {
            foreach (string guestView in daemon.GuestViews)
            {
                Assert.Empty(ProcessesNaming(guestView));
                Assert.DoesNotContain(guestView, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
                Assert.DoesNotContain(Directory.EnumerateDirectories("/sys/block", "loop*"), loop => File.Exists(loop + "/loop/backing_file") && File.ReadAllText(loop + "/loop/backing_file").StartsWith(guestView, StringComparison.Ordinal));
            }

            Assert.DoesNotContain(RestorePointMount.Find(), found => found.RestorePointId == point.Id);
            Assert.False(Directory.Exists(folder), folder);
        }

        /// <summary>
        /// qemu-storage-daemon started through a script (VMQUIESCE_TOOL_QEMU_STORAGE_DAEMON) that notes the FUSE file of each
        /// start and, with hold, waits after the daemon has detached itself, as if Ctrl+C came before it returned.
        /// </summary>
        private sealed class NotedStorageDaemon : IDisposable
        {
            private readonly string _noted;
            private readonly string _setting = HostTools.SettingName("qemu-storage-daemon");

            public NotedStorageDaemon(string folder, bool hold)
            {
                _noted = Path.Combine(folder, "daemon-arguments");
                string script = Path.Combine(folder, "qemu-storage-daemon");
                File.WriteAllText(script, $"#!/bin/sh\n{HostTools.ForThisHost.Find("qemu-storage-daemon")} \"$@\" || exit\nprintf '%s\\n' \"$@\" >> {_noted}\n{(hold ? "exec sleep 120\n" : string.Empty)}");
                HostCommand.RunChecked("chmod", new[] { "0755", script });
                Environment.SetEnvironmentVariable(_setting, script);
            }

            /// <summary>The FUSE files of the daemons started so far.</summary>
            public string[] GuestViews => !File.Exists(_noted) ? Array.Empty<string>() : File.ReadAllLines(_noted)
                .Where(line => line.Contains("\"mountpoint\"", StringComparison.Ordinal))
                .Select(line => System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("mountpoint").GetString()!).ToArray();

            public void Dispose()
            {
                Environment.SetEnvironmentVariable(_setting, null);
                foreach (int pid in GuestViews.SelectMany(ProcessesNaming))
                {
                    HostCommand.Run("kill", new[] { "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                }
            }
        }

        /// <summary>The live processes whose arguments hold <paramref name="text"/>.</summary>
        private static int[] ProcessesNaming(string text) =>
            Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(name => name!.All(char.IsDigit)).Select(int.Parse!)
                .Where(pid => ArgumentsOf(pid).Contains(text, StringComparison.Ordinal)).ToArray();

        private static string ArgumentsOf(int pid)
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/cmdline");
            }
            catch (IOException)
            {
                return string.Empty;
            }
        }
    }
}
