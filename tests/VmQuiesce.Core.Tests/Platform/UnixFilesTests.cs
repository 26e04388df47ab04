using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class UnixFilesTests
    {
        [LinuxFact]
        public void DataExtentsSkipTheHolesOfASparseFile()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmq-sparse-" + Guid.NewGuid().ToString("N"));
            try
            {
                const long MiB = 1024 * 1024;
                using (var file = new FileStream(path, FileMode.CreateNew))
                {
                    file.SetLength(64 * MiB);
                    file.Position = 8 * MiB;
                    file.Write(new byte[] { 1, 2, 3 }, 0, 3);
                    file.Position = 40 * MiB;
                    file.Write(new byte[] { 4 }, 0, 1);
                }

                var extents = UnixFiles.TryGetDataExtents(path, 64 * MiB);

                Assert.NotNull(extents);
                Assert.Equal(2, extents!.Count);
                Assert.True(extents[0].Offset <= 8 * MiB && extents[0].End > 8 * MiB && extents[0].End < 40 * MiB);
                Assert.True(extents[1].Offset <= 40 * MiB && extents[1].End > 40 * MiB && extents[1].End <= 64 * MiB);
            }
            finally
            {
                File.Delete(path);
            }
        }

        [LinuxFact]
        public void AFileWithoutHolesIsOneExtentAndAnEmptyFileNone()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmq-dense-" + Guid.NewGuid().ToString("N"));
            try
            {
                File.WriteAllBytes(path, new byte[100_000]);
                var extents = UnixFiles.TryGetDataExtents(path, 100_000);
                Assert.Equal(100_000, Assert.Single(extents!).Length);
                File.WriteAllBytes(path, Array.Empty<byte>());
                Assert.Empty(UnixFiles.TryGetDataExtents(path, 0)!);
            }
            finally
            {
                File.Delete(path);
            }
        }

        [LinuxFact]
        public void LinkNewPublishesANameOnlyOnceEvenWhenTwoWritersRace()
        {
            string folder = Path.Combine(Path.GetTempPath(), "vmq-link-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            try
            {
                string final = Path.Combine(folder, "chunk");
                var writers = Enumerable.Range(0, 16).Select(i =>
                {
                    string temp = Path.Combine(folder, "temp" + i);
                    File.WriteAllText(temp, "writer " + i);
                    return temp;
                }).ToList();

                bool?[] results = writers.AsParallel().Select(temp => UnixFiles.TryLinkNew(temp, final)).ToArray();

                Assert.Equal(1, results.Count(r => r == true));
                Assert.Equal(15, results.Count(r => r == false));
                Assert.StartsWith("writer ", File.ReadAllText(final));
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        [LinuxFact]
        public void SyncingAFifoInAFoldersPlaceDoesNotWaitForAWriter()
        {
            string root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-sync-fifo-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                // Whoever can write a repository could put a FIFO where a folder was, between a rename into it and its sync.
                string points = Path.Combine(root, "points");
                Fifo.Make(points);

                Assert.True(Fifo.Within(points, () =>
                {
                    UnixFiles.SyncDirectory(points);
                    return true;
                }));
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }
        }

        [LinuxFact]
        public void TheDataOfAFifoInAnImagesPlaceIsNotLookedForByWaitingOnIt()
        {
            string root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-extents-fifo-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                string image = Path.Combine(root, "disk.img");
                Fifo.Make(image);

                Assert.Null(Fifo.Within(image, () => UnixFiles.TryGetDataExtents(image, 1 << 20)));
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }
        }

        [LinuxRootFact]
        public void A_folder_reached_through_a_link_another_user_may_replace_is_one_they_can_add_to()
        {
            string root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-add-to-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                // The images live in a folder only root may write; a user's folder holds a link to it, and one of root's does too.
                string images = Directory.CreateDirectory(Path.Combine(root, "images")).FullName;
                string home = Directory.CreateDirectory(Path.Combine(root, "home")).FullName;
                File.CreateSymbolicLink(Path.Combine(home, "vm"), images);
                File.CreateSymbolicLink(Path.Combine(root, "admins-link"), "images");
                const uint User = 4242;
                TestGuest.HostCommand.RunChecked("/bin/chown", new[] { "-h", "-R", User.ToString(System.Globalization.CultureInfo.InvariantCulture), home });

                Assert.Null(UnixFiles.DescribeOthersCanAddTo(images, null));
                Assert.Null(UnixFiles.DescribeOthersCanAddTo(Path.Combine(root, "admins-link"), null));
                // The user could point their link at a folder of theirs holding links of the names about to be made.
                Assert.Contains($"'{home}' belongs to user id {User}", UnixFiles.DescribeOthersCanAddTo(Path.Combine(home, "vm"), null), StringComparison.Ordinal);
                Assert.Null(UnixFiles.DescribeOthersCanAddTo(Path.Combine(home, "vm"), User));
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }
}
