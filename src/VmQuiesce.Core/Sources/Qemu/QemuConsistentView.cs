using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The base images below the backup's overlays: stable (QEMU no longer writes them) until Complete
    /// commits the overlays back. Dispose without Complete commits them too, and warns if that fails.
    /// </summary>
    internal sealed class QemuConsistentView : IConsistentView, IIdentifiedView
    {
        private readonly QemuSource _source;
        private readonly IReadOnlyList<QemuDisk> _disks;
        private readonly IReadOnlyList<QemuOverlay> _overlays;
        private readonly QemuDiskFiles _diskFiles;
        private readonly QemuRunRecord? _run;
        private readonly bool _keepSnapshot;
        private int _completed;

        /// <param name="diskFiles">The checked base images, read through their descriptors; the view closes them.</param>
        public QemuConsistentView(QemuSource source, IReadOnlyList<QemuDisk> disks, IReadOnlyList<QemuOverlay> overlays, QemuDiskFiles diskFiles, QemuRunRecord? run, Consistency reached, bool keepSnapshot, QuiesceRecord quiesce, CapturedSnapshot? snapshot)
        {
            _source = source;
            _disks = disks;
            _overlays = overlays;
            _diskFiles = diskFiles;
            _run = run;
            _keepSnapshot = keepSnapshot;
            Reached = reached;
            Quiesce = quiesce;
            Snapshot = snapshot;
            var names = new HashSet<string>(StringComparer.Ordinal);
            Files = overlays.Select(o =>
            {
                // Two disks may share a file name in different folders: the drive name keeps them apart.
                string name = Path.GetFileName(o.BasePath);
                string relative = names.Add(name) ? name : o.Disk.Name.TrimStart('#') + "/" + name;
                // The format QEMU itself opened the image with: never a guess from the image's own bytes.
                return new ViewFile(relative, diskFiles.ReadPathFor(o.BasePath), o.BasePath) { Format = DiskImageFormat.FromQemuDriver(o.Disk.Format) };
            }).ToList();
        }

        public Consistency Reached { get; }

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot { get; }

        public QuiesceRecord Quiesce { get; }

        /// <summary>What query-uuid answered when the backup began.</summary>
        public Guid? VmUuid { get; init; }

        /// <summary>The overlay files, while they exist (tests and diagnostics).</summary>
        internal IReadOnlyList<string> OverlayPaths => _overlays.Select(o => o.OverlayPath).ToList();

        /// <summary>
        /// Commits every overlay back, whether the copy succeeded or not (the overlays hold the guest's
        /// newest writes); throws OverlayCommitFailed naming what to run when one stays. The internal
        /// snapshot (Internal mode) is in the copied image, so the live image lets it go unless -KeepSnapshot
        /// asked otherwise; without success no restore point refers to it and it always goes.
        /// </summary>
        public void Complete(bool success, CancellationToken cancel)
        {
            if (Interlocked.Exchange(ref _completed, 1) != 0)
            {
                return;
            }

            // The copy is over: the images need not stay open.
            _diskFiles.Dispose();
            try
            {
                _source.CommitOverlays(_overlays, null, cancel);
                if (Snapshot != null && (!success || !_keepSnapshot))
                {
                    _source.DeleteInternalSnapshot(null, _disks, Snapshot.Name);
                }

                // Nothing of this run is left on the VM.
                _run?.Delete();
            }
            catch (VmQuiesceException)
            {
                // The overlays stay, and so does the record, which tells the next command what to repair.
                _run?.EndRun();
                throw;
            }
            catch (OperationCanceledException)
            {
                // Stopped before the overlays were released: Dispose tries again without the token.
                Interlocked.Exchange(ref _completed, 0);
                throw;
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
