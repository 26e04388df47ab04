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
            string started = Path.Combine(_fixture.Root, "started");
            string daemon = Path.Combine(_fixture.Root, "qemu-storage-daemon");
            // The real daemon detaches itself; the program VmQuiesce ran then waits, as if Ctrl+C came before it returned.
            File.WriteAllText(daemon, $"#!/bin/sh\n{HostTools.ForThisHost.Find("qemu-storage-daemon")} \"$@\" || exit\nprintf '%s\\n' \"$@\" > {started}.new && mv {started}.new {started}\nexec sleep 120\n");
            HostCommand.RunChecked("chmod", new[] { "0755", daemon });
            string setting = HostTools.SettingName("qemu-storage-daemon");
            Environment.SetEnvironmentVariable(setting, daemon);
            string? guestView = null;
            try
            {
                using var cancel = new CancellationTokenSource();
                Task<RestorePointMount> mounting = Task.Run(() => RestorePointMount.Mount(_fixture.Repository, point, Path.Combine(_fixture.Root, "mnt"), cancel.Token));
                Assert.True(SpinWait.SpinUntil(() => File.Exists(started) || mounting.IsCompleted, TimeSpan.FromMinutes(2)), "the storage daemon never started");
                Assert.False(mounting.IsCompleted, "the mount finished before the stop");
                guestView = File.ReadAllLines(started).Single(line => line.Contains("\"mountpoint\"", StringComparison.Ordinal));
                guestView = System.Text.Json.JsonDocument.Parse(guestView).RootElement.GetProperty("mountpoint").GetString()!;
                Assert.NotEmpty(ProcessesNaming(guestView));

                cancel.Cancel();

                Assert.ThrowsAny<OperationCanceledException>(() => mounting.GetAwaiter().GetResult());
                Assert.Empty(ProcessesNaming(guestView));
                Assert.DoesNotContain(guestView, File.ReadAllText("/proc/self/mountinfo"), StringComparison.Ordinal);
                Assert.DoesNotContain(RestorePointMount.Find(), found => found.RestorePointId == point.Id);
            }
            finally
            {
                Environment.SetEnvironmentVariable(setting, null);
                foreach (int pid in guestView == null ? Enumerable.Empty<int>() : ProcessesNaming(guestView))
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
