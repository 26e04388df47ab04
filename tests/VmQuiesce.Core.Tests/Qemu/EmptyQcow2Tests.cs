using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Nbd;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// The scratch image a change-tracked backup writes itself (<see cref="QemuImage.CreateEmptyQcow2"/>) against what
    /// `qemu-img create -f qcow2` writes, and QEMU's own checks and writes on it.
    /// </summary>
    public sealed class EmptyQcow2Tests
    {
        private const int Cluster = 64 * 1024;

        [NbdToolFact("qemu-img")]
        public void IsTheImageQemuImgCreates()
        {
            using var folder = new TempFolder();
            // Sector-sized, odd (rounded up to a sector), the bench's 4 GiB, and 5 TiB, whose L1 table takes two clusters.
            foreach (long size in new[] { 512L, 64L << 20, (4L << 30) + 513, 4L << 30, 5L << 40 })
            {
                string ours = folder.File($"ours-{size}.qcow2");
                string theirs = folder.File($"theirs-{size}.qcow2");
                QemuImage.CreateEmptyQcow2(ours, size);
                NbdTools.Run("qemu-img", "create", "-q", "-f", "qcow2", theirs, size.ToString(System.Globalization.CultureInfo.InvariantCulture));

                // qemu-img writes the same header (its length says 112 bytes), then an optional table of feature names
                // this image leaves out; refcount table and block and the file's length are the same.
                byte[] ourBytes = File.ReadAllBytes(ours);
                byte[] theirBytes = File.ReadAllBytes(theirs);
                Assert.Equal(theirBytes.Length, ourBytes.Length);
                AssertBytes.Equal(theirBytes.AsSpan(0, 112), ourBytes.AsSpan(0, 112));
                AssertBytes.Equal(theirBytes.AsSpan(Cluster, Cluster), ourBytes.AsSpan(Cluster, Cluster));
                AssertBytes.Equal(theirBytes.AsSpan(2 * Cluster), ourBytes.AsSpan(2 * Cluster));

                JsonObject info = JsonText.ParseObject(NbdTools.Run("qemu-img", "info", "--output=json", "-f", "qcow2", ours));
                Assert.Equal((size + 511) / 512 * 512, info.GetInt64("virtual-size"));
                Assert.Equal(Cluster, info.GetInt64("cluster-size"));
                Assert.Equal("1.1", info.GetObject("format-specific").GetObject("data").GetString("compat"));
                Assert.Equal(0, NbdTools.TryRun("qemu-img", "check", "-f", "qcow2", ours).ExitCode);
            }
        }

        [NbdToolFact("qemu-img", "qemu-io")]
        public void QemuWritesAndReadsIt()
        {
            using var folder = new TempFolder();
            string image = folder.File("scratch.qcow2");
            QemuImage.CreateEmptyQcow2(image, 1L << 30);

            NbdTools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 700M 192k", "-c", "write -P 0x11 0 4k", image);

            Assert.Equal(0, NbdTools.TryRun("qemu-img", "check", "-f", "qcow2", image).ExitCode);
            string read = NbdTools.Run("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 700M 192k", "-c", "read -P 0x11 0 4k", "-c", "read -P 0 4k 60k", image);
            Assert.DoesNotContain("Pattern verification failed", read);
        }

        [UnixFact]
        public void RefusesAPathThatExistsAndLeavesItAsItWas()
        {
            using var folder = new TempFolder();
            string existing = folder.File("existing.qcow2");
            File.WriteAllText(existing, "someone else's");
            string target = folder.File("target");
            File.WriteAllText(target, "the link's target");
            string link = folder.File("link.qcow2");
            File.CreateSymbolicLink(link, target);

            Assert.ThrowsAny<IOException>(() => QemuImage.CreateEmptyQcow2(existing, 1L << 20));
            Assert.ThrowsAny<IOException>(() => QemuImage.CreateEmptyQcow2(link, 1L << 20));

            Assert.Equal("someone else's", File.ReadAllText(existing));
            Assert.Equal("the link's target", File.ReadAllText(target));
        }

        [Fact]
        public void RefusesASizeQcow2CannotHoldBeforeCreatingAnything()
        {
            using var folder = new TempFolder();
            string image = folder.File("scratch.qcow2");
            foreach (long size in new[] { 0L, -512L, long.MaxValue })
            {
                ArgumentOutOfRangeException refused = Assert.Throws<ArgumentOutOfRangeException>(() => QemuImage.CreateEmptyQcow2(image, size));
                Assert.Contains("Expected an image size", refused.Message);
            }

            Assert.Empty(Directory.EnumerateFileSystemEntries(folder.Path));
        }
    }
}
