using System;
using System.IO;
using System.Linq;
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
        /// <summary>
        /// Runs <paramref name="script"/> (bash) in a new empty folder, makes an ext4 image of <paramref name="size"/> from it,
        /// runs <paramref name="spoil"/> (bash, the image as $1) on it when given, and backs it up.
        /// </summary>
        public static RestorePoint BackUp(RepositoryFixture fixture, string script, string size = "64M", string? spoil = null)
        {
            string name = Guid.NewGuid().ToString("N").Substring(0, 8);
            string content = Path.Combine(fixture.Root, "content-" + name);
            Directory.CreateDirectory(content);
            HostCommand.RunChecked("bash", new[] { "-euc", "cd \"$1\"\n" + script, "_", content });
            string image = Path.Combine(fixture.Root, "disk-" + name + ".raw");
            HostCommand.RunChecked("truncate", new[] { "-s", size, image });
            HostCommand.RunChecked("mkfs.ext4", new[] { "-q", "-F", "-b", "4096", "-d", content, image });
            RemoveTree(content);
            if (spoil != null)
            {
                HostCommand.RunChecked("bash", new[] { "-euc", spoil, "_", image });
            }

            return new BackupEngine(fixture.Repository, workers: 2).Run(
                new ViewSource(new StableFilesView(new[] { new ViewFile("disk.raw", image, image) { Format = DiskImageFormat.Raw } })),
                new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;
        }

        /// <summary>Removes <paramref name="folder"/> and all below it, also names .NET cannot spell and paths too deep to name (rm walks by descriptors).</summary>
        public static void RemoveTree(string folder) => HostCommand.RunChecked("rm", new[] { "-rf", "--one-file-system", folder });

        /// <summary>
        /// Damages, in <paramref name="fixture"/>'s repository, the chunk of <paramref name="point"/> (made by <see cref="BackUp"/>)
        /// that holds the block at <paramref name="offset"/> of <paramref name="file"/>, a path in the guest's file system (far
        /// enough in, the chunk holds the file's data alone); returns the chunk's id.
        /// </summary>
        public static string DamageChunkOf(RepositoryFixture fixture, RestorePoint point, string file, long offset)
        {
            string block = HostCommand.RunChecked("debugfs", new[] { "-R", $"bmap {file} {offset / 4096}", point.Files[0].OriginalPath }).StandardOutput.Trim();
            string chunk = point.Files[0].Chunks[(int)(long.Parse(block, System.Globalization.CultureInfo.InvariantCulture) * 4096 / point.ChunkSize)]!;
            string stored = fixture.ChunkFiles().Single(path => Path.GetFileName(path) == chunk);
            byte[] bytes = File.ReadAllBytes(stored);
            bytes[^1] ^= 0xFF;
            File.WriteAllBytes(stored, bytes);
            return chunk;
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
