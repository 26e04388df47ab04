using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;

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

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StatusValue"/> is the typed value.</summary>
        public string Status => StatusValue.ToString();

        internal VerificationStatus StatusValue => Problems.Count > 0 || FileHashMismatches.Count > 0
            ? VerificationStatus.Damaged
            : Boot?.Passed == false ? VerificationStatus.BootFailed : VerificationStatus.Ok;

        public bool IsValid => StatusValue == VerificationStatus.Ok;

        /// <summary>The typed <see cref="Status"/>.</summary>
        public VerificationStatus GetStatus() => StatusValue;

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
            ProblemValue = problem;
            Detail = detail;
            Files = files;
        }

        public string Hash { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="ProblemValue"/> is the typed value.</summary>
        public string Problem => ProblemValue.ToString();

        internal ChunkProblemKind ProblemValue { get; }

        /// <summary>The typed <see cref="Problem"/>.</summary>
        public ChunkProblemKind GetProblem() => ProblemValue;

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

        /// <summary>Which points a removal by id removes (unknown ids are reported through <paramref name="notFound"/>).</summary>
        internal static PrunePlan ForIds(string repository, IReadOnlyList<RestorePoint> all, IEnumerable<string> ids, Action<VmQuiesceException> notFound)
        {
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (string id in ids)
            {
                if (all.Any(point => point.Id == id))
                {
                    wanted.Add(id);
                }
                else
                {
                    notFound(new VmQuiesceException("RestorePointNotFound", FailureKind.ObjectNotFound, $"The repository '{repository}' has no restore point '{id}'.", id));
                }
            }

            return new PrunePlan(repository, all.Where(point => wanted.Contains(point.Id)).ToList(), all.Where(point => !wanted.Contains(point.Id)).ToList());
        }

        /// <summary>Which points <paramref name="policy"/> removes, per VM; VMs not matching <paramref name="appliesTo"/> are untouched.</summary>
        internal static PrunePlan ForPolicy(string repository, IReadOnlyList<RestorePoint> all, RetentionPolicy policy, Func<string, bool> appliesTo)
        {
            if (policy.IsEmpty)
            {
                throw new VmQuiesceException("RetentionPolicyEmpty", FailureKind.InvalidArgument, "The retention policy keeps nothing; give at least one of KeepLast, KeepDaily, KeepWeekly, KeepMonthly above 0.", policy);
            }

            var remove = new List<RestorePoint>();
            foreach (var vm in all.Where(point => appliesTo(point.VmName)).GroupBy(point => point.VmKey, StringComparer.Ordinal))
            {
                ISet<RestorePoint> kept = policy.SelectKept(vm);
                remove.AddRange(vm.Where(point => !kept.Contains(point)));
            }

            return new PrunePlan(repository, remove, all.Except(remove).ToList()) { KeepsLastPointOfEachVm = true };
        }

        /// <summary>
        /// Of <paramref name="all"/> the points (read again under the prune's lock), those the plan removes, matched by
        /// <paramref name="identity"/>: points added since the plan was made are kept, and a policy never removes a VM's last point.
        /// </summary>
        internal List<RestorePoint> StillToRemove(IReadOnlyList<RestorePoint> all, Func<RestorePoint, string> identity, Action<string>? warn)
        {
            var planned = new HashSet<string>(Remove.Select(identity), StringComparer.Ordinal);
            var remove = all.Where(point => planned.Contains(identity(point))).ToList();
            if (KeepsLastPointOfEachVm)
            {
                // A policy keeps at least one point per VM; if the kept ones vanished since the plan, keep the newest left.
                foreach (var vm in all.GroupBy(point => point.VmName, StringComparer.OrdinalIgnoreCase).Where(vm => vm.All(remove.Contains)))
                {
                    RestorePoint newest = vm.OrderByDescending(point => point.StartTime).ThenByDescending(point => point.Id, StringComparer.Ordinal).First();
                    remove.Remove(newest);
                    warn?.Invoke($"Kept restore point '{newest.Id}' of VM '{newest.VmName}': the points the policy keeps are gone, and a policy never removes a VM's last point (remove it by id if you mean to).");
                }
            }

            return remove;
        }
    }

    /// <summary>A repository Remove-VmBackup prunes: a folder (<see cref="BackupRepository"/>) or object storage (<see cref="Storage.ObjectRepository"/>).</summary>
    public interface IPrunableRepository : IRestorePointSource
    {
        /// <summary>Which points a removal by id removes (unknown ids are reported through <paramref name="notFound"/>).</summary>
        PrunePlan PlanRemoval(IEnumerable<string> ids, Action<VmQuiesceException> notFound);

        /// <summary>Which points <paramref name="policy"/> removes, per VM; VMs not matching <paramref name="appliesTo"/> are untouched.</summary>
        PrunePlan PlanRetention(RetentionPolicy policy, Func<string, bool> appliesTo);

        /// <summary>What garbage collection would free if the plan's points were gone: (chunks, bytes).</summary>
        (long Chunks, long Bytes) EstimateGarbage(PrunePlan plan);

        /// <summary>Removes the plan's restore points (manifests first), then with <paramref name="collectGarbage"/> every chunk no remaining point references, under the repository's exclusive lock.</summary>
        PruneResult Prune(PrunePlan plan, bool collectGarbage, bool removeStaleLock, CancellationToken cancel, Action<string>? warn = null);
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
