using System;
using System.Collections.Generic;
using System.Linq;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Repository
{
    /// <summary>How a disk of a restore point was read.</summary>
    public enum ChangeTrackingMode
    {
        /// <summary>Only what the checkpoint said changed was read; the rest is the previous point's chunks.</summary>
        Incremental,

        /// <summary>The whole disk was read (only new chunks were stored); <see cref="ChangeTrackingRecord.Reason"/> says why.</summary>
        Full,
    }

    /// <summary>
    /// A disk's checkpoint as a restore point records it: which dirty bitmap now tracks the disk from this point on,
    /// the disk's identity and size then, and how this point's content was read (incremental, or full with the reason).
    /// </summary>
    public sealed class ChangeTrackingRecord
    {
        /// <summary>Why a disk was read in full; stable names, also used in warnings.</summary>
        public static class Reasons
        {
            public const string NoCheckpoint = "NoCheckpoint";
            public const string BitmapMissing = "BitmapMissing";
            public const string BitmapInconsistent = "BitmapInconsistent";
            public const string BitmapNotUsable = "BitmapNotUsable";
            public const string DiskResized = "DiskResized";
            public const string DiskReplaced = "DiskReplaced";
            public const string PreviousPointMissing = "PreviousPointMissing";
            public const string PreviousPointDamaged = "PreviousPointDamaged";
            public const string HostRecordMissing = "HostRecordMissing";
            public const string HostRecordInvalid = "HostRecordInvalid";
            public const string HostRecordMismatch = "HostRecordMismatch";
            public const string VerifyFailed = "VerifyFailed";
        }

        public ChangeTrackingRecord(string disk, string image, long virtualSize, string bitmap, bool persistent)
        {
            Disk = disk;
            Image = image;
            VirtualSize = virtualSize;
            Bitmap = bitmap;
            Persistent = persistent;
        }

        /// <summary>The disk as the hypervisor names it (QEMU: the drive id or node name).</summary>
        public string Disk { get; }

        /// <summary>The disk's image file at the point in time: a different file is a replaced disk.</summary>
        public string Image { get; }

        public long VirtualSize { get; }

        /// <summary>The dirty bitmap that records the guest's writes from this point on: the next backup's checkpoint.</summary>
        public string Bitmap { get; }

        /// <summary>False where the bitmap lives only as long as the VM's process (raw disks, qcow2 v2).</summary>
        public bool Persistent { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="ModeValue"/> is the typed value.</summary>
        public string Mode => ModeValue.ToString();

        internal ChangeTrackingMode ModeValue { get; init; } = ChangeTrackingMode.Full;

        /// <summary>For a full read: one of <see cref="Reasons"/>; null for an incremental one.</summary>
        public string? Reason { get; init; }

        /// <summary>For a full read: what was found, in words.</summary>
        public string? Detail { get; init; }

        /// <summary>The restore point whose chunks the unchanged regions reference (incremental); null for a full read.</summary>
        public string? BasePoint { get; init; }

        /// <summary>Bytes the copy read from the disk.</summary>
        public long BytesRead { get; init; }

        /// <summary>Bytes the checkpoint marked as changed (at its granularity); null when there was no checkpoint to ask.</summary>
        public long? ChangedBytes { get; init; }

        /// <summary>True when the disk was read in full and compared with the checkpoint (-VerifyChangeTracking).</summary>
        public bool Verified { get; init; }

        /// <summary>This record (before the read) as a full read: the base it named cannot be used after all (<paramref name="reason"/>, one of <see cref="Reasons"/>).</summary>
        internal ChangeTrackingRecord ReadInFull(string reason, string detail) =>
            new ChangeTrackingRecord(Disk, Image, VirtualSize, Bitmap, Persistent)
            {
                ModeValue = ChangeTrackingMode.Full,
                Reason = reason,
                Detail = detail,
            };

        /// <summary>
        /// This record with what the read found; <paramref name="missed"/> (a verification that found changes the
        /// checkpoint did not mark) turns it into a full read with reason <see cref="Reasons.VerifyFailed"/>, which it was.
        /// </summary>
        internal ChangeTrackingRecord Completed(long bytesRead, long? changedBytes, bool verified, string? missed) =>
            new ChangeTrackingRecord(Disk, Image, VirtualSize, Bitmap, Persistent)
            {
                ModeValue = missed != null ? ChangeTrackingMode.Full : ModeValue,
                Reason = missed != null ? Reasons.VerifyFailed : Reason,
                Detail = missed ?? Detail,
                BasePoint = missed != null ? null : BasePoint,
                BytesRead = bytesRead,
                ChangedBytes = changedBytes,
                Verified = verified,
            };

        /// <summary>"Incremental", or "Full (Reason)".</summary>
        public override string ToString() => ModeValue == ChangeTrackingMode.Incremental ? "Incremental" : $"Full ({Reason})";

        internal JsonObject ToJson() => new JsonObject()
            .With("mode", Mode.ToString())
            .With("reason", Reason)
            .With("detail", Detail)
            .With("disk", Disk)
            .With("image", Image)
            .With("virtualSize", VirtualSize)
            .With("bitmap", Bitmap)
            .With("persistent", Persistent)
            .With("basePoint", BasePoint)
            .With("bytesRead", BytesRead)
            .With("changedBytes", ChangedBytes)
            .With("verified", Verified);

        internal static ChangeTrackingRecord FromJson(JsonObject json)
        {
            string mode = json.GetString("mode");
            if (!(JsonObject.EnumMemberNamed(typeof(ChangeTrackingMode), mode) is ChangeTrackingMode parsed))
            {
                throw new JsonFormatException($"The member 'changeTracking.mode' is '{mode}'; expected Incremental or Full.");
            }

            long size = json.GetInt64("virtualSize");
            if (size < 0)
            {
                throw new JsonFormatException($"The member 'changeTracking.virtualSize' is {size}; expected a size in bytes.");
            }

            return new ChangeTrackingRecord(json.GetString("disk"), json.GetString("image"), size, json.GetString("bitmap"), json.GetBoolean("persistent"))
            {
                ModeValue = parsed,
                Reason = json.GetOptionalString("reason"),
                Detail = json.GetOptionalString("detail"),
                BasePoint = json.GetOptionalString("basePoint"),
                BytesRead = json.GetOptionalInt64("bytesRead") ?? 0,
                ChangedBytes = json.GetOptionalInt64("changedBytes"),
                Verified = json.GetOptionalBoolean("verified") ?? false,
            };
        }

        /// <summary>A point's change tracking in one word: Incremental when every tracked disk was, Full when any was read in full, null when untracked.</summary>
        internal static string? Summarize(IEnumerable<ChangeTrackingRecord?> records)
        {
            var tracked = records.OfType<ChangeTrackingRecord>().ToList();
            return tracked.Count == 0 ? null : tracked.All(r => r.ModeValue == ChangeTrackingMode.Incremental) ? "Incremental" : "Full";
        }
    }

    /// <summary>
    /// The image a restore writes when the stored content is the disk as the guest sees it (raw bytes): the
    /// original format, and for qcow2 its cluster size and compat level.
    /// </summary>
    public sealed class DiskImageLayout
    {
        public DiskImageLayout(string format, int? clusterSize, string? compat)
        {
            Format = format;
            ClusterSize = clusterSize;
            Compat = compat;
        }

        /// <summary>"qcow2" or "raw".</summary>
        public string Format { get; }

        public int? ClusterSize { get; }

        /// <summary>qcow2's compat level ("1.1", "0.10").</summary>
        public string? Compat { get; }

        /// <summary>"qcow2 (cluster 65536, compat 1.1)", "raw".</summary>
        public override string ToString()
        {
            var details = new[] { ClusterSize != null ? $"cluster {ClusterSize}" : null, Compat != null ? $"compat {Compat}" : null }.Where(detail => detail != null).ToList();
            return details.Count == 0 ? Format : $"{Format} ({string.Join(", ", details)})";
        }

        internal JsonObject ToJson() => new JsonObject().With("format", Format).With("clusterSize", ClusterSize).With("compat", Compat);

        internal static DiskImageLayout FromJson(JsonObject json)
        {
            string format = json.GetString("format");
            long? cluster = json.GetOptionalInt64("clusterSize");
            if (format != "raw" && format != "qcow2")
            {
                throw new JsonFormatException($"The member 'restoreAs.format' is '{format}'; expected raw or qcow2.");
            }

            // qcow2 clusters are powers of two from 512 bytes to 2 MiB.
            if (cluster != null && (cluster < 512 || cluster > 2 * 1024 * 1024 || (cluster & (cluster - 1)) != 0))
            {
                throw new JsonFormatException($"The member 'restoreAs.clusterSize' is {cluster}; expected a power of two from 512 to 2097152.");
            }

            string? compat = json.GetOptionalString("compat");
            if (compat != null && compat != "1.1" && compat != "0.10")
            {
                throw new JsonFormatException($"The member 'restoreAs.compat' is '{compat}'; expected 1.1 or 0.10.");
            }

            return new DiskImageLayout(format, (int?)cluster, compat);
        }
    }
}
