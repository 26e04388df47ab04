using System;
using System.IO;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Backup;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// A restore point of one raw disk holding an ext4 file system that mkfs.ext4 -d made from a folder a shell script
    /// filled as root: whatever a hostile guest can leave in its file system (links, devices, FIFOs, owners, modes,
    /// holes, names that are not UTF-8) without booting a guest.
    /// </summary>
    internal static class CraftedGuestDisk
    {
        /// <summary>Runs <paramref name="script"/> (bash) in a new empty folder, makes an ext4 image of <paramref name="size"/> from it and backs it up.</summary>
        public static RestorePoint BackUp(RepositoryFixture fixture, string script, string size = "64M")
        {
            string name = Guid.NewGuid().ToString("N").Substring(0, 8);
            string content = Path.Combine(fixture.Root, "content-" + name);
            Directory.CreateDirectory(content);
            HostCommand.RunChecked("bash", new[] { "-euc", "cd \"$1\"\n" + script, "_", content });
            string image = Path.Combine(fixture.Root, "disk-" + name + ".raw");
            HostCommand.RunChecked("truncate", new[] { "-s", size, image });
            HostCommand.RunChecked("mkfs.ext4", new[] { "-q", "-F", "-b", "4096", "-d", content, image });
            return new BackupEngine(fixture.Repository, workers: 2).Run(
                new ViewSource(new StableFilesView(new[] { new ViewFile("disk.raw", image, image) { Format = DiskImageFormat.Raw } })),
                new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;
        }
    }

    /// <summary>A fact that mounts a restore point (Mount-VmBackup, Restore-VmBackupItem): Linux, root, qemu-storage-daemon.</summary>
    public sealed class MountFactAttribute : FactAttribute
    {
        public MountFactAttribute()
        {
            Skip = !HostPlatform.IsLinux ? $"Mounting a restore point needs Linux (this is {HostPlatform.Name})."
                : Libc.geteuid() != 0 ? "Mount-VmBackup needs root (loop devices and mount); this test runs as another user."
                : VmQuiesce.Core.Tests.Nbd.NbdTools.MissingReason(new[] { "qemu-storage-daemon" });
        }
    }
}
