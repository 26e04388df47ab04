using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    public class HostPlatformTests
    {
        [Fact]
        public void ExactlyOneKnownPlatformIsReported()
        {
            int known = (HostPlatform.IsWindows ? 1 : 0) + (HostPlatform.IsLinux ? 1 : 0) + (HostPlatform.IsMacOS ? 1 : 0);
            Assert.Equal(1, known);
        }
    }
}
