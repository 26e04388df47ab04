using System;
using System.Collections.Generic;
using System.Linq;

namespace VmQuiesce.Core.Repository
{
    /// <summary>What Test-VmBackup concluded about one restore point.</summary>
    public enum VerificationStatus
    {
        /// <summary>Every chunk and whole-file digest verifies (and the boot check, when it ran, passed).</summary>
        Ok,

        /// <summary>A chunk is missing or damaged, or a whole-file digest differs.</summary>
        Damaged,

        /// <summary>The data verifies, but the restored disks did not boot cleanly.</summary>
        BootFailed,
    }

    /// <summary>What is wrong with a chunk a restore point needs.</summary>
    public enum ChunkProblemKind
    {
        /// <summary>The chunk file is not there.</summary>
        Missing,

        /// <summary>The chunk file cannot be read or decoded, or does not hash to its name.</summary>
        Damaged,

        /// <summary>
        /// In an encrypted repository: the chunk file does not open with the repository's key as the chunk it is
        /// named (changed, swapped or planted; damage on disk looks the same).
        /// </summary>
        NotAuthentic,
    }

    /// <summary>What Test-VmBackup found for one restore point.</summary>
    public sealed class RestorePointVerification
    {
        public RestorePointVerification(RestorePoint point, long chunksChecked, long bytesChecked, IReadOnlyList<ChunkProblem> problems, IReadOnlyList<string> brokenFiles, IReadOnlyList<string> fileHashMismatches,
            BootCheckResult? boot = null)
        {
            RestorePoint = point;
            ChunksChecked = chunksChecked;
            BytesChecked = bytesChecked;
            Problems = problems;
            BrokenFiles = brokenFiles;
            FileHashMismatches = fileHashMismatches;
            Boot = boot;
        }

        public RestorePoint RestorePoint { get; }

        public string Id => RestorePoint.Id;

        public string VmName => RestorePoint.VmName;

        public DateTime StartTime => RestorePoint.StartTime;

        public string Repository => RestorePoint.Repository;

        public VerificationStatus Status => Problems.Count > 0 || FileHashMismatches.Count > 0
            ? VerificationStatus.Damaged
            : Boot?.Passed == false ? VerificationStatus.BootFailed : VerificationStatus.Ok;

        public bool IsValid => Status == VerificationStatus.Ok;

        /// <summary>The boot check of Test-VmBackup -Boot, or null when it did not run.</summary>
        public BootCheckResult? Boot { get; }

        public long ChunksChecked { get; }

        public long BytesChecked { get; }

        /// <summary>Each missing or damaged chunk, with the files it breaks.</summary>
        public IReadOnlyList<ChunkProblem> Problems { get; }

        /// <summary>Files that cannot be restored as they were backed up.</summary>
        public IReadOnlyList<string> BrokenFiles { get; }

        /// <summary>Files whose chunks all verify but whose whole-file SHA-256 differs from the manifest.</summary>
        public IReadOnlyList<string> FileHashMismatches { get; }

        /// <summary>The same verification with the boot check of its restored disks.</summary>
        public RestorePointVerification WithBoot(BootCheckResult boot) =>
            new RestorePointVerification(RestorePoint, ChunksChecked, BytesChecked, Problems, BrokenFiles, FileHashMismatches, boot);
    }

    /// <summary>A chunk that is missing or does not hash to its name, and the files that need it.</summary>
    public sealed class ChunkProblem
    {
        public ChunkProblem(string hash, ChunkProblemKind problem, string detail, IReadOnlyList<string> files)
        {
            Hash = hash;
            Problem = problem;
            Detail = detail;
            Files = files;
        }

        public string Hash { get; }

        public ChunkProblemKind Problem { get; }

        public string Detail { get; }

        public IReadOnlyList<string> Files { get; }

        public override string ToString() => $"{Problem} chunk {Hash}: {Detail} (breaks {string.Join(", ", Files)})";
    }

    /// <summary>What a removal or retention run removes and keeps, before it runs (for -WhatIf) or after.</summary>
    public sealed class PrunePlan
    {
        public PrunePlan(string repository, IReadOnlyList<RestorePoint> remove, IReadOnlyList<RestorePoint> keep)
        {
            Repository = repository;
            Remove = remove;
            Keep = keep;
        }

        public string Repository { get; }

        public IReadOnlyList<RestorePoint> Remove { get; }

        public IReadOnlyList<RestorePoint> Keep { get; }

        /// <summary>A retention plan: its prune keeps each VM's newest point if every point of that VM would go.</summary>
        public bool KeepsLastPointOfEachVm { get; init; }
    }

    /// <summary>What Remove-VmBackup did to a repository.</summary>
    public sealed class PruneResult
    {
        public PruneResult(string repository, IReadOnlyList<string> removedRestorePoints, int keptRestorePoints, long removedChunks, long freedBytes, int removedTempFiles)
        {
            Repository = repository;
            RemovedRestorePoints = removedRestorePoints;
            KeptRestorePoints = keptRestorePoints;
            RemovedChunks = removedChunks;
            FreedBytes = freedBytes;
            RemovedTempFiles = removedTempFiles;
        }

        public string Repository { get; }

        /// <summary>Ids of the restore points removed.</summary>
        public IReadOnlyList<string> RemovedRestorePoints { get; }

        public int KeptRestorePoints { get; }

        /// <summary>Chunks no remaining restore point referenced.</summary>
        public long RemovedChunks { get; }

        public long FreedBytes { get; }

        /// <summary>Leftovers of interrupted backups.</summary>
        public int RemovedTempFiles { get; }

        /// <summary>The snapshots kept on VMs (-KeepSnapshot) that only the removed points needed, now deleted.</summary>
        public IReadOnlyList<string> RemovedSnapshots { get; private set; } = Array.Empty<string>();

        /// <summary>This result, with the snapshots deleted after the points went.</summary>
        public PruneResult WithRemovedSnapshots(IReadOnlyList<string> snapshots) =>
            new PruneResult(Repository, RemovedRestorePoints, KeptRestorePoints, RemovedChunks, FreedBytes, RemovedTempFiles) { RemovedSnapshots = snapshots };
    }
}
