using System;
using System.Runtime;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>A no-collection region is the whole process's: one test at a time, beside no other.</summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class NoCollectionRegionCollection
    {
        public const string Name = "no-collection region";
    }

    [Collection(NoCollectionRegionCollection.Name)]
    public sealed class NoCollectionRegionTests
    {
        private const long Budget = 16L * 1024 * 1024;

        [Fact]
        public void A_region_holds_collections_off_until_it_is_disposed_and_one_at_a_time()
        {
            int collections = GC.CollectionCount(0);
            using (NoCollectionRegion? region = NoCollectionRegion.TryStart(Budget))
            {
                Assert.NotNull(region);
                Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
                int started = GC.CollectionCount(0);
                GC.KeepAlive(new byte[1024 * 1024]);
                Assert.Equal(started, GC.CollectionCount(0));
                Assert.Null(NoCollectionRegion.TryStart(Budget));
            }

            Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            Assert.True(GC.CollectionCount(0) >= collections);
        }

        [Fact]
        public void A_region_a_forced_collection_or_its_budget_ended_is_disposed_quietly()
        {
            NoCollectionRegion forced = NoCollectionRegion.TryStart(Budget)!;
            GC.Collect();
            Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            forced.Dispose();

            NoCollectionRegion spent = NoCollectionRegion.TryStart(Budget)!;
            for (int i = 0; i < 40; i++)
            {
                GC.KeepAlive(new byte[1024 * 1024]);
            }

            spent.Dispose();
            Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
        }

        [Fact]
        public void A_budget_beyond_what_the_runtime_can_hold_gives_no_region()
        {
            Assert.Null(NoCollectionRegion.TryStart(long.MaxValue / 2));
            Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
        }
    }
}
