using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A snapshot of a VM disk: today a QEMU internal snapshot inside a qcow2 image.</summary>
    public sealed class VmSnapshot
    {
        public VmSnapshot(string vmName, string disk, string id, string name, DateTime date, TimeSpan vmClock, long vmStateSize, string kind)
        {
            VmName = vmName;
            Disk = disk;
            Id = id;
            Name = name;
            Date = date;
            VmClockElapsed = vmClock;
            VmStateSize = vmStateSize;
            Kind = kind;
        }

        /// <summary>The VM, or the image path when an image was asked about.</summary>
        public string VmName { get; }

        /// <summary>The QEMU drive (online) or the image's file name (offline) that holds the snapshot.</summary>
        public string Disk { get; }

        public string Id { get; }

        public string Name { get; }

        /// <summary>When the snapshot was taken, UTC.</summary>
        public DateTime Date { get; }

        /// <summary>The guest's clock at the snapshot (time the VM had run), in seconds.</summary>
        public double VmClock => VmClockElapsed.TotalSeconds;

        internal TimeSpan VmClockElapsed { get; }

        /// <summary>Bytes of saved VM state (RAM, devices); 0 for a disk-only snapshot.</summary>
        public long VmStateSize { get; }

        /// <summary>The CapturedSnapshot kind that names this sort of snapshot ("QemuInternal").</summary>
        public string Kind { get; }

        public override string ToString() => $"{Disk}: {Name}";

        /// <summary>A snapshot entry as both `qemu-img info --output=json` and QMP's query-block report it.</summary>
        internal static VmSnapshot FromQemuJson(string vmName, string disk, JsonObject json) =>
            new VmSnapshot(
                vmName,
                disk,
                json.GetString("id"),
                json.GetString("name"),
                DateTimeOffset.FromUnixTimeSeconds(json.GetInt64("date-sec")).UtcDateTime.AddTicks(json.GetInt64("date-nsec") / 100),
                TimeSpan.FromTicks((json.GetInt64("vm-clock-sec") * TimeSpan.TicksPerSecond) + (json.GetInt64("vm-clock-nsec") / 100)),
                json.GetInt64("vm-state-size"),
                QemuImage.InternalSnapshotKind);
    }

    /// <summary>
    /// Offline operations on QEMU disk images through qemu-img. Every call names the image's format (-f): qemu-img
    /// never guesses it from the image's bytes, which a guest may have written.
    /// </summary>
    public static class QemuImage
    {
        /// <summary>The CapturedSnapshot kind of a QEMU internal snapshot (qcow2).</summary>
        public const string InternalSnapshotKind = "QemuInternal";

        internal const string Tool = "qemu-img";

        private static readonly TimeSpan InfoTimeout = TimeSpan.FromMinutes(1);

        private static readonly byte[] Qcow2Magic = { (byte)'Q', (byte)'F', (byte)'I', 0xFB };

        /// <summary>
        /// The internal snapshots of an image: read as qcow2 (the one format that holds them), none when the file
        /// does not start as a qcow2 image.
        /// </summary>
        /// <param name="forceShare">Read even while a running QEMU holds the image's lock (-U): for listing only.</param>
        public static IReadOnlyList<VmSnapshot> Snapshots(string imagePath, bool forceShare, CancellationToken cancel)
        {
            if (!StartsWith(imagePath, Qcow2Magic))
            {
                return Array.Empty<VmSnapshot>();
            }

            JsonObject info = Inspect(imagePath, DiskImageFormat.Qcow2, forceShare, cancel);
            try
            {
                return (info.GetOptionalArray("snapshots") ?? new JsonArray())
                    .Select(item => VmSnapshot.FromQemuJson(imagePath, System.IO.Path.GetFileName(imagePath), item as JsonObject ?? throw new JsonFormatException("A snapshot entry is not an object.")))
                    .ToList();
            }
            catch (JsonFormatException e)
            {
                throw Unreadable(imagePath, e);
            }
        }

        /// <summary>
        /// Why the image, read as <paramref name="format"/>, must not be opened by anything running as root: it names
        /// another file (a backing file, an external data file, extents elsewhere), which would pull a host file in.
        /// Null when it names none.
        /// </summary>
        public static string? WhyItNamesOtherFiles(string imagePath, string format, CancellationToken cancel) =>
            References(imagePath, format, cancel).Describe();

        /// <summary>
        /// The files the image, read as <paramref name="format"/>, names besides itself. qcow2's own header is read
        /// first: qemu-img opens an external data file while it reads the image, and one that names a device or a
        /// FIFO must be refused before qemu-img sees it. (qemu-img info never opens a backing file.)
        /// </summary>
        internal static ImageReferences References(string imagePath, string format, CancellationToken cancel) =>
            References(imagePath, format, format == DiskImageFormat.Qcow2 ? ReadStart(imagePath, Qcow2HeaderBytes) : Array.Empty<byte>(), cancel);

        /// <summary>
        /// <see cref="References(string, string, CancellationToken)"/> of an image that is not a file (an NBD URI), given
        /// its first <see cref="Qcow2HeaderBytes"/> bytes as read from where they come from.
        /// </summary>
        internal static ImageReferences References(string imagePath, string format, byte[] start, CancellationToken cancel)
        {
            if (format == DiskImageFormat.Qcow2 && Qcow2HeaderNamesDataFile(start))
            {
                return new ImageReferences { DataFile = "(named in its qcow2 header; not opened)" };
            }

            JsonObject info = Inspect(imagePath, format, forceShare: false, cancel);
            try
            {
                JsonObject? details = info.GetOptionalObject("format-specific")?.GetOptionalObject("data");
                return new ImageReferences
                {
                    BackingFile = info.GetOptionalString("full-backing-filename") ?? info.GetOptionalString("backing-filename"),
                    BackingFormat = info.GetOptionalString("backing-filename-format"),
                    DataFile = details?.GetOptionalString("data-file"),
                    Extent = (details?.GetOptionalArray("extents") ?? new JsonArray()).OfType<JsonObject>()
                        .Select(item => item.GetOptionalString("filename")).FirstOrDefault(name => name != null && name != imagePath),
                };
            }
            catch (JsonFormatException e)
            {
                throw Unreadable(imagePath, e);
            }
        }

        /// <summary>
        /// Why the image cannot be written now (a running QEMU holds its write lock), or null. Null also when
        /// qemu-img is not installed: then the /proc check alone decides. Read as raw: the lock is the file's,
        /// whatever it holds.
        /// </summary>
        public static string? WhyLocked(string imagePath, CancellationToken cancel)
        {
            ToolResult result;
            try
            {
                result = Run(new[] { "info", "-f", DiskImageFormat.Raw, "--output=json", imagePath }, InfoTimeout, cancel);
            }
            catch (VmQuiesceException e) when (e.ErrorId == "ToolNotFound")
            {
                return null;
            }

            return result.ExitCode != 0 && result.Message.IndexOf("lock", StringComparison.OrdinalIgnoreCase) >= 0 ? result.Message : null;
        }

        /// <summary>
        /// Applies internal snapshot <paramref name="name"/> to the qcow2 image (qemu-img snapshot -a): the image's
        /// current state becomes the snapshot's. An image that names other files is refused first.
        /// </summary>
        public static void ApplySnapshot(string imagePath, string name, CancellationToken cancel)
        {
            if (WhyItNamesOtherFiles(imagePath, DiskImageFormat.Qcow2, cancel) is string why)
            {
                throw new VmQuiesceException("ImageNamesOtherFiles", FailureKind.SecurityError,
                    $"The snapshot '{name}' is not applied to '{imagePath}': {why}, and a restored image may name only itself.", imagePath)
                {
                    Remedy = "Check where the restore point came from; restore it with -SkipRevert to get the files exactly as they were copied.",
                };
            }

            // qemu-img snapshot has no -f: the image options name the format instead (a comma in a path is doubled).
            string image = "driver=qcow2,file.driver=file,file.filename=" + imagePath.Replace(",", ",,");
            ToolResult result = Run(new[] { "snapshot", "--image-opts", "-a", name, image }, TimeSpan.FromMinutes(30), cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("SnapshotRevertFailed", FailureKind.WriteError, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", imagePath);
            }
        }

        /// <summary>Runs qemu-img, found in the system directories (or VMQUIESCE_TOOL_QEMU_IMG).</summary>
        internal static ToolResult Run(IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancel) =>
            ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find(Tool), arguments) { Timeout = timeout }, cancel);

        /// <summary>qemu-img info of the image read as <paramref name="format"/>, never probed.</summary>
        private static JsonObject Inspect(string imagePath, string format, bool forceShare, CancellationToken cancel)
        {
            var arguments = new List<string> { "info", "-f", format, "--output=json" };
            if (forceShare)
            {
                arguments.Add("-U");
            }

            arguments.Add(imagePath);
            ToolResult result = Run(arguments, InfoTimeout, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("QemuImageUnreadable", FailureKind.ReadError, $"qemu-img cannot read the image '{imagePath}' as {format}: {result.Message}", imagePath);
            }

            try
            {
                return JsonText.ParseObject(result.StandardOutput);
            }
            catch (JsonFormatException e)
            {
                throw Unreadable(imagePath, e);
            }
        }

        /// <summary>The bytes of a qcow2 header that say whether it names an external data file.</summary>
        internal const int Qcow2HeaderBytes = 80;

        /// <summary>Whether a qcow2 header (version 3) sets the external data file feature; false for a file that is not qcow2.</summary>
        private static bool Qcow2HeaderNamesDataFile(byte[] header)
        {
            // QCowHeader: magic, version (4 bytes) at 4; version 3 adds incompatible_features (8 bytes) at 72.
            const ulong ExternalDataFile = 0x4;
            return header.Length == Qcow2HeaderBytes && header.Take(4).SequenceEqual(Qcow2Magic) && BigEndianBytes.ReadUInt32(header, 4) >= 3 && (BigEndianBytes.ReadUInt64(header, 72) & ExternalDataFile) != 0;
        }

        private static bool StartsWith(string path, byte[] magic) => ReadStart(path, magic.Length).SequenceEqual(magic);

        private static byte[] ReadStart(string path, int count)
        {
            try
            {
                using var file = new System.IO.FileStream(path, System.IO.FileMode.Open, System.IO.FileAccess.Read, System.IO.FileShare.ReadWrite | System.IO.FileShare.Delete);
                byte[] buffer = new byte[count];
                int read = file.ReadFully(buffer, count);
                return buffer.Take(read).ToArray();
            }
            catch (Exception e) when (e is System.IO.IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("QemuImageUnreadable", FailureKind.ReadError, $"Cannot read the image '{path}': {e.Message}", path, e);
            }
        }

        /// <summary>
        /// Writes an empty qcow2 version 3 image of <paramref name="virtualSize"/> bytes (rounded up to whole sectors) that
        /// names no backing file: 64 KiB clusters, 16-bit refcounts, laid out as `qemu-img create -f qcow2` lays it out
        /// (header, refcount table, one refcount block, then the L1 table, whose zeroes are left a hole). Written here
        /// because a change-tracked backup needs one before each freeze, and starting qemu-img takes tens of milliseconds.
        /// The file must not exist, not even as a link; it is created owner-only.
        /// </summary>
        internal static void CreateEmptyQcow2(string path, long virtualSize)
        {
            const int ClusterBits = 16;
            const int ClusterSize = 1 << ClusterBits;
            const long BytesPerL2Table = (long)ClusterSize / 8 * ClusterSize;
            // QEMU's QCOW_MAX_L1_SIZE (32 MiB of entries) bounds the L1 table.
            const long MostL1Entries = 32L * 1024 * 1024 / 8;
            const long RefcountTableOffset = ClusterSize;
            const long RefcountBlockOffset = 2L * ClusterSize;
            const long L1TableOffset = 3L * ClusterSize;
            const int HeaderLength = 112;
            if (virtualSize <= 0 || virtualSize > MostL1Entries * BytesPerL2Table)
            {
                throw new ArgumentOutOfRangeException(nameof(virtualSize), virtualSize, $"Expected an image size from 1 byte to {MostL1Entries * BytesPerL2Table} bytes (qcow2 with 64 KiB clusters).");
            }

            long size = (virtualSize + 511) / 512 * 512;
            long l1Entries = (size + BytesPerL2Table - 1) / BytesPerL2Table;
            int l1Clusters = (int)((l1Entries * 8 + ClusterSize - 1) / ClusterSize);
            var header = new byte[HeaderLength + 8];
            Qcow2Magic.CopyTo(header, 0);
            BigEndianBytes.Write(header, 4, 3u);
            BigEndianBytes.Write(header, 20, (uint)ClusterBits);
            BigEndianBytes.Write(header, 24, (ulong)size);
            BigEndianBytes.Write(header, 36, (uint)l1Entries);
            BigEndianBytes.Write(header, 40, (ulong)L1TableOffset);
            BigEndianBytes.Write(header, 48, (ulong)RefcountTableOffset);
            BigEndianBytes.Write(header, 56, 1u);
            BigEndianBytes.Write(header, 96, 4u);
            BigEndianBytes.Write(header, 100, (uint)HeaderLength);
            // Zero from here: compression type zlib, padding, then the end of the (absent) header extensions.
            var refcountTable = new byte[8];
            BigEndianBytes.Write(refcountTable, 0, (ulong)RefcountBlockOffset);
            // Every cluster in use holds one reference: header, refcount table, refcount block, the L1 table's.
            var refcounts = new byte[2 * (3 + l1Clusters)];
            for (int cluster = 0; cluster < 3 + l1Clusters; cluster++)
            {
                BigEndianBytes.Write(refcounts, 2 * cluster, (ushort)1);
            }

            using (FileStream file = RegularFile.CreateNew(path))
            {
                try
                {
                    file.Write(header, 0, header.Length);
                    file.Position = RefcountTableOffset;
                    file.Write(refcountTable, 0, refcountTable.Length);
                    file.Position = RefcountBlockOffset;
                    file.Write(refcounts, 0, refcounts.Length);
                    file.SetLength(L1TableOffset + (l1Entries * 8));
                }
                catch (IOException)
                {
                    // The create made it, so the half-written image is ours to remove.
                    file.Dispose();
                    File.Delete(path);
                    throw;
                }
            }
        }

        private static VmQuiesceException Unreadable(string imagePath, JsonFormatException e) =>
            new VmQuiesceException("QemuImageUnreadable", FailureKind.ProtocolError, $"qemu-img info printed JSON this VmQuiesce does not understand for '{imagePath}': {e.Message}", imagePath, e);
    }

    /// <summary>The files an image names besides itself, as qemu-img reports them.</summary>
    internal sealed class ImageReferences
    {
        public string? BackingFile { get; init; }

        public string? BackingFormat { get; init; }

        public string? DataFile { get; init; }

        /// <summary>The first extent (vmdk) that is another file.</summary>
        public string? Extent { get; init; }

        /// <summary>What the image names, for an error message; null when it names nothing else.</summary>
        public string? Describe() =>
            BackingFile != null ? $"it names the backing file '{BackingFile}'"
            : DataFile != null ? $"it names an external data file {(DataFile.StartsWith("(", StringComparison.Ordinal) ? DataFile : "'" + DataFile + "'")}"
            : Extent != null ? $"it names the extent file '{Extent}'"
            : null;
    }
}
