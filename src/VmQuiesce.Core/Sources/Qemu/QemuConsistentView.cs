using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The base images below the backup's overlays: stable (QEMU no longer writes them) until Complete
    /// commits the overlays back. Dispose without Complete commits them too, and warns if that fails.
    /// </summary>
    internal sealed class QemuConsistentView : QemuBackupView
    {
        private readonly QemuSource _source;
        private readonly IReadOnlyList<QemuDisk> _disks;
        private readonly IReadOnlyList<QemuOverlay> _overlays;
        private readonly bool _keepSnapshot;

        /// <param name="diskFiles">The checked base images, read through their descriptors; the view closes them.</param>
        public QemuConsistentView(QemuSource source, IReadOnlyList<QemuDisk> disks, IReadOnlyList<QemuOverlay> overlays, QemuDiskFiles diskFiles, QemuRunRecord? run, Consistency reached, bool keepSnapshot, Task<QuiesceRecord> quiesce, CapturedSnapshot? snapshot)
            : base(source.Host, diskFiles, run, reached, quiesce, ViewFiles(overlays, diskFiles))
        {
            _source = source;
            _disks = disks;
            _overlays = overlays;
            _keepSnapshot = keepSnapshot;
            Snapshot = snapshot;
        }

        public override CapturedSnapshot? Snapshot { get; }

        /// <summary>The overlay files, while they exist (tests and diagnostics).</summary>
        internal IReadOnlyList<string> OverlayPaths => _overlays.Select(o => o.OverlayPath).ToList();

        private static IReadOnlyList<ViewFile> ViewFiles(IReadOnlyList<QemuOverlay> overlays, QemuDiskFiles diskFiles)
        {
            var taken = new HashSet<string>(StringComparer.Ordinal);
            // The format QEMU itself opened the image with: never a guess from the image's own bytes.
            return overlays.Select(o => new ViewFile(StoredName(taken, o.BasePath, o.Disk.Name), diskFiles.ReadPathFor(o.BasePath), o.BasePath) { Format = DiskImageFormat.FromQemuDriver(o.Disk.Format) }).ToList();
        }

        /// <summary>
        /// Commits every overlay back, whether the copy succeeded or not (the overlays hold the guest's
        /// newest writes); throws OverlayCommitFailed naming what to run when one stays. The internal
        /// snapshot (Internal mode) is in the copied image, so the live image lets it go unless -KeepSnapshot
        /// asked otherwise; without success no restore point refers to it and it always goes.
        /// </summary>
        protected override void Release(bool success, CancellationToken cancel)
        {
            _source.CommitOverlays(_overlays, null, cancel);
            if (Snapshot != null && (!success || !_keepSnapshot))
            {
                _source.DeleteInternalSnapshot(null, _disks, Snapshot.Name);
            }
        }
    }
}
