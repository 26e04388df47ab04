using System.IO;
using System.Threading;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    public sealed class MountFolderTests
    {
        [LinuxRootFact]
        public void A_folder_another_user_owns_or_a_link_is_refused_before_anything_is_served()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = BackUpOne(fixture);
            string theirs = Folder(Path.Combine(fixture.Root, "theirs"), "chown", "65534:65534");
            string link = Path.Combine(fixture.Root, "link");
            Directory.CreateDirectory(Path.Combine(fixture.Root, "target"));
            File.CreateSymbolicLink(link, Path.Combine(fixture.Root, "target"));

            foreach (string folder in new[] { theirs, link })
            {
                VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(fixture.Repository, point, folder, CancellationToken.None));

                Assert.Equal("MountFolderUnsafe", e.ErrorId);
                Assert.Contains(folder, e.Message, System.StringComparison.Ordinal);
            }

            Assert.DoesNotContain(RestorePointMount.Find(), mount => mount.Path == theirs || mount.Path == link);
        }

        [LinuxRootFact]
        public void A_folder_another_user_could_rename_or_replace_is_refused_and_nothing_is_made()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = BackUpOne(fixture);
            string open = Folder(Path.Combine(fixture.Root, "open"), "chmod", "0777");
            string theirs = Folder(Path.Combine(fixture.Root, "theirs"), "chown", "65534:65534");
            string sticky = Path.Combine(fixture.Root, "sticky");
            Folder(Path.Combine(sticky, "planted"), "chown", "65534:65534");
            TestGuest.HostCommand.RunChecked("chmod", new[] { "1777", sticky });

            // Each parent lets another user move the mount folder (or one on the way) away and put theirs in its place.
            foreach ((string folder, string named) in new[]
            {
                (Path.Combine(open, "mnt"), "'" + open + "' has mode 0777"),
                (Path.Combine(open, "new", "mnt"), "'" + open + "' has mode 0777"),
                (Path.Combine(theirs, "mnt"), "'" + theirs + "' belongs to user id 65534"),
                (Path.Combine(sticky, "planted", "mnt"), "'" + sticky + "' has mode 1777"),
            })
            {
                VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(fixture.Repository, point, folder, CancellationToken.None));

                Assert.Equal("MountFolderUnsafe", e.ErrorId);
                Assert.Contains(named, e.Message, System.StringComparison.Ordinal);
                Assert.False(Directory.Exists(folder), folder);
            }

            Assert.False(Directory.Exists(Path.Combine(open, "new")));
        }

        [LinuxRootFact]
        public void A_point_that_cannot_be_served_leaves_no_folder()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = BackUpOne(fixture);
            BackupRepository otherChunkSize = BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "other"), RepositoryFixture.ChunkSize * 2);
            string folder = Path.Combine(fixture.Root, "mnt");

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(otherChunkSize, point, folder, CancellationToken.None));

            Assert.Equal("RestorePointChunkSizeMismatch", e.ErrorId);
            Assert.False(Directory.Exists(folder));
        }

        [LinuxRootFact]
        public void Links_on_the_way_are_resolved_and_the_real_path_is_checked()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = BackUpOne(fixture);
            string open = Folder(Path.Combine(fixture.Root, "open"), "chmod", "0777");
            string alias = Path.Combine(fixture.Root, "alias");
            File.CreateSymbolicLink(alias, open);

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => RestorePointMount.Mount(fixture.Repository, point, Path.Combine(alias, "mnt"), CancellationToken.None));

            Assert.Equal("MountFolderUnsafe", e.ErrorId);
            Assert.Contains("'" + open + "' has mode 0777", e.Message, System.StringComparison.Ordinal);
        }

        private static RestorePoint BackUpOne(RepositoryFixture fixture) => fixture.BackUp("vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(1000, 1)));

        /// <summary>Makes the folder <paramref name="path"/> and runs <paramref name="command"/> (chmod or chown) with <paramref name="argument"/> on it.</summary>
        private static string Folder(string path, string command, string argument)
        {
            Directory.CreateDirectory(path);
            TestGuest.HostCommand.RunChecked(command, new[] { argument, path });
            return path;
        }
    }
}
