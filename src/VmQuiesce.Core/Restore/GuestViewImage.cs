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
        private const int CopyBlock = 1024 * 1024;

        /// <summary>Whether the restore writes <paramref name="file"/> in another format than its stored bytes.</summary>
        public static bool IsConverted(RestorePointFile file) => file.RestoreAsValue?.Format == DiskImageFormat.Qcow2;

        /// <summary>
        /// Turns the raw content just written to the restore's temp file into the image <paramref name="file"/>
        /// records: qemu-img converts it beside the temp, and the image is copied back into the temp through the
        /// restore's own open (and locked) stream, so the temp keeps its identity, lock, owner and mode.
        /// </summary>
        /// <param name="writeRuns">Writes a buffer at an offset, leaving runs of zeroes as holes.</param>
        public static void WriteImageFormat(string tempPath, Stream temp, RestorePointFile file, Action<long, byte[], int> writeRuns, CancellationToken cancel)
        {
            if (!IsConverted(file))
            {
                return;
            }

            DiskImageLayout layout = file.RestoreAsValue!;
            temp.Flush();
            string options = "compat=" + (layout.Compat ?? "1.1") + (layout.ClusterSize is int cluster ? ",cluster_size=" + cluster.ToString(CultureInfo.InvariantCulture) : "");
            string converted = tempPath + ".qcow2";
            try
            {
                ToolResult result = QemuImage.Run(new List<string> { "convert", "-q", "-f", DiskImageFormat.Raw, "-O", DiskImageFormat.Qcow2, "-o", options, tempPath, converted }, ConvertTimeout, cancel);
                if (result.ExitCode != 0)
                {
                    throw new VmQuiesceException("RestoreConvertFailed", FailureKind.WriteError,
                        $"The disk '{file.Path}' could not be written as {layout.Format} ({options}): {result.Message}", file.Path);
                }

                using var image = new FileStream(converted, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                temp.SetLength(0);
                var buffer = new byte[CopyBlock];
                long offset = 0;
                int read;
                while ((read = image.ReadFully(buffer, CopyBlock)) > 0)
                {
                    cancel.ThrowIfCancellationRequested();
                    writeRuns(offset, buffer, read);
                    offset += read;
                }

                temp.SetLength(offset);
            }
            finally
            {
                DeleteQuietly(converted);
            }
        }

        private static void DeleteQuietly(string path)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // The restore goes on or fails for its own reason; the file is named after the restore's temp file.
            }
        }
    }
}
