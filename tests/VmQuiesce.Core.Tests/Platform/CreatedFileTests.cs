using System;
using System.IO;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class CreatedFileTests
    {
        [LinuxFact]
        public void ClosingALockedFileUnlocksItEvenWhileAnotherDescriptorSharesIt()
        {
            string root = Path.Combine(Path.GetTempPath(), "vmq-created-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(root);
            int shared = -1;
            try
            {
                using (TrustedFolder folder = TrustedFolder.Open(root, owner: null, create: false))
                {
                    CreatedFile created = folder.CreateNew("a.img", direct: false);
                    Assert.True(created.TryLock());
                    // What a child forked by another thread holds until its exec: the same open file description.
                    shared = dup(int.Parse(Path.GetFileName(created.DescriptorPath!)));
                    Assert.True(shared >= 0);
                    created.Dispose();
                }

                // FileStream takes a shared flock, which the writer's exclusive one would refuse.
                Assert.Empty(File.ReadAllBytes(Path.Combine(root, "a.img")));
            }
            finally
            {
                if (shared >= 0)
                {
                    Libc.close(shared);
                }

                Directory.Delete(root, recursive: true);
            }
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int dup(int fd);
    }
}
