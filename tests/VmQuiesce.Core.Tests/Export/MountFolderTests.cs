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
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(1000, 1)));
            string theirs = Path.Combine(fixture.Root, "theirs");
            Directory.CreateDirectory(theirs);
            TestGuest.HostCommand.RunChecked("chown", new[] { "65534:65534", theirs });
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
    }
}
