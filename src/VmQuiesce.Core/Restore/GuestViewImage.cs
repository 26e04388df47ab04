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
        /// records: qemu-img converts it into a file made beside the temp, and the image is copied back into the temp
        /// through the restore's own open (and locked) stream, so the temp keeps its identity, lock, owner and mode.
        /// </summary>
        /// <remarks>
        /// The folder may be writable by others (the VM's owner), and qemu-img, run as root, opens and truncates what it
        /// is named: so it is named neither file by its place in the folder, where a link could be put, but by this
        /// process's descriptors (Linux), and the file it writes is made here first, exclusively and never through a link.
        /// </remarks>
        /// <param name="writeRuns">Writes a buffer at an offset, leaving runs of zeroes as holes.</param>
        public static void WriteImageFormat(TrustedFolder folder, string tempName, CreatedFile temp, RestorePointFile file, Action<long, byte[], int> writeRuns, CancellationToken cancel)
        {
            if (!IsConverted(file))
            {
                return;
            }

            DiskImageLayout layout = file.RestoreAsValue!;
            temp.Stream.Flush();
            string options = "compat=" + (layout.Compat ?? "1.1") + (layout.ClusterSize is int cluster ? ",cluster_size=" + cluster.ToString(CultureInfo.InvariantCulture) : "");
            string convertedName = tempName + ".qcow2";
            using CreatedFile converted = folder.CreateNew(convertedName, direct: false);
            try
            {
                string convertedPath = converted.DescriptorPath ?? folder.Combine(convertedName);
                if (converted.DescriptorPath == null)
                {
                    // No descriptor to name (Windows, macOS): qemu-img opens it by its name, which this handle would keep it from.
                    converted.Dispose();
                }

                ToolResult result = QemuImage.Run(new List<string> { "convert", "-q", "-f", DiskImageFormat.Raw, "-O", DiskImageFormat.Qcow2, "-o", options, temp.DescriptorPath ?? folder.Combine(tempName), convertedPath }, ConvertTimeout, cancel);
                if (result.ExitCode != 0)
                {
                    throw new VmQuiesceException("RestoreConvertFailed", FailureKind.WriteError,
                        $"The disk '{file.Path}' could not be written as {layout.Format} ({options}): {result.Message}", file.Path);
                }

                using var image = new FileStream(convertedPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                temp.Stream.SetLength(0);
                var buffer = new byte[CopyBlock];
                long offset = 0;
                int read;
                while ((read = image.ReadFully(buffer, CopyBlock)) > 0)
                {
                    cancel.ThrowIfCancellationRequested();
                    writeRuns(offset, buffer, read);
                    offset += read;
                }

                temp.Stream.SetLength(offset);
            }
            finally
            {
                DeleteQuietly(folder, convertedName);
            }
        }

        private static void DeleteQuietly(TrustedFolder folder, string name)
        {
            try
            {
                folder.Delete(name);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // The restore goes on or fails for its own reason; the file is named after the restore's temp file.
            }
        }
    }
}
