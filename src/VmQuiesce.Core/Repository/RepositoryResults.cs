using System;
using System.Collections.Generic;
using System.Linq;

namespace VmQuiesce.Core.Repository
{
    /// <summary>What Test-VmBackup found for one restore point.</summary>
    public sealed class RestorePointVerification
    {
        public RestorePointVerification(RestorePoint point, long chunksChecked, long bytesChecked, IReadOnlyList<ChunkProblem> problems, IReadOnlyList<string> brokenFiles, IReadOnlyList<string> fileHashMismatches)
        {
            RestorePoint = point;
            ChunksChecked = chunksChecked;
            BytesChecked = bytesChecked;
            Problems = problems;
            BrokenFiles = brokenFiles;
            FileHashMismatches = fileHashMismatches;
        }

        public RestorePoint RestorePoint { get; }

        public string Id => RestorePoint.Id;

        public string VmName => RestorePoint.VmName;

        public DateTime StartTime => RestorePoint.StartTime;

        public string Repository => RestorePoint.Repository;

        /// <summary>"Ok", "Damaged", or "BootFailed" (the data verifies but the restored disks did not boot cleanly).</summary>
        public string Status => Problems.Count > 0 || FileHashMismatches.Count > 0 ? "Damaged" : Boot?.Passed == false ? "BootFailed" : "Ok";

        public bool IsValid => Status == "Ok";

        /// <summary>The boot check of Test-VmBackup -Boot, or null when it did not run.</summary>
        public Restore.BootCheckResult? Boot { get; internal set; }

        public long ChunksChecked { get; }

        public long BytesChecked { get; }

        /// <summary>Each missing or damaged chunk, with the files it breaks.</summary>
        public IReadOnlyList<ChunkProblem> Problems { get; }

        /// <summary>Files that cannot be restored as they were backed up.</summary>
        public IReadOnlyList<string> BrokenFiles { get; }

        /// <summary>Files whose chunks all verify but whose whole-file SHA-256 differs from the manifest.</summary>
        public IReadOnlyList<string> FileHashMismatches { get; }
    }

    /// <summary>A chunk that is missing or does not hash to its name, and the files that need it.</summary>
    public sealed class ChunkProblem
    {
        public ChunkProblem(string hash, string problem, string detail, IReadOnlyList<string> files)
        {
            Hash = hash;
            Problem = problem;
            Detail = detail;
            Files = files;
        }

        public string Hash { get; }

        /// <summary>"Missing" or "Damaged".</summary>
        public string Problem { get; }

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
    }
}
