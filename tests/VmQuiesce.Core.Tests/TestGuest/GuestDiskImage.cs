using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Tests.TestGuest
{
    public enum GuestDiskFormat
    {
        Qcow2,
        Raw,
    }

    /// <summary>
    /// Makes ext4 data disks for the test guest and inspects them from the host without mounting:
    /// qcow2 (and internal snapshots) are turned into a temporary raw image, which e2fsprogs reads.
    /// </summary>
    public static class GuestDiskImage
    {
        /// <summary>Creates an empty ext4 disk; qcow2 is made as raw, formatted, then converted.</summary>
        public static void Create(string path, long sizeBytes, GuestDiskFormat format, string label)
        {
            string rawPath = format == GuestDiskFormat.Raw ? path : path + ".raw";
            try
            {
                using (var stream = new FileStream(rawPath, FileMode.CreateNew))
                {
                    stream.SetLength(sizeBytes);
                }
                // Eager inode-table and journal init: the guest then has no background writer of its own.
                HostCommand.RunChecked("mkfs.ext4", new[] { "-q", "-F", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0", rawPath });
                if (format == GuestDiskFormat.Qcow2)
                {
                    HostCommand.RunChecked("qemu-img", new[] { "convert", "-f", "raw", "-O", "qcow2", rawPath, path });
                }
            }
            finally
            {
                if (format == GuestDiskFormat.Qcow2)
                {
                    File.Delete(rawPath);
                }
            }
        }

        /// <summary>
        /// The text of a file inside the image's ext4 file system, or null when there is no such file.
        /// <paramref name="snapshotName"/> reads a qcow2 internal snapshot instead of the current state.
        /// </summary>
        public static string? ReadFile(string imagePath, string pathInFileSystem, string? snapshotName = null)
        {
            if (!pathInFileSystem.StartsWith("/", StringComparison.Ordinal) || pathInFileSystem.Contains('"', StringComparison.Ordinal))
            {
                throw new ArgumentException($"Expected an absolute path without quotes inside the file system, got '{pathInFileSystem}'.", nameof(pathInFileSystem));
            }
            return WithRawImage(imagePath, snapshotName, raw =>
            {
                HostCommandResult result = HostCommand.Run("debugfs", new[] { "-R", $"cat \"{pathInFileSystem}\"", raw });
                // debugfs exits 0 even when the file is missing; it says so on stderr.
                if (result.StandardError.Contains("File not found", StringComparison.Ordinal))
                {
                    return null;
                }
                if (result.ExitCode != 0)
                {
                    throw new InvalidOperationException($"debugfs could not read {pathInFileSystem} from {imagePath}: {result.StandardError.Trim()}");
                }
                return result.StandardOutput;
            });
        }

        /// <summary>True when the journal still has to be replayed (the copy was not quiesced).</summary>
        public static bool NeedsRecovery(string imagePath, string? snapshotName = null) =>
            WithRawImage(imagePath, snapshotName, raw =>
            {
                string header = HostCommand.RunChecked("dumpe2fs", new[] { "-h", raw }).StandardOutput;
                Match features = Regex.Match(header, @"^Filesystem features:(.*)$", RegexOptions.Multiline);
                if (!features.Success)
                {
                    throw new InvalidOperationException($"dumpe2fs printed no 'Filesystem features' line for {imagePath}.");
                }
                return Regex.IsMatch(features.Groups[1].Value, @"\bneeds_recovery\b");
            });

        /// <summary>
        /// The exit code of a forced, read-only e2fsck (0 = clean). Note it is 0 even when the journal needs
        /// replaying; check <see cref="NeedsRecovery"/> too.
        /// </summary>
        public static int Fsck(string imagePath, string? snapshotName = null) =>
            WithRawImage(imagePath, snapshotName, raw => HostCommand.Run("e2fsck", new[] { "-f", "-n", raw }).ExitCode);

        private static T WithRawImage<T>(string imagePath, string? snapshotName, Func<string, T> inspect)
        {
            if (!File.Exists(imagePath))
            {
                throw new FileNotFoundException($"No disk image at {imagePath}.", imagePath);
            }
            if (snapshotName is null && GetFormat(imagePath) == "raw")
            {
                return inspect(imagePath);
            }
            string raw = Path.Combine(Path.GetTempPath(), "vmq-inspect-" + Guid.NewGuid().ToString("N", CultureInfo.InvariantCulture) + ".raw");
            try
            {
                // -U: the image may be a base that a running QEMU holds (read-only) under an overlay.
                var arguments = new List<string> { "convert", "-U", "-O", "raw" };
                if (snapshotName is not null)
                {
                    arguments.AddRange(new[] { "-l", "snapshot.name=" + snapshotName });
                }
                arguments.AddRange(new[] { imagePath, raw });
                HostCommand.RunChecked("qemu-img", arguments);
                return inspect(raw);
            }
            finally
            {
                File.Delete(raw);
            }
        }

        private static string GetFormat(string imagePath)
        {
            string info = HostCommand.RunChecked("qemu-img", new[] { "info", "-U", "--output=json", imagePath }).StandardOutput;
            return JsonText.ParseObject(info).GetString("format");
        }
    }
}
