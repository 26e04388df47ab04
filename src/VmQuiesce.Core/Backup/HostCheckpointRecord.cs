using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Backup
{
    /// <summary>
    /// This host's side of a VM's checkpoint chain: which repository and restore point the VM's current checkpoints
    /// (dirty bitmaps) belong to, and per disk the bitmap, the image and its size. Written once a change-tracked point
    /// is published; the next change-tracked backup checks it against the repository's latest point, so the chain is
    /// checked from both sides: a repository that was swapped, rolled back or pruned, or a VM last backed up into
    /// another repository, gives a full read that says so. One JSON file per VM in a folder only root/Administrators
    /// enter (/var/lib/vmquiesce/checkpoints; %ProgramData%\VmQuiesce\Checkpoints; VMQUIESCE_CHECKPOINT_FOLDER
    /// overrides it). Read back as untrusted: a regular file of ours of bounded size, every member checked.
    /// </summary>
    public sealed class HostCheckpointRecord
    {
        public const string FolderVariable = "VMQUIESCE_CHECKPOINT_FOLDER";
        private const string Format = "VmQuiesceHostCheckpoints";

        internal HostCheckpointRecord(string sourceKind, string vmName, string repository, string pointId, IReadOnlyList<ChangeTrackingRecord> disks)
        {
            SourceKind = sourceKind;
            VmName = vmName;
            Repository = repository;
            PointId = pointId;
            Disks = disks;
        }

        /// <summary>Where this host keeps the records.</summary>
        public static string DefaultFolder
        {
            get
            {
                string? configured = Environment.GetEnvironmentVariable(FolderVariable);
                if (!string.IsNullOrEmpty(configured))
                {
                    return Path.GetFullPath(configured);
                }

                if (HostPlatform.IsWindows)
                {
                    return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmQuiesce", "Checkpoints");
                }

                // Bitmaps in qcow2 outlive reboots, so the record must too: not /run. Another user keeps its own.
                if (Libc.geteuid() == 0)
                {
                    return "/var/lib/vmquiesce/checkpoints";
                }

                string? state = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
                return Path.IsPathRooted(state)
                    ? Path.Combine(state!, "vmquiesce", "checkpoints")
                    : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state", "vmquiesce", "checkpoints");
            }
        }

        public string SourceKind { get; }

        public string VmName { get; }

        /// <summary>The repository the point went to, as it names itself (a full folder path, or an s3:// address).</summary>
        public string Repository { get; }

        public string PointId { get; }

        /// <summary>Each tracked disk's checkpoint as the point recorded it.</summary>
        public IReadOnlyList<ChangeTrackingRecord> Disks { get; }

        /// <summary>
        /// The record's file: a readable part of the VM's name and a hash of the source kind and the whole name, so
        /// names that differ only in characters a file name cannot hold never share a record.
        /// </summary>
        public static string PathOf(string folder, string sourceKind, string vmName)
        {
            string readable = new string(vmName.Select(c => char.IsLetterOrDigit(c) || c == '-' || c == '_' || c == '.' ? c : '_').Take(64).ToArray()).TrimStart('.');
            using var sha = SHA256.Create();
            byte[] hash = sha.ComputeHash(Encoding.UTF8.GetBytes(sourceKind + "\n" + vmName));
            string suffix = BitConverter.ToString(hash, 0, 8).Replace("-", string.Empty).ToLowerInvariant();
            return Path.Combine(folder, readable + "-" + suffix + ".json");
        }

        /// <summary>Replaces the VM's record atomically, in a folder only root/Administrators can read.</summary>
        internal void Save(string folder) => StateFiles.WriteProtected(folder, PathOf(folder, SourceKind, VmName), JsonText.Serialize(new JsonObject()
            .With("format", Format)
            .With("sourceKind", SourceKind)
            .With("vm", VmName)
            .With("repository", Repository)
            .With("point", PointId)
            .With("disks", new JsonArray(Disks.Select(d => (object?)new JsonObject()
                .With("disk", d.Disk)
                .With("image", d.Image)
                .With("virtualSize", d.VirtualSize)
                .With("bitmap", d.Bitmap)
                .With("persistent", d.Persistent)))), indented: true),
            $"Run as root/Administrator, or set {FolderVariable} to a folder this user may write.");

        /// <summary>
        /// The VM's record, or null when this host has none. Throws <see cref="InvalidDataException"/> (saying why) for
        /// a file that is not a record this account wrote for this VM: a link, a FIFO, too large, someone else's, malformed.
        /// </summary>
        internal static HostCheckpointRecord? Load(string folder, string sourceKind, string vmName)
        {
            string path = PathOf(folder, sourceKind, vmName);
            try
            {
                JsonObject json = JsonText.ParseObject(StateFiles.ReadOwn(path));
                if (json.GetString("format") != Format || json.GetString("sourceKind") != sourceKind || json.GetString("vm") != vmName)
                {
                    throw new JsonFormatException($"it is not the {Format} record of the {sourceKind} VM '{vmName}'");
                }

                var disks = json.GetArray("disks").Select(item => item as JsonObject ?? throw new JsonFormatException("a member of 'disks' is not an object")).Select(disk =>
                {
                    long size = disk.GetInt64("virtualSize");
                    return size < 0 ? throw new JsonFormatException($"the disk size {size} is negative")
                        : new ChangeTrackingRecord(disk.GetString("disk"), disk.GetString("image"), size, disk.GetString("bitmap"), disk.GetBoolean("persistent"));
                }).ToList();
                return new HostCheckpointRecord(sourceKind, vmName, json.GetString("repository"), json.GetString("point"), disks);
            }
            catch (FileNotFoundException)
            {
                return null;
            }
            catch (DirectoryNotFoundException)
            {
                return null;
            }
            catch (Exception e) when (e is JsonFormatException || e is IOException || e is UnauthorizedAccessException)
            {
                throw new InvalidDataException($"this host's checkpoint record '{path}' cannot be used: {e.Message}", e);
            }
        }

        /// <summary>
        /// What makes this record disagree with the repository's latest change-tracked point of the VM, as a reason of
        /// <see cref="ChangeTrackingRecord.Reasons"/> and the words for it; null when both sides tell the same chain.
        /// </summary>
        internal (string Reason, string Detail)? Mismatch(string repository, RestorePoint latest, Func<string, bool> pointExists)
        {
            if (!string.Equals(Repository, repository, StringComparison.Ordinal))
            {
                return (ChangeTrackingRecord.Reasons.HostRecordMismatch,
                    $"this host's checkpoint record says the disks' checkpoints belong to restore point {PointId} of the repository '{Repository}', not to this one (whose latest change-tracked point is {latest.Id})");
            }

            if (PointId != latest.Id)
            {
                return pointExists(PointId)
                    ? (ChangeTrackingRecord.Reasons.HostRecordMismatch, $"this host's checkpoint record names restore point {PointId}, but the repository's latest change-tracked point is {latest.Id}, which this host did not record")
                    : (ChangeTrackingRecord.Reasons.PreviousPointMissing, $"this host's checkpoint record names restore point {PointId}, which is no longer in the repository (pruned or removed); the repository's latest change-tracked point is {latest.Id}");
            }

            var recorded = latest.Files.Select(f => f.ChangeTrackingValue).OfType<ChangeTrackingRecord>().ToList();
            foreach (ChangeTrackingRecord disk in recorded)
            {
                ChangeTrackingRecord? host = Disks.FirstOrDefault(d => d.Disk == disk.Disk);
                string? differs = host == null ? "this host's record does not have it"
                    : host.Bitmap != disk.Bitmap ? $"the point records the bitmap '{disk.Bitmap}', this host's record '{host.Bitmap}'"
                    : host.Image != disk.Image ? $"the point records the image '{disk.Image}', this host's record '{host.Image}'"
                    : host.VirtualSize != disk.VirtualSize ? $"the point records {disk.VirtualSize} bytes, this host's record {host.VirtualSize}"
                    : null;
                if (differs != null)
                {
                    return (ChangeTrackingRecord.Reasons.HostRecordMismatch, $"restore point {latest.Id} and this host's checkpoint record disagree about disk {disk.Disk}: {differs}");
                }
            }

            ChangeTrackingRecord? extra = Disks.FirstOrDefault(d => recorded.All(r => r.Disk != d.Disk));
            return extra == null ? ((string, string)?)null
                : (ChangeTrackingRecord.Reasons.HostRecordMismatch, $"this host's checkpoint record has disk {extra.Disk}, which restore point {latest.Id} does not record");
        }
    }
}
