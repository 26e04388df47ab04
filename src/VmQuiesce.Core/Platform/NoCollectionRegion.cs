using System;
using System.Runtime;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// A stretch in which the runtime collects no garbage, as far as a budget of allocations goes (GC.TryStartNoGCRegion,
    /// asked without a full blocking collection: under a millisecond). The first collection of a fresh PowerShell is a
    /// full blocking one (20-30 ms on the bench's machine): inside a backup it held the freeze's preparation, and nothing
    /// kept it out of a frozen window. Past the budget, after a collection someone forces, or when the process is already
    /// in such a region, collections go on as usual.
    /// </summary>
    public sealed class NoCollectionRegion : IDisposable
    {
        private NoCollectionRegion()
        {
        }

        /// <summary>The region, or null when the runtime cannot give one now (one is already open, or the budget is too large).</summary>
        public static NoCollectionRegion? TryStart(long budget)
        {
            try
            {
                return GC.TryStartNoGCRegion(budget, disallowFullBlockingGC: true) ? new NoCollectionRegion() : null;
            }
            catch (InvalidOperationException)
            {
                // Another command of this process holds one.
                return null;
            }
            catch (ArgumentOutOfRangeException)
            {
                // More than this runtime's ephemeral space allows.
                return null;
            }
        }

        public void Dispose()
        {
            if (GCSettings.LatencyMode != GCLatencyMode.NoGCRegion)
            {
                // The budget ran out, or a collection was forced: the runtime has ended it.
                return;
            }

            try
            {
                GC.EndNoGCRegion();
            }
            catch (InvalidOperationException)
            {
                // Ended by a collection between the look and the call.
            }
        }
    }
}
