using System;
using System.Collections.Generic;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A writable disk of a running VM, as query-block reports it.</summary>
    public sealed class QemuDisk
    {
        internal QemuDisk(string device, string qdev, string nodeName, string file, string format, IReadOnlyList<string> chain, long virtualSize)
        {
            Device = device;
            Qdev = qdev;
            NodeName = nodeName;
            File = file;
            Format = format;
            Chain = chain;
            VirtualSize = virtualSize;
        }

        /// <summary>The -drive id ("disk0"); empty for disks configured with -blockdev.</summary>
        public string Device { get; }

        /// <summary>The guest device's id or path.</summary>
        public string Qdev { get; }

        /// <summary>The format node's name ("disk0fmt"); QEMU generates one ("#block123") when none was given.</summary>
        public string NodeName { get; }

        /// <summary>The active (top) image file.</summary>
        public string File { get; }

        /// <summary>"qcow2", "raw", ...</summary>
        public string Format { get; }

        /// <summary>Every image file from the top down to the base.</summary>
        public IReadOnlyList<string> Chain { get; }

        public long VirtualSize { get; }

        /// <summary>How QMP commands name this disk: the drive id when there is one, else the node name.</summary>
        public string Name => Device.Length > 0 ? Device : NodeName;

        /// <summary>The QMP argument that names it: "device" or "node-name".</summary>
        internal string NameArgument => Device.Length > 0 ? "device" : "node-name";

        /// <summary>
        /// Why an external overlay cannot be put on top of this disk, or null when it can: the image must be
        /// a plain local file (not nbd://, json:, a host device).
        /// </summary>
        public string? WhyNotSnapshotable()
        {
            if (File.StartsWith("json:", StringComparison.Ordinal) || File.Contains("://"))
            {
                return $"its image '{File}' is not a local file";
            }

            if (File.StartsWith("/dev/", StringComparison.Ordinal))
            {
                return $"its image '{File}' is a host device, not a file an overlay can sit next to";
            }

            return null;
        }

        public override string ToString() => $"{Name} ({Format}, {File})";

        /// <summary>The writable disks with a medium, in query-block order.</summary>
        internal static IReadOnlyList<QemuDisk> FromQueryBlock(JsonArray blocks)
        {
            var disks = new List<QemuDisk>();
            foreach (object? item in blocks)
            {
                if (!(item is JsonObject block) || !(block.GetOptionalObject("inserted") is JsonObject inserted) || inserted.GetOptionalBoolean("ro") == true)
                {
                    continue;
                }

                var chain = new List<string>();
                for (JsonObject? image = inserted.GetOptionalObject("image"); image != null; image = image.GetOptionalObject("backing-image"))
                {
                    chain.Add(image.GetOptionalString("filename") ?? "");
                }

                if (chain.Count == 0)
                {
                    chain.Add(inserted.GetOptionalString("file") ?? "");
                }

                long size = inserted.GetOptionalObject("image")?.GetOptionalInt64("virtual-size") ?? 0;
                disks.Add(new QemuDisk(block.GetOptionalString("device") ?? "", block.GetOptionalString("qdev") ?? "", inserted.GetOptionalString("node-name") ?? "",
                    inserted.GetOptionalString("file") ?? chain[0], inserted.GetOptionalString("drv") ?? "", chain, size));
            }

            return disks;
        }
    }
}
