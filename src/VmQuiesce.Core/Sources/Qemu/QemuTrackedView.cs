using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The VM's disks at the point in time, read through QEMU's NBD exports of the fleecing nodes. Complete
    /// takes the fleecing down and settles the checkpoints (kept on success, merged back on failure).
    /// </summary>
    internal sealed class QemuTrackedView : IConsistentView, IIdentifiedView
    {
        private readonly QemuSource _source;
        private readonly QemuFleecing _fleecing;
        private readonly QemuDiskFiles _diskFiles;
        private readonly QemuRunRecord? _run;
        private int _completed;

        public QemuTrackedView(QemuSource source, QemuFleecing fleecing, IReadOnlyList<QemuTrackedDisk> disks, QemuDiskFiles diskFiles, QemuRunRecord? run, Consistency reached, QuiesceRecord quiesce)
        {
            _source = source;
            _fleecing = fleecing;
            _diskFiles = diskFiles;
            _run = run;
            Reached = reached;
            Quiesce = quiesce;
            var names = new HashSet<string>(StringComparer.Ordinal);
            Files = disks.Select(d =>
            {
                string name = Path.GetFileName(d.Checkpoint.Disk.File);
                string relative = names.Add(name) ? name : d.Checkpoint.Disk.Name.TrimStart('#') + "/" + name;
                // The stored bytes are the disk as the guest sees it; a restore writes the image format back.
                return new ViewFile(relative, $"nbd export '{d.Checkpoint.ExportId}' of disk {d.Checkpoint.Disk.Name}", d.Checkpoint.Disk.File)
                {
                    Format = DiskImageFormat.Raw,
                    Tracked = d,
                    RestoreAs = d.Checkpoint.Layout,
                };
            }).ToList();
        }

        public Consistency Reached { get; }

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot => null;

        public QuiesceRecord Quiesce { get; }

        /// <summary>What query-uuid answered when the backup began.</summary>
        public Guid? VmUuid { get; init; }

        public void Complete(bool success, CancellationToken cancel)
        {
            if (Interlocked.Exchange(ref _completed, 1) != 0)
            {
                return;
            }

            _diskFiles.Dispose();
            QmpClient qmp;
            try
            {
                qmp = _source.ConnectQmp(cancel);
            }
            catch (VmQuiesceException e)
            {
                // QEMU is gone (or unreachable): its exports, jobs and nodes went with it; the files are ours to delete.
                _fleecing.ReleaseWithoutQemu();
                _run?.EndRun();
                throw new VmQuiesceException("ChangeTrackingReleaseFailed", FailureKind.InvalidOperation,
                    $"The QMP monitor of VM '{_source.VmName}' cannot be reached to release the change-tracked read ({e.Message}).", _source.VmName, e)
                {
                    Remedy = "If QEMU still runs, the next backup of the VM removes what this one left.",
                };
            }

            using (qmp)
            {
                try
                {
                    _fleecing.Release(qmp, success);
                    _run?.Delete();
                }
                catch (VmQuiesceException)
                {
                    _run?.EndRun();
                    throw;
                }
            }
        }

        public void Dispose()
        {
            try
            {
                Complete(false, CancellationToken.None);
            }
            catch (VmQuiesceException e)
            {
                _source.Host.WriteWarning(e.Message + " " + e.Remedy);
            }
        }
    }
}
