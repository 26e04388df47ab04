using System;
using System.Collections.Generic;
using System.Linq;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Restore
{
    /// <summary>What the caller asks a restore to do.</summary>
    public sealed class RestoreRequest
    {
        public RestoreRequest(RestorePoint point)
        {
            Point = point;
        }

        public RestorePoint Point { get; }

        /// <summary>A folder to restore into (each file under its relative path) instead of the files' original paths.</summary>
        public string? Destination { get; init; }

        /// <summary>Replace files that exist.</summary>
        public bool Force { get; init; }

        /// <summary>Stop after the files are back; do not revert to the captured snapshot.</summary>
        public bool SkipRevert { get; init; }
    }

    /// <summary>One file a restore writes: where from, where to, and whether it replaces an existing file.</summary>
    public sealed class RestoreTarget
    {
        public RestoreTarget(RestorePointFile file, string path, bool exists, long dataBytes)
        {
            File = file;
            Path = path;
            Exists = exists;
            DataBytes = dataBytes;
        }

        public RestorePointFile File { get; }

        /// <summary>Full path the file is restored to.</summary>
        public string Path { get; }

        /// <summary>True when a file is there now and will be replaced.</summary>
        public bool Exists { get; }

        /// <summary>
        /// What the restore allocates for this file: its data blocks (the manifest's allocatedBytes), or for points
        /// from before schema 3 every non-zero chunk counted whole (an upper bound).
        /// </summary>
        public long DataBytes { get; }

        public override string ToString() => Path;
    }

    /// <summary>A checked restore, ready to run: the targets and how the revert will go.</summary>
    public sealed class RestorePlan
    {
        internal RestorePlan(RestoreRequest request, IReadOnlyList<RestoreTarget> targets, ISnapshotReverter? reverter)
        {
            Request = request;
            Targets = targets;
            Reverter = reverter;
        }

        public RestoreRequest Request { get; }

        public RestorePoint Point => Request.Point;

        public IReadOnlyList<RestoreTarget> Targets { get; }

        public long Bytes => Targets.Sum(target => target.File.Size);

        public long DataBytes => Targets.Sum(target => target.DataBytes);

        /// <summary>Null when nothing is reverted (external-overlay backups, -SkipRevert).</summary>
        internal ISnapshotReverter? Reverter { get; }
    }

    /// <summary>What happened to the captured snapshot in the restore's second step.</summary>
    public enum RevertStatus
    {
        /// <summary>The restored files were reverted to the snapshot the backup captured.</summary>
        Reverted,

        /// <summary>The backup captured no snapshot: the restored files already are the quiesced point in time.</summary>
        NotNeeded,

        /// <summary>-SkipRevert: the files are back; the revert was left to the caller.</summary>
        Skipped,
    }

    /// <summary>The steps of a restore, in order (Reverting comes after Replacing for a hypervisor that reverts the VM itself).</summary>
    public enum RestorePhase
    {
        /// <summary>Each file written from verified chunks to a temp name beside its target.</summary>
        Writing,

        /// <summary>The written files reverted to the snapshot the backup captured.</summary>
        Reverting,

        /// <summary>The targets replaced by the written files.</summary>
        Replacing,
    }

    /// <summary>Progress of a restore, reported from the restoring thread.</summary>
    public sealed class RestoreProgress : TransferProgress
    {
        public RestoreProgress(RestorePhase phase, string currentFile, long bytesDone, long bytesTotal, TimeSpan elapsed)
            : base(phase.ToString(), bytesDone, bytesTotal, elapsed)
        {
            Phase = phase;
            CurrentFile = currentFile;
        }

        public RestorePhase Phase { get; }

        public string CurrentFile { get; }
    }

    /// <summary>One file a restore put back.</summary>
    public sealed class RestoredFile
    {
        public RestoredFile(string relativePath, string path, long size, long? allocatedBytes, string digest, bool replaced)
        {
            RelativePath = relativePath;
            Path = path;
            Size = size;
            AllocatedBytes = allocatedBytes;
            Digest = digest;
            Replaced = replaced;
        }

        /// <summary>Path inside the restore point.</summary>
        public string RelativePath { get; }

        /// <summary>Where the file now is.</summary>
        public string Path { get; }

        public long Size { get; }

        /// <summary>Disk space the file takes (holes excluded), where the platform can say.</summary>
        public long? AllocatedBytes { get; }

        /// <summary>The manifest's whole-file digest the written content matched (before any revert).</summary>
        public string Digest { get; }

        /// <summary>True when an existing file was replaced.</summary>
        public bool Replaced { get; }

        public override string ToString() => Path;
    }

    /// <summary>What Restore-VmSnapshot did.</summary>
    public sealed class RestoreResult
    {
        public RestoreResult(RestorePoint point, string? destination, IReadOnlyList<RestoredFile> files, TimeSpan duration, RevertStatus revert, string revertDetail,
            BootCheckResult? verification = null)
        {
            RestorePoint = point;
            Destination = destination;
            Files = files;
            Elapsed = duration;
            RevertValue = revert;
            RevertDetail = revertDetail;
            Verification = verification;
        }

        public RestorePoint RestorePoint { get; }

        public string VmName => RestorePoint.VmName;

        public string RestorePointId => RestorePoint.Id;

        public string Consistency => RestorePoint.Consistency;

        /// <summary>The folder restored into, or null when the files went back to their original paths.</summary>
        public string? Destination { get; }

        public IReadOnlyList<RestoredFile> Files { get; }

        public int FileCount => Files.Count;

        public long Bytes => Files.Sum(file => file.Size);

        public long? AllocatedBytes => Files.All(file => file.AllocatedBytes != null) ? Files.Sum(file => file.AllocatedBytes!.Value) : (long?)null;

        /// <summary>Seconds the restore took: a number, as automation and ConvertTo-Json want it.</summary>
        public double Duration => Elapsed.TotalSeconds;

        internal TimeSpan Elapsed { get; }

        public double BytesPerSecond => Duration > 0 ? Bytes / Duration : 0;

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="RevertValue"/> is the typed value.</summary>
        public string Revert => RevertValue.ToString();

        internal RevertStatus RevertValue { get; }

        public bool SnapshotReverted => RevertValue == RevertStatus.Reverted;

        /// <summary>The snapshot the backup captured, or null.</summary>
        public string? Snapshot => RestorePoint.Snapshot?.Name;

        /// <summary>What the revert step did or why it did nothing, in words.</summary>
        public string RevertDetail { get; }

        /// <summary>The boot check of -Verify, or null when it was not asked for.</summary>
        public BootCheckResult? Verification { get; }

        /// <summary>The same restore with the boot check of the restored disks (-Verify).</summary>
        public RestoreResult WithVerification(BootCheckResult verification) =>
            new RestoreResult(RestorePoint, Destination, Files, Elapsed, RevertValue, RevertDetail, verification);
    }
}
