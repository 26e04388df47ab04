using System;
using System.Collections.Generic;
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
            VmClock = vmClock;
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

        /// <summary>The guest's clock at the snapshot (time the VM had run).</summary>
        public TimeSpan VmClock { get; }

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

    /// <summary>Offline operations on QEMU disk images through qemu-img.</summary>
    public static class QemuImage
    {
        /// <summary>The CapturedSnapshot kind of a QEMU internal snapshot (qcow2).</summary>
        public const string InternalSnapshotKind = "QemuInternal";

        internal const string Tool = "qemu-img";

        private static readonly TimeSpan InfoTimeout = TimeSpan.FromMinutes(1);

        /// <summary>qemu-img info of an image: its format and internal snapshots.</summary>
        /// <param name="forceShare">Read even while a running QEMU holds the image's lock (-U): for listing only.</param>
        public static (string Format, IReadOnlyList<VmSnapshot> Snapshots) Info(string imagePath, bool forceShare, CancellationToken cancel)
        {
            var arguments = new List<string> { "info", "--output=json" };
            if (forceShare)
            {
                arguments.Add("-U");
            }

            arguments.Add(imagePath);
            ToolResult result = Run(arguments, InfoTimeout, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("QemuImageUnreadable", FailureKind.ReadError, $"qemu-img cannot read the image '{imagePath}': {result.Message}", imagePath);
            }

            try
            {
                JsonObject info = JsonText.ParseObject(result.StandardOutput);
                var snapshots = (info.GetOptionalArray("snapshots") ?? new JsonArray())
                    .Select(item => VmSnapshot.FromQemuJson(imagePath, System.IO.Path.GetFileName(imagePath), item as JsonObject ?? throw new JsonFormatException("A snapshot entry is not an object.")))
                    .ToList();
                return (info.GetString("format"), snapshots);
            }
            catch (JsonFormatException e)
            {
                throw new VmQuiesceException("QemuImageUnreadable", FailureKind.ProtocolError, $"qemu-img info printed JSON this VmQuiesce does not understand for '{imagePath}': {e.Message}", imagePath, e);
            }
        }

        /// <summary>
        /// Why the image cannot be written now (a running QEMU holds its write lock), or null. Null also when
        /// qemu-img is not installed: then the /proc check alone decides.
        /// </summary>
        public static string? WhyLocked(string imagePath, CancellationToken cancel)
        {
            ToolResult result;
            try
            {
                result = Run(new[] { "info", "--output=json", imagePath }, InfoTimeout, cancel);
            }
            catch (VmQuiesceException e) when (e.ErrorId == "ToolNotFound")
            {
                return null;
            }

            return result.ExitCode != 0 && result.Message.IndexOf("lock", StringComparison.OrdinalIgnoreCase) >= 0 ? result.Message : null;
        }

        /// <summary>Applies internal snapshot <paramref name="name"/> to the image (qemu-img snapshot -a): the image's current state becomes the snapshot's.</summary>
        public static void ApplySnapshot(string imagePath, string name, CancellationToken cancel)
        {
            ToolResult result = Run(new[] { "snapshot", "-a", name, imagePath }, TimeSpan.FromMinutes(30), cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("SnapshotRevertFailed", FailureKind.WriteError, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", imagePath);
            }
        }

        /// <summary>Runs qemu-img, found in the system directories (or VMQUIESCE_TOOL_QEMU_IMG).</summary>
        internal static ToolResult Run(IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancel) =>
            ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find(Tool), arguments) { Timeout = timeout }, cancel);
    }
}
