using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>What a refused Windows reparse point is called in messages: scripts and the help match on these words.</summary>
    public sealed class ReparsePointsTests
    {
        [Theory]
        [InlineData(0xA0000003u, "a junction or volume mount point (reparse tag 0xA0000003)")]
        [InlineData(0xA000000Cu, "a symbolic link (reparse tag 0xA000000C)")]
        [InlineData(0xA000001Du, "a WSL symbolic link (reparse tag 0xA000001D)")]
        [InlineData(0xA0000027u, "a link of another kind (a name surrogate) (reparse tag 0xA0000027)")]
        [InlineData(0x2000ABCDu, "a link of another kind (a name surrogate) (reparse tag 0x2000ABCD)")]
        public void ARedirectingReparsePointIsNamedByItsKindAndTag(uint tag, string expected) =>
            Assert.Equal(expected, ReparsePoints.Describe(tag));

        [Theory]
        [InlineData(0xA000000Cu, true)]
        [InlineData(0x2000ABCDu, true)]
        [InlineData(0x80000013u, false)] // IO_REPARSE_TAG_DEDUP
        [InlineData(0x9000001Au, false)] // IO_REPARSE_TAG_CLOUD
        public void OnlyANameSurrogateRedirects(uint tag, bool redirects)
        {
            Assert.Equal(redirects, ReparsePoints.RedirectsName(ReparsePoints.ReparsePointAttribute, tag));
            Assert.False(ReparsePoints.RedirectsName(0, tag));
        }
    }
}
