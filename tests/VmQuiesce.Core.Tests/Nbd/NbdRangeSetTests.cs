using VmQuiesce.Core.Nbd;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    public class NbdRangeSetTests
    {
        [Fact]
        public void RangesInAnyOrderAreTakenOnceAndMergeWhereTheyTouchAndAnOverlapIsRefused()
        {
            var set = new NbdRangeSet();

            Assert.True(set.TryAdd(100, 10));
            Assert.True(set.TryAdd(0, 10));
            Assert.True(set.TryAdd(50, 10));
            Assert.True(set.TryAdd(10, 40)); // joins 0-10 and 50-60 into 0-60
            Assert.True(set.TryAdd(60, 40)); // joins 0-60 and 100-110 into one range

            Assert.Equal(110, set.Total);
            foreach ((long start, long length) in new (long, long)[] { (0, 1), (109, 5), (55, 1), (105, 1), (-5, 6) })
            {
                Assert.False(set.TryAdd(start, length), $"{start}+{length} overlaps what was added");
            }

            Assert.True(set.TryAdd(110, 5));
            Assert.True(set.TryAdd(200, 1));
            Assert.Equal(116, set.Total);
        }

        [Fact]
        public void PiecesThatNeverTouchAreCountedUpToTheLimitAndOneMoreIsAProtocolViolation()
        {
            var set = new NbdRangeSet();
            for (int i = NbdRangeSet.MaxRanges - 1; i >= 0; i--)
            {
                Assert.True(set.TryAdd(i * 2L, 1));
            }

            Assert.Equal(NbdRangeSet.MaxRanges, set.Total);
            Assert.False(set.TryAdd(4, 1));
            Assert.True(set.TryAdd(1, 1)); // fills a gap: the count of ranges drops, so more fit
            Assert.True(set.TryAdd(NbdRangeSet.MaxRanges * 2L, 1));
            Assert.Throws<NbdProtocolViolation>(() => set.TryAdd(NbdRangeSet.MaxRanges * 2L + 5, 1));
        }
    }
}
