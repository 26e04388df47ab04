using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Restore
{
    /// <summary>
    /// A disk stored as the guest saw it (change-tracked backups) is written back in its original image format:
    /// qcow2 with the original cluster size and compat level, sparse (qemu-img convert skips zeroes), or raw as is.
    /// </summary>
    internal static class GuestViewImage
    {
        private static readonly TimeSpan ConvertTimeout = TimeSpan.FromHours(12);

        /// <summary>Turns the raw content just written to <paramref name="temp"/> into the image <paramref name="file"/> records, in place.</summary>
        public static void WriteImageFormat(string temp, RestorePointFile file, CancellationToken cancel)
        {
            if (!(file.RestoreAs is DiskImageLayout layout) || layout.Format != DiskImageFormat.Qcow2)
            {
                return;
            }

            string options = "compat=" + (layout.Compat ?? "1.1") + (layout.ClusterSize is int cluster ? ",cluster_size=" + cluster.ToString(CultureInfo.InvariantCulture) : "");
            string converted = temp + ".qcow2";
            // -t writeback: the image is flushed to disk when qemu-img closes it (its default for the target flushes nothing).
            ToolResult result = QemuImage.Run(new List<string> { "convert", "-q", "-f", DiskImageFormat.Raw, "-O", DiskImageFormat.Qcow2, "-t", "writeback", "-o", options, temp, converted }, ConvertTimeout, cancel);
            if (result.ExitCode != 0)
            {
                DeleteQuietly(converted);
                throw new VmQuiesceException("RestoreConvertFailed", FailureKind.WriteError,
                    $"The disk '{file.Path}' could not be written as {layout.Format} ({options}): {result.Message}", file.Path);
            }

            File.Delete(temp);
            File.Move(converted, temp);
        }

        private static void DeleteQuietly(string path)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // The restore already fails; its temporary files are named after the target and removed with it.
            }
        }
    }
}
