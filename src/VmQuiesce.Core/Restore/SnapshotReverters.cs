using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Sources.VMware;

namespace VmQuiesce.Core.Restore
{
    /// <summary>When a reverter runs, relative to the replacing renames.</summary>
    public enum RevertStage
    {
        /// <summary>On the written, checked temp files before they replace anything (offline image edits, e.g. qemu-img snapshot -a): a failure replaces nothing.</summary>
        BeforeReplace,

        /// <summary>On the files at their final paths (the hypervisor reverts the VM itself, e.g. vmrun revertToSnapshot on the .vmx): a failure leaves the restored files in place.</summary>
        AfterReplace,
    }

    /// <summary>
    /// The restore's second step for one kind of captured snapshot (<see cref="CapturedSnapshot.Kind"/>):
    /// puts restored files back to the snapshot the backup captured. A hypervisor plugs in by adding one.
    /// </summary>
    public interface ISnapshotReverter
    {
        /// <summary>The CapturedSnapshot kind handled: "QemuInternal", "VMware", ...</summary>
        string Kind { get; }

        RevertStage Stage { get; }

        /// <summary>
        /// Reverts the restored files to <paramref name="snapshot"/> (temp files or final paths, as
        /// <see cref="Stage"/> says); returns what was done, in words. Throws <see cref="VmQuiesceException"/> on failure.
        /// </summary>
        string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel);
    }

    /// <summary>The reverters known to a restore, chosen by snapshot kind.</summary>
    public sealed class SnapshotReverters
    {
        private readonly Dictionary<string, ISnapshotReverter> _byKind;

        public SnapshotReverters(IEnumerable<ISnapshotReverter> reverters)
        {
            _byKind = reverters.ToDictionary(reverter => reverter.Kind, StringComparer.OrdinalIgnoreCase);
        }

        /// <summary>Every reverter this VmQuiesce ships.</summary>
        public static SnapshotReverters Default { get; } = WithVmrun(null);

        /// <summary>Every reverter this VmQuiesce ships, VMware's reverting with <paramref name="vmrun"/> (null: the vmrun each point recorded).</summary>
        public static SnapshotReverters WithVmrun(VmrunConnection? vmrun) =>
            new SnapshotReverters(new ISnapshotReverter[] { new QemuInternalSnapshotReverter(), new VmwareSnapshotReverter(vmrun) });

        public IEnumerable<string> Kinds => _byKind.Keys;

        /// <summary>The reverter for <paramref name="snapshot"/>; a clear error naming the kind when there is none.</summary>
        public ISnapshotReverter For(CapturedSnapshot snapshot, string restorePointId)
        {
            if (_byKind.TryGetValue(snapshot.Kind, out ISnapshotReverter? reverter))
            {
                return reverter;
            }

            throw new VmQuiesceException("SnapshotKindNotSupported", FailureKind.NotSupported,
                $"The restore point '{restorePointId}' captured a snapshot of kind '{snapshot.Kind}' ('{snapshot.Name}'); this VmQuiesce can revert only {string.Join(", ", Kinds.Select(kind => "'" + kind + "'"))}.", snapshot)
            {
                Remedy = $"Restore the files with -SkipRevert, then revert to snapshot '{snapshot.Name}' with the hypervisor's own tool (for VMware: vmrun revertToSnapshot <vmx> \"{snapshot.Name}\"), or update VmQuiesce.",
            };
        }
    }

    /// <summary>QEMU internal snapshots (qcow2): applied offline to each restored image that holds the snapshot.</summary>
    public sealed class QemuInternalSnapshotReverter : ISnapshotReverter
    {
        public string Kind => QemuImage.InternalSnapshotKind;

        public RevertStage Stage => RevertStage.BeforeReplace;

        public string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel)
        {
            var reverted = new List<string>();
            foreach (string file in restoredFiles)
            {
                if (QemuImage.Snapshots(file, forceShare: false, cancel).Any(candidate => candidate.Name == snapshot.Name))
                {
                    QemuImage.ApplySnapshot(file, snapshot.Name, cancel);
                    reverted.Add(file);
                }
            }

            if (reverted.Count == 0)
            {
                throw new VmQuiesceException("SnapshotNotFound", FailureKind.ObjectNotFound,
                    $"None of the restored images holds the QEMU internal snapshot '{snapshot.Name}' the backup captured.", snapshot)
                {
                    Remedy = "Check the restore point with Test-VmBackup; restore with -SkipRevert to get the files as they were copied.",
                };
            }

            return $"Reverted {reverted.Count} of {restoredFiles.Count} image(s) to QEMU internal snapshot '{snapshot.Name}' (qemu-img snapshot -a).";
        }
    }
}
