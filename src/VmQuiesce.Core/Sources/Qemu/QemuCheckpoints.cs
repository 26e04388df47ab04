using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A dirty bitmap on a disk's node, as query-named-block-nodes reports it.</summary>
    internal sealed class QemuBitmap
    {
        public QemuBitmap(string name, bool recording, bool busy, bool persistent, bool inconsistent, long count)
        {
            Name = name;
            Recording = recording;
            Busy = busy;
            Persistent = persistent;
            Inconsistent = inconsistent;
            Count = count;
        }

        public string Name { get; }

        public bool Recording { get; }

        public bool Busy { get; }

        public bool Persistent { get; }

        /// <summary>Set by QEMU when a persistent bitmap was not saved on a clean close: it says nothing true any more.</summary>
        public bool Inconsistent { get; }

        /// <summary>Dirty bytes it holds.</summary>
        public long Count { get; }
    }

    /// <summary>What QEMU says of a disk's format node: its bitmaps and, for qcow2, the layout a restore recreates.</summary>
    internal sealed class QemuNodeInfo
    {
        public QemuNodeInfo(IReadOnlyList<QemuBitmap> bitmaps, int? clusterSize, string? compat)
        {
            Bitmaps = bitmaps;
            ClusterSize = clusterSize;
            Compat = compat;
        }

        public IReadOnlyList<QemuBitmap> Bitmaps { get; }

        public int? ClusterSize { get; }

        public string? Compat { get; }

        /// <summary>Every block node, flat (<see cref="Query"/>).</summary>
        public static QemuCommand NodesQuery => new QemuCommand("query-named-block-nodes", new JsonObject().With("flat", true));

        /// <summary>Reads every node of query-named-block-nodes (flat) by name; what a node says is bounded and checked.</summary>
        public static IReadOnlyDictionary<string, QemuNodeInfo> Query(QmpClient qmp, System.Threading.CancellationToken cancel)
        {
            var nodes = new Dictionary<string, QemuNodeInfo>(StringComparer.Ordinal);
            foreach (JsonObject node in qmp.ExecuteArray(NodesQuery, cancel).OfType<JsonObject>())
            {
                try
                {
                    string? name = node.GetOptionalString("node-name");
                    if (name == null || nodes.ContainsKey(name))
                    {
                        continue;
                    }

                    var bitmaps = new List<QemuBitmap>();
                    foreach (JsonObject bitmap in (node.GetOptionalArray("dirty-bitmaps") ?? new JsonArray()).OfType<JsonObject>())
                    {
                        bitmaps.Add(new QemuBitmap(bitmap.GetOptionalString("name") ?? "", bitmap.GetOptionalBoolean("recording") ?? false, bitmap.GetOptionalBoolean("busy") ?? false,
                            bitmap.GetOptionalBoolean("persistent") ?? false, bitmap.GetOptionalBoolean("inconsistent") ?? false, bitmap.GetOptionalInt64("count") ?? 0));
                    }

                    JsonObject? image = node.GetOptionalObject("image");
                    long? cluster = image?.GetOptionalInt64("cluster-size");
                    JsonObject? specific = image?.GetOptionalObject("format-specific");
                    string? compat = specific?.GetOptionalString("type") == "qcow2" ? specific.GetOptionalObject("data")?.GetOptionalString("compat") : null;
                    nodes[name] = new QemuNodeInfo(bitmaps, cluster is long c && c >= 512 && c <= 2 * 1024 * 1024 && (c & (c - 1)) == 0 ? (int)c : (int?)null,
                        compat == "1.1" || compat == "0.10" ? compat : null);
                }
                catch (JsonFormatException e)
                {
                    throw new VmQuiesceException("QmpProtocolError", FailureKind.ProtocolError,
                        $"The QMP monitor at '{qmp.Address}' answered 'query-named-block-nodes' with a node of the wrong shape: {GuestText.Escape(e.Message)}", qmp.Address, e);
                }
            }

            return nodes;
        }
    }

    /// <summary>
    /// The decision for one disk, made before the freeze: the new checkpoint's bitmap, whether the previous
    /// checkpoint can be trusted (incremental) or why not (full), and the names the fleecing uses.
    /// </summary>
    internal sealed class QemuDiskCheckpoint
    {
        /// <summary>Every bitmap VmQuiesce makes is named so; bitmaps without it are never touched.</summary>
        public const string BitmapPrefix = "vmquiesce-";

        public const string ScratchPrefix = QemuBlockOperations.JobPrefix + "scratch-";

        public const string ExportPrefix = QemuBlockOperations.JobPrefix + "export-";

        /// <summary>A scratch image is its disk image's path, this, 8 hex digits and ".qcow2".</summary>
        public const string ScratchImageMarker = QemuBlockOperations.OverlayMarker + "fleece-";

        public QemuDiskCheckpoint(QemuDisk disk, int index, string stamp, QemuNodeInfo node)
        {
            Disk = disk;
            // Node names are at most 31 characters: "vmquiesce-scratch-" and 8 hex digits.
            string unique = Guid.NewGuid().ToString("N").Substring(0, 8);
            NewBitmap = BitmapPrefix + stamp + "-" + unique;
            ScratchNode = ScratchPrefix + unique;
            JobId = QemuBlockOperations.JobPrefix + "fleece-" + index.ToString(CultureInfo.InvariantCulture) + "-" + unique;
            ExportId = ExportPrefix + index.ToString(CultureInfo.InvariantCulture) + "-" + unique;
            ScratchPath = disk.File + ScratchImageMarker + unique + ".qcow2";
            Persistent = disk.Format == DiskImageFormat.Qcow2 && node.Compat == "1.1";
            Layout = disk.Format == DiskImageFormat.Qcow2 ? new DiskImageLayout(DiskImageFormat.Qcow2, node.ClusterSize, node.Compat) : new DiskImageLayout(DiskImageFormat.Raw, null, null);
            Stale = node.Bitmaps.Where(b => b.Name.StartsWith(BitmapPrefix, StringComparison.Ordinal)).Select(b => b.Name).ToList();
        }

        public QemuDisk Disk { get; }

        public string NewBitmap { get; }

        /// <summary>Only qcow2 v3 stores a bitmap; elsewhere it lasts as long as the QEMU process.</summary>
        public bool Persistent { get; }

        public string ScratchNode { get; }

        public string ScratchPath { get; }

        public string JobId { get; }

        public string ExportId { get; }

        public DiskImageLayout Layout { get; }

        /// <summary>The previous point's disk whose checkpoint is sound: the read is incremental. Null: full.</summary>
        public PreviousDisk? Base { get; private set; }

        /// <summary>The bitmap the read uses (the previous checkpoint), disabled in the freeze; null for a full read.</summary>
        public string? PreviousBitmap => Base?.Checkpoint.Bitmap;

        public string? Reason { get; private set; }

        public string? Detail { get; private set; }

        /// <summary>VmQuiesce's bitmaps on the disk before this backup: removed once a new point stands on the new one.</summary>
        public IReadOnlyList<string> Stale { get; }

        /// <summary>
        /// Checks the previous point's checkpoint of this disk against what QEMU reports, and decides: incremental
        /// only when the same image, the same size, and the very bitmap recording, consistent and idle.
        /// </summary>
        public void Decide(ChangeTrackingRequest request, QemuNodeInfo node)
        {
            if (request.WhyNoPrevious != null)
            {
                Full(request.NoPreviousReason, request.WhyNoPrevious);
                return;
            }

            PreviousDisk? previous = request.Previous.FirstOrDefault(p => p.Checkpoint.Disk == Disk.Name);
            if (previous == null)
            {
                Full(ChangeTrackingRecord.Reasons.NoCheckpoint, request.Previous.Count == 0
                    ? "no earlier restore point of this VM in the repository recorded a checkpoint"
                    : $"the disk is new since restore point {request.Previous[0].PointId}");
                return;
            }

            ChangeTrackingRecord was = previous.Checkpoint;
            if (was.Image != Disk.File)
            {
                Full(ChangeTrackingRecord.Reasons.DiskReplaced, $"its image is now '{Disk.File}', was '{was.Image}' at restore point {previous.PointId}");
                return;
            }

            if (was.VirtualSize != Disk.VirtualSize)
            {
                Full(ChangeTrackingRecord.Reasons.DiskResized, $"its size is now {Disk.VirtualSize} bytes, was {was.VirtualSize} at restore point {previous.PointId}");
                return;
            }

            QemuBitmap? bitmap = node.Bitmaps.FirstOrDefault(b => b.Name == was.Bitmap);
            if (bitmap == null)
            {
                string? other = Stale.FirstOrDefault();
                Full(other != null ? ChangeTrackingRecord.Reasons.PreviousPointMissing : ChangeTrackingRecord.Reasons.BitmapMissing, other != null
                    ? $"the disk's checkpoint is '{other}', which belongs to a restore point no longer in the repository (pruned or never completed); restore point {previous.PointId} recorded '{was.Bitmap}'"
                    : $"the bitmap '{was.Bitmap}' of restore point {previous.PointId} is not on the disk" +
                      (was.Persistent ? " (removed, or the image was replaced or restored)" : " (a bitmap on a raw or qcow2 v2 disk lasts only while QEMU runs: QEMU was restarted)"));
                return;
            }

            if (bitmap.Inconsistent)
            {
                Full(ChangeTrackingRecord.Reasons.BitmapInconsistent, $"QEMU marks the bitmap '{was.Bitmap}' inconsistent (QEMU ended without closing the image cleanly)");
                return;
            }

            if (!bitmap.Recording || bitmap.Busy)
            {
                Full(ChangeTrackingRecord.Reasons.BitmapNotUsable, $"the bitmap '{was.Bitmap}' is {(bitmap.Busy ? "in use by another operation" : "not recording")}");
                return;
            }

            Base = previous;
        }

        /// <summary>The disk's record for the new point, before the read (the engine adds what the read found).</summary>
        public ChangeTrackingRecord Record() =>
            new ChangeTrackingRecord(Disk.Name, Disk.File, Disk.VirtualSize, NewBitmap, Persistent)
            {
                ModeValue = Base != null ? ChangeTrackingMode.Incremental : ChangeTrackingMode.Full,
                Reason = Reason,
                Detail = Detail,
                BasePoint = Base?.PointId,
            };

        private void Full(string reason, string detail)
        {
            Base = null;
            Reason = reason;
            Detail = detail;
        }
    }
}
