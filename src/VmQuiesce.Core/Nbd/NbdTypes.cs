using System;
using System.Collections.Generic;
using System.Globalization;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>What an export allows, as its server announced it (the transmission flags).</summary>
    [Flags]
    public enum NbdExportFlags : ushort
    {
        None = 0,
        HasFlags = 1 << 0,
        ReadOnly = 1 << 1,
        SendFlush = 1 << 2,
        SendForceUnitAccess = 1 << 3,
        Rotational = 1 << 4,
        SendTrim = 1 << 5,
        SendWriteZeroes = 1 << 6,
        SendDontFragment = 1 << 7,
        CanMultiConnection = 1 << 8,
        SendResize = 1 << 9,
        SendCache = 1 << 10,
        SendFastZero = 1 << 11,
    }

    /// <summary>
    /// The block size constraints of an export (NBD_INFO_BLOCK_SIZE): requests must be aligned to
    /// <see cref="Minimum"/>, are most efficient in multiples of <see cref="Preferred"/>, and a read may be
    /// at most <see cref="Maximum"/> bytes.
    /// </summary>
    public sealed class NbdBlockSizes
    {
        public NbdBlockSizes(uint minimum, uint preferred, uint maximum)
        {
            Minimum = minimum;
            Preferred = preferred;
            Maximum = maximum;
        }

        public uint Minimum { get; }

        public uint Preferred { get; }

        public uint Maximum { get; }

        public override string ToString() => string.Format(CultureInfo.InvariantCulture, "min {0}, preferred {1}, max {2}", Minimum, Preferred, Maximum);
    }

    /// <summary>
    /// One extent of a block status reply: <see cref="Flags"/> mean what the metadata context defines. A class for the
    /// reason <see cref="Sources.DiskRegion"/> is one.
    /// </summary>
    public sealed class NbdExtent : IEquatable<NbdExtent>
    {
        public NbdExtent(long offset, long length, uint flags)
        {
            Offset = offset;
            Length = length;
            Flags = flags;
        }

        public long Offset { get; }

        public long Length { get; }

        public long End => Offset + Length;

        public uint Flags { get; }

        public bool Equals(NbdExtent? other) => other != null && Offset == other.Offset && Length == other.Length && Flags == other.Flags;

        public override bool Equals(object? obj) => obj is NbdExtent other && Equals(other);

        public override int GetHashCode() => Offset.GetHashCode() ^ (Length.GetHashCode() * 31) ^ (int)Flags;

        public override string ToString() => string.Format(CultureInfo.InvariantCulture, "{0}+{1}:{2}", Offset, Length, Flags);
    }

    /// <summary>The flag values of the metadata contexts VmQuiesce reads.</summary>
    public static class NbdExtentFlags
    {
        /// <summary>base:allocation: not allocated (a hole); reads as zero only when <see cref="Zero"/> is set too.</summary>
        public const uint Hole = 1;

        /// <summary>base:allocation: reads as zeroes.</summary>
        public const uint Zero = 2;

        /// <summary>qemu:dirty-bitmap:&lt;name&gt;: written since the bitmap started recording.</summary>
        public const uint Dirty = 1;
    }

    /// <summary>
    /// The answer to one block status request: for each selected metadata context, consecutive extents from
    /// <see cref="Offset"/>. A server may describe less than was asked (each context its own prefix of the
    /// range); <see cref="CoveredLength"/> is what every context described, where the next request starts.
    /// </summary>
    public sealed class NbdBlockStatus
    {
        private readonly IReadOnlyDictionary<string, IReadOnlyList<NbdExtent>> _contexts;

        internal NbdBlockStatus(long offset, IReadOnlyDictionary<string, IReadOnlyList<NbdExtent>> contexts, long coveredLength)
        {
            Offset = offset;
            _contexts = contexts;
            CoveredLength = coveredLength;
        }

        public long Offset { get; }

        public long CoveredLength { get; }

        public IEnumerable<string> Contexts => _contexts.Keys;

        /// <summary>The extents of one selected context, e.g. "base:allocation" or "qemu:dirty-bitmap:backup-1".</summary>
        public IReadOnlyList<NbdExtent> this[string context] =>
            _contexts.TryGetValue(context, out IReadOnlyList<NbdExtent>? extents)
                ? extents
                : throw new ArgumentException($"The metadata context '{context}' was not selected on this connection; selected: {string.Join(", ", _contexts.Keys)}.", nameof(context));
    }

    /// <summary>How <see cref="NbdClient"/> connects, negotiates and bounds its requests.</summary>
    public sealed class NbdClientOptions
    {
        /// <summary>The export to open; empty selects the server's default export.</summary>
        public string ExportName { get; set; } = string.Empty;

        /// <summary>Metadata contexts to select for block status ("base:allocation", "qemu:dirty-bitmap:NAME"); each must exist.</summary>
        public IList<string> MetaContexts { get; } = new List<string>();

        /// <summary>Connecting plus the whole handshake.</summary>
        public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>
        /// Longest wait for one request's complete reply. A server that does not answer in time has stalled,
        /// and the connection fails (its other requests with it): requests cannot be withdrawn on the wire.
        /// </summary>
        public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(120);

        /// <summary>Requests sent and not yet answered, at most; QEMU's own client uses 16.</summary>
        public int MaxRequestsInFlight { get; set; } = 16;
    }
}
