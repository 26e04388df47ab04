using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>One REG_BINARY value under VSS's diagnostic key, as read from the registry.</summary>
    internal sealed class VssDiagnosticValue
    {
        public VssDiagnosticValue(string source, string name, byte[] data)
        {
            Source = source;
            Name = name;
            Data = data;
        }

        /// <summary>The subkey: a writer's name ("VMware VSS Writer") or a volume's flush-and-hold ("Lovelace(C:)").</summary>
        public string Source { get; }

        /// <summary>The operation and phase, such as "FREEZE (Enter)".</summary>
        public string Name { get; }

        public byte[] Data { get; }
    }

    /// <summary>
    /// A VSS diagnostic record. VSS keeps the latest record of each operation and phase of each writer and
    /// volume under HKLM\SYSTEM\CurrentControlSet\Services\VSS\Diag (on by default; the key's default value
    /// "Disabled" turns it off). Each value holds: size (4 bytes), reserved (4), the time as a UTC FILETIME (8),
    /// process id (4), thread id (4), event id (4), flags (4, bit 0 set on entering the operation), writer
    /// state (4), HRESULT (4), the snapshot set id (16), then two reserved pointers (72 bytes in all from a
    /// 64-bit process, 64 from a 32-bit one).
    /// </summary>
    internal sealed class VssDiagnosticEvent
    {
        public const string Freeze = "FREEZE";
        public const string Thaw = "THAW";
        public const string FlushAndHold = "IOCTL_FLUSH_AND_HOLD";
        public const string Release = "IOCTL_RELEASE";

        /// <summary>Where VSS keeps the records, under HKEY_LOCAL_MACHINE.</summary>
        public const string KeyPath = @"SYSTEM\CurrentControlSet\Services\VSS\Diag";

        /// <summary>The subkey prefix of the records VSS writes around each volume's flush-and-hold.</summary>
        public const string VolumeSourcePrefix = "Lovelace";

        private const int RecordSize32 = 64;
        private const int RecordSize64 = 72;
        private const int EnterFlag = 0x1;
        private const string EnterSuffix = " (Enter)";
        private const string LeaveSuffix = " (Leave)";

        // FILETIMEs outside these years are not timestamps of a backup taken by this program.
        private static readonly DateTime Earliest = new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        private static readonly DateTime Latest = new DateTime(2200, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        private VssDiagnosticEvent(string source, string operation, bool isEnter, DateTime timeUtc, int processId, Guid snapshotSetId)
        {
            Source = source;
            Operation = operation;
            IsEnter = isEnter;
            TimeUtc = timeUtc;
            ProcessId = processId;
            SnapshotSetId = snapshotSetId;
        }

        public string Source { get; }

        /// <summary>The operation's name without the phase: FREEZE, THAW, IOCTL_FLUSH_AND_HOLD, ...</summary>
        public string Operation { get; }

        public bool IsEnter { get; }

        public DateTime TimeUtc { get; }

        public int ProcessId { get; }

        /// <summary>The snapshot set the event belongs to; empty when the recorder did not know it.</summary>
        public Guid SnapshotSetId { get; }

        /// <summary>Recorded around a volume's flush-and-hold rather than by a writer.</summary>
        public bool IsVolumeRecord => Source.StartsWith(VolumeSourcePrefix, StringComparison.OrdinalIgnoreCase);

        /// <summary>
        /// The event in <paramref name="value"/>, or null with <paramref name="problem"/> saying why the bytes are
        /// not a record this program understands. The operation comes from the value's name, whose numbering is
        /// not stable across Windows versions; the phase from the name's suffix, or else from the flags.
        /// </summary>
        public static VssDiagnosticEvent? Parse(VssDiagnosticValue value, out string? problem)
        {
            byte[] data = value.Data;
            int declared = data.Length >= 4 ? BitConverter.ToInt32(data, 0) : -1;
            if ((data.Length != RecordSize32 && data.Length != RecordSize64) || declared != data.Length || BitConverter.ToInt32(data, 4) != 0)
            {
                problem = $"'{value.Source}\\{value.Name}' holds {data.Length} bytes declaring {declared}; a {RecordSize64}- or {RecordSize32}-byte VSS diagnostic record was expected.";
                return null;
            }

            long fileTime = BitConverter.ToInt64(data, 8);
            DateTime time = fileTime > 0 && fileTime < DateTime.MaxValue.ToFileTimeUtc() ? DateTime.FromFileTimeUtc(fileTime) : DateTime.MinValue;
            if (time < Earliest || time >= Latest)
            {
                problem = $"'{value.Source}\\{value.Name}' holds the time {fileTime.ToString(CultureInfo.InvariantCulture)}, which is not a FILETIME of this century.";
                return null;
            }

            string name = value.Name;
            bool isEnter = (BitConverter.ToInt32(data, 28) & EnterFlag) != 0;
            if (name.EndsWith(EnterSuffix, StringComparison.Ordinal))
            {
                isEnter = true;
                name = name.Substring(0, name.Length - EnterSuffix.Length);
            }
            else if (name.EndsWith(LeaveSuffix, StringComparison.Ordinal))
            {
                isEnter = false;
                name = name.Substring(0, name.Length - LeaveSuffix.Length);
            }

            var setIdBytes = new byte[16];
            Array.Copy(data, 40, setIdBytes, 0, 16);
            problem = null;
            return new VssDiagnosticEvent(value.Source, name, isEnter, time, BitConverter.ToInt32(data, 16), new Guid(setIdBytes));
        }
    }

    /// <summary>
    /// How long the guest was held, as VSS's own diagnostic records show it: from the VM writer entering its
    /// freeze to leaving its thaw; without a writer, from the first volume's flush-and-hold to the last release
    /// of writes. When the records cannot tell, DoSnapshotSet's duration (which holds both) stands, as an
    /// upper bound, with the reason.
    /// </summary>
    internal sealed class VssFrozenWindow
    {
        /// <summary>
        /// GetSystemTimeAsFileTime, which stamps the records, can lag the precise clock this program reads by
        /// one timer tick (up to 15.6 ms); a record this far outside DoSnapshotSet is still counted as inside.
        /// </summary>
        internal static readonly TimeSpan ClockSlack = TimeSpan.FromMilliseconds(50);

        private VssFrozenWindow(double milliseconds, string measure, string explanation)
        {
            Milliseconds = milliseconds;
            Measure = measure;
            Explanation = explanation;
        }

        public double Milliseconds { get; }

        /// <summary>One of the <see cref="FrozenMeasure"/> names.</summary>
        public string Measure { get; }

        /// <summary>What the figure is, or why the records could not give it, for verbose output.</summary>
        public string Explanation { get; }

        /// <param name="values">Everything under VSS's diagnostic key, read once DoSnapshotSet had returned.</param>
        /// <param name="snapshotSetId">This backup's snapshot set.</param>
        /// <param name="writers">The names of the writers whose components were selected; empty for a plain shadow copy.</param>
        /// <param name="started">The UTC time DoSnapshotSet was called.</param>
        /// <param name="read">The UTC time <paramref name="values"/> were read.</param>
        /// <param name="snapshotDuration">DoSnapshotSet's own duration, the fallback.</param>
        public static VssFrozenWindow FromRecords(IReadOnlyList<VssDiagnosticValue> values, Guid snapshotSetId, IReadOnlyCollection<string> writers,
            DateTime started, DateTime read, TimeSpan snapshotDuration)
        {
            var problems = new List<string>();
            var ours = new List<VssDiagnosticEvent>();
            foreach (VssDiagnosticValue value in values)
            {
                VssDiagnosticEvent? parsed = VssDiagnosticEvent.Parse(value, out string? problem);
                if (parsed == null)
                {
                    problems.Add(problem!);
                }
                else if (BelongsToThisSet(parsed, snapshotSetId, started, read))
                {
                    ours.Add(parsed);
                }
            }

            // With a VM writer, its freeze; without one, the longest of the volumes' holds on writes.
            bool byWriter = writers.Count > 0;
            string measure = byWriter ? FrozenMeasure.VssWriterEvents : FrozenMeasure.VssHoldWritesEvents;
            (string start, string end) = byWriter ? (VssDiagnosticEvent.Freeze, VssDiagnosticEvent.Thaw) : (VssDiagnosticEvent.FlushAndHold, VssDiagnosticEvent.Release);
            IEnumerable<string> sources = byWriter
                ? writers
                : ours.Where(e => e.IsVolumeRecord).Select(e => e.Source).Distinct(StringComparer.OrdinalIgnoreCase).DefaultIfEmpty(VssDiagnosticEvent.VolumeSourcePrefix);
            TimeSpan? window = Longest(sources.Select(source => Span(
                ours.Where(e => string.Equals(e.Source, source, StringComparison.OrdinalIgnoreCase)).ToList(),
                start, end, byWriter ? $"the writer '{source}'" : $"the volume records '{source}'")), out string? why);

            if (window is TimeSpan measured)
            {
                string what = measure == FrozenMeasure.VssWriterEvents ? "the VM writer entering FREEZE to leaving THAW" : "the volumes' writes being flushed and held to released";
                return new VssFrozenWindow(measured.TotalMilliseconds, measure,
                    $"Frozen for {measured.TotalMilliseconds:F1} ms by VSS's diagnostic records ({what}); DoSnapshotSet took {snapshotDuration.TotalMilliseconds:F1} ms.");
            }

            string unreadable = problems.Count == 0 ? string.Empty : $" {problems.Count} value(s) were not VSS diagnostic records, such as {problems[0]}";
            return new VssFrozenWindow(snapshotDuration.TotalMilliseconds, FrozenMeasure.DoSnapshotSetDuration,
                $"The frozen window is DoSnapshotSet's {snapshotDuration.TotalMilliseconds:F1} ms, an upper bound: VSS's diagnostic records (HKLM\\{VssDiagnosticEvent.KeyPath}) {why}.{unreadable}");
        }

        /// <summary>
        /// Stamped between DoSnapshotSet's call and the reading, and of this set where the record names one.
        /// A volume record's id field holds the flush-and-hold's instance, not known to be the set's id; for
        /// those the time alone decides, which is enough because VSS makes one snapshot set at a time.
        /// </summary>
        private static bool BelongsToThisSet(VssDiagnosticEvent record, Guid snapshotSetId, DateTime started, DateTime read)
        {
            bool inTime = record.TimeUtc >= started - ClockSlack && record.TimeUtc <= read + ClockSlack;
            return inTime && (record.IsVolumeRecord || record.SnapshotSetId == snapshotSetId || record.SnapshotSetId == Guid.Empty);
        }

        /// <summary>From entering <paramref name="start"/> to leaving <paramref name="end"/>, or null with the reason.</summary>
        private static (TimeSpan? Span, string? Why) Span(IReadOnlyList<VssDiagnosticEvent> records, string start, string end, string whose)
        {
            VssDiagnosticEvent? entered = records.Where(e => e.Operation == start && e.IsEnter).OrderBy(e => e.TimeUtc).FirstOrDefault();
            VssDiagnosticEvent? left = records.Where(e => e.Operation == end && !e.IsEnter).OrderBy(e => e.TimeUtc).LastOrDefault();
            if (entered == null || left == null)
            {
                string missing = entered == null ? $"{start} (Enter)" : $"{end} (Leave)";
                return (null, $"hold no {missing} of this snapshot set for {whose}");
            }

            if (left.TimeUtc < entered.TimeUtc)
            {
                return (null, $"show {whose} leaving {end} at {left.TimeUtc:HH:mm:ss.fff} before entering {start} at {entered.TimeUtc:HH:mm:ss.fff}");
            }

            return (left.TimeUtc - entered.TimeUtc, null);
        }

        private static TimeSpan? Longest(IEnumerable<(TimeSpan? Span, string? Why)> spans, out string? why)
        {
            TimeSpan? longest = null;
            why = null;
            foreach ((TimeSpan? span, string? reason) in spans)
            {
                if (span == null)
                {
                    // One writer or volume the records cannot time makes the whole figure unknowable.
                    why = reason;
                    return null;
                }

                longest = longest == null || span > longest ? span : longest;
            }

            return longest;
        }
    }
}
