using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The VM's disks at the point in time, read through QEMU's NBD exports of the fleecing nodes. The fleecing is taken
    /// down as soon as the copy's reads are over; Complete settles the checkpoints (kept on success, merged back on failure).
    /// </summary>
    internal sealed class QemuTrackedView : QemuBackupView, IReleasePreparation
    {
        private readonly QemuSource _source;
        private readonly QemuFleecing _fleecing;
        private readonly object _releaseGate = new object();
        private Task<QmpClient>? _releaseMonitor;
        private Task<TakenDown>? _takingDown;
        private bool _releasing;

        public QemuTrackedView(QemuSource source, QemuFleecing fleecing, IReadOnlyList<QemuTrackedDisk> disks, QemuDiskFiles diskFiles, QemuRunRecord? run, Consistency reached, Task<QuiesceRecord> quiesce)
            : base(source.Host, diskFiles, run, reached, quiesce, ViewFiles(disks))
        {
            _source = source;
            _fleecing = fleecing;
        }

        private static IReadOnlyList<ViewFile> ViewFiles(IReadOnlyList<QemuTrackedDisk> disks)
        {
            var taken = new HashSet<string>(StringComparer.Ordinal);
            // The stored bytes are the disk as the guest sees it; a restore writes the image format back.
            return disks.Select(d => new ViewFile(StoredName(taken, d.Checkpoint.Disk.File, d.Checkpoint.Disk.Name), $"nbd export '{d.Checkpoint.ExportId}' of disk {d.Checkpoint.Disk.Name}", d.Checkpoint.Disk.File)
            {
                Format = DiskImageFormat.Raw,
                Tracked = d,
                RestoreAs = d.Checkpoint.Layout,
            }).ToList();
        }

        /// <summary>
        /// Connects the monitor the release needs while the copy's last chunks are read, so the release does not wait for
        /// the connection and the check of QEMU's process (about 5 ms). Not sooner: the monitor serves one client at a
        /// time, and another's (a management tool's status queries) would wait through the copy.
        /// </summary>
        public void PrepareRelease()
        {
            lock (_releaseGate)
            {
                if (!_releasing && _releaseMonitor == null && _takingDown == null)
                {
                    _releaseMonitor = OwnThread.Start(() => _source.ConnectQmp(CancellationToken.None));
                }
            }
        }

        /// <summary>
        /// Takes the fleecing down as soon as nothing reads through it (<see cref="QemuFleecing.TakeDown"/>: the NBD
        /// connections, exports and server, the jobs, the scratch nodes), beside the copy's last flushes and the point's
        /// making; the release then only settles the checkpoints, which wait for the copy's outcome.
        /// </summary>
        public void ReadsEnded()
        {
            lock (_releaseGate)
            {
                if (!_releasing && _takingDown == null)
                {
                    Task<QmpClient>? prepared = _releaseMonitor;
                    _releaseMonitor = null;
                    _takingDown = OwnThread.Start(() => TakeDown(prepared, CancellationToken.None));
                }
            }
        }

        /// <summary>Takes the fleecing down, unless the copy's end already began that, and settles the checkpoints (kept on success, merged back on failure).</summary>
        protected override void Release(bool success, CancellationToken cancel)
        {
            Task<TakenDown>? begun;
            Task<QmpClient>? prepared;
            lock (_releaseGate)
            {
                _releasing = true;
                begun = _takingDown;
                _takingDown = null;
                prepared = _releaseMonitor;
                _releaseMonitor = null;
            }

            TakenDown takenDown = begun != null ? begun.GetAwaiter().GetResult() : TakeDown(prepared, cancel);
            using (takenDown.Qmp)
            {
                _fleecing.Settle(success, takenDown);
            }
        }

        /// <summary><see cref="QemuFleecing.TakeDown"/> through the monitor <paramref name="prepared"/>, or one connected now.</summary>
        private TakenDown TakeDown(Task<QmpClient>? prepared, CancellationToken cancel)
        {
            // The NBD connections close while the monitor is connected to (the exports are taken down after them); they have
            // closed before this goes on, whatever the connect did.
            Task closing = OwnThread.Start(_fleecing.CloseConnections);
            QmpClient qmp;
            try
            {
                // The connection made ready is bounded by the monitor's timeout, as a new one is.
                qmp = prepared != null ? prepared.GetAwaiter().GetResult() : _source.ConnectQmp(cancel);
            }
            catch (VmQuiesceException e)
            {
                OwnThread.WaitEnded(closing);
                // QEMU is gone (or unreachable): its exports, jobs and nodes went with it; the files are ours to delete.
                _fleecing.ReleaseWithoutQemu();
                throw new VmQuiesceException("ChangeTrackingReleaseFailed", FailureKind.InvalidOperation,
                    $"The QMP monitor of VM '{_source.VmName}' cannot be reached to release the change-tracked read ({e.Message}).", _source.VmName, e)
                {
                    Remedy = "If QEMU still runs, the next backup of the VM removes what this one left.",
                };
            }
            finally
            {
                OwnThread.WaitEnded(closing);
            }

            try
            {
                return _fleecing.TakeDown(qmp);
            }
            catch
            {
                qmp.Dispose();
                throw;
            }
        }
    }
}
