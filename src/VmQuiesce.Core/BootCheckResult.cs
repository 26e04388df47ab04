using System;
using System.Collections.Generic;
using System.Linq;

namespace VmQuiesce.Core
{
    /// <summary>What an ext2/3/4 check of one disk found.</summary>
    public enum DiskCheckStatus
    {
        /// <summary>e2fsck found no errors and the journal is clean.</summary>
        Clean,

        /// <summary>e2fsck found errors, or the journal needs replaying.</summary>
        Damaged,

        /// <summary>No ext file system at the start of the disk.</summary>
        NotChecked,
    }

    /// <summary>What an ext2/3/4 check of one disk found after the boot.</summary>
    public sealed class DiskCheck
    {
        public DiskCheck(string path, DiskCheckStatus status, string detail)
        {
            Path = path;
            StatusValue = status;
            Detail = detail;
        }

        /// <summary>The restored disk (never written: the guest ran on a copy-on-write overlay).</summary>
        public string Path { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StatusValue"/> is the typed value.</summary>
        public string Status => StatusValue.ToString();

        internal DiskCheckStatus StatusValue { get; }

        public string Detail { get; }

        public override string ToString() => $"{System.IO.Path.GetFileName(Path)}: {Status} ({Detail})";
    }

    /// <summary>The result of booting restored disks: the guest agent answered, and the file systems are clean.</summary>
    public sealed class BootCheckResult
    {
        public BootCheckResult(bool agentAnswered, TimeSpan bootTime, IReadOnlyList<GuestFileSystem> fileSystems, IReadOnlyList<DiskCheck> disks, string? failure)
        {
            AgentAnswered = agentAnswered;
            BootElapsed = bootTime;
            FileSystems = fileSystems;
            Disks = disks;
            Failure = failure;
        }

        public bool Passed => AgentAnswered && Failure == null && Disks.All(disk => disk.StatusValue != DiskCheckStatus.Damaged);

        public bool AgentAnswered { get; }

        /// <summary>The machine QEMU was started as, and which of its options came from the restore point; null when nothing was started.</summary>
        public Repository.VmMachine? Machine { get; init; }

        /// <summary>QEMU start to the guest agent's answer.</summary>
        /// <summary>Seconds, as automation and ConvertTo-Json want it.</summary>
        public double BootTime => BootElapsed.TotalSeconds;

        internal TimeSpan BootElapsed { get; }

        /// <summary>The file systems the guest mounted (guest-get-fsinfo).</summary>
        public IReadOnlyList<GuestFileSystem> FileSystems { get; }

        public IReadOnlyList<DiskCheck> Disks { get; }

        /// <summary>Why the check failed before the disks could be checked, or null.</summary>
        public string? Failure { get; }

        /// <summary>The user id the check's QEMU ran as once the guest ran (Linux), or null when it did not get that far.</summary>
        internal uint? QemuUid { get; init; }

        public override string ToString() => Passed
            ? $"Passed: agent answered after {BootTime:0.0} s; {string.Join("; ", Disks)}"
            : $"Failed: {Failure ?? string.Join("; ", Disks.Where(disk => disk.StatusValue == DiskCheckStatus.Damaged))}";
    }

    /// <summary>One entry of guest-get-fsinfo.</summary>
    public sealed class GuestFileSystem
    {
        public GuestFileSystem(string name, string mountPoint, string type)
        {
            Name = name;
            MountPoint = mountPoint;
            Type = type;
        }

        public string Name { get; }

        public string MountPoint { get; }

        public string Type { get; }

        public override string ToString() => $"{MountPoint} ({Type}, {Name})";
    }
}
