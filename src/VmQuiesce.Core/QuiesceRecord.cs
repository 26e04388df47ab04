using System.Collections.Generic;

namespace VmQuiesce.Core
{
    /// <summary>What the quiesce step did: stamped on the restore point.</summary>
    public sealed class QuiesceRecord
    {
        /// <param name="frozenMeasure">How <paramref name="frozenMilliseconds"/> was measured, one of the <see cref="FrozenMeasure"/> names; null for the method's usual measure.</param>
        public QuiesceRecord(Consistency reached, IReadOnlyList<string> frozen, double frozenMilliseconds, string method, string? frozenMeasure = null)
        {
            ReachedValue = reached;
            Frozen = frozen;
            FrozenMilliseconds = frozenMilliseconds;
            Method = method;
            FrozenMeasure = frozenMeasure ?? Core.FrozenMeasure.UsualFor(method);
        }

        /// <summary>The consistency reached, by name: what scripts and ConvertTo-Json see (Windows PowerShell writes an enum as a number).</summary>
        public string Reached => ReachedValue.ToString();

        internal Consistency ReachedValue { get; }

        /// <summary>File systems or writers that were quiesced.</summary>
        public IReadOnlyList<string> Frozen { get; }

        /// <summary>How long the guest was quiesced, measured as <see cref="FrozenMeasure"/> says. None: 0.</summary>
        public double FrozenMilliseconds { get; }

        /// <summary>How <see cref="FrozenMilliseconds"/> was measured: one of the <see cref="Core.FrozenMeasure"/> names.</summary>
        public string FrozenMeasure { get; }

        /// <summary>One of the <see cref="QuiesceMethod"/> names.</summary>
        public string Method { get; }
    }

    /// <summary>How a guest was quiesced, as restore points record it.</summary>
    public static class QuiesceMethod
    {
        /// <summary>The QEMU guest agent froze the guest's file systems (VSS inside Windows guests).</summary>
        public const string GuestAgent = "GuestAgent";

        /// <summary>The host's VSS writers quiesced the VM; its files came from shadow copies.</summary>
        public const string HostVss = "HostVss";

        /// <summary>Nothing was quiesced.</summary>
        public const string None = "None";
    }

    /// <summary>The ways a frozen window is measured, as restore points record them.</summary>
    public static class FrozenMeasure
    {
        /// <summary>GuestAgent: from the freeze command returning to the thaw command returning.</summary>
        public const string FreezeToThaw = "FreezeToThaw";

        /// <summary>HostVss: from the VM writer entering FREEZE to leaving THAW, by VSS's diagnostic records.</summary>
        public const string VssWriterEvents = "VssWriterEvents";

        /// <summary>HostVss without a VM writer: from the volumes' writes being flushed and held to their release, by VSS's diagnostic records.</summary>
        public const string VssHoldWritesEvents = "VssHoldWritesEvents";

        /// <summary>HostVss when VSS's records could not tell: DoSnapshotSet's duration, an upper bound.</summary>
        public const string DoSnapshotSetDuration = "DoSnapshotSetDuration";

        /// <summary>Nothing was frozen.</summary>
        public const string None = "None";

        /// <summary>The measure of restore points written before the measure was recorded.</summary>
        internal static string UsualFor(string method) => method switch
        {
            QuiesceMethod.GuestAgent => FreezeToThaw,
            QuiesceMethod.HostVss => DoSnapshotSetDuration,
            _ => None,
        };
    }
}
