using System;
using System.Linq;

namespace VmQuiesce.Core.Sources
{
    /// <summary>Disk image formats by QEMU's driver names, as restore points record them.</summary>
    public static class DiskImageFormat
    {
        public const string Raw = "raw";
        public const string Qcow2 = "qcow2";
        public const string Vmdk = "vmdk";

        /// <summary>QEMU block drivers that are image formats (not protocols or filters).</summary>
        private static readonly string[] ImageDrivers = { Raw, Qcow2, "qcow", "qed", Vmdk, "vdi", "vhdx", "vpc", "parallels" };

        /// <summary>
        /// The format of the image under a QEMU drive whose top node has driver <paramref name="driver"/> (query-block's
        /// "drv"): a bare "file" node is read as raw; a filter or anything else says nothing certain, so null.
        /// </summary>
        public static string? FromQemuDriver(string driver) =>
            driver == "file" ? Raw : ImageDrivers.Contains(driver, StringComparer.Ordinal) ? driver : null;
    }
}
