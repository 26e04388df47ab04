using System.IO;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class ScratchFolderTests
    {
        [Fact]
        public void AFolderDeletedWithTheNamesItHoldsIsGone()
        {
            ScratchFolder folder = ScratchFolder.Create("vmq-test");
            File.WriteAllText(Path.Combine(folder.Path, "nbd.sock"), "socket");

            folder.DeleteWith("nbd.sock", "never-made");

            Assert.False(Directory.Exists(folder.Path));
        }

        [Fact]
        public void AFolderHoldingMoreThanItsNamesIsDeletedWithAllOfIt()
        {
            ScratchFolder folder = ScratchFolder.Create("vmq-test");
            File.WriteAllText(Path.Combine(folder.Path, "nbd.sock"), "socket");
            Directory.CreateDirectory(Path.Combine(folder.Path, "more"));
            File.WriteAllText(Path.Combine(folder.Path, "more", "file"), "content");

            folder.DeleteWith("nbd.sock");

            Assert.False(Directory.Exists(folder.Path));
        }
    }
}
