using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// The VM folder's files as the snapshot froze them. Configuration and snapshot metadata that VMware
    /// may rewrite while the VM runs are read from copies taken right after the snapshot.
    /// </summary>
    internal sealed class VmwareConsistentView : IConsistentView
    {
        private readonly VmwareSource _source;
        private readonly string _snapshotName;
        private readonly string _stagingFolder;
        private readonly bool _keep;
        private readonly IDisposable _heldFiles;
        private bool _completed;

        /// <param name="keep">-KeepSnapshot: the snapshot stays after a successful copy and the point records it, with the vmrun that took it.</param>
        /// <param name="heldFiles">The VM folder's files the view reads through their descriptors: closed when the view is done.</param>
        public VmwareConsistentView(VmwareSource source, string snapshotName, bool keep, IReadOnlyList<ViewFile> files, IDisposable heldFiles, string stagingFolder, QuiesceRecord quiesce)
        {
            _heldFiles = heldFiles;
            _source = source;
            _snapshotName = snapshotName;
            _stagingFolder = stagingFolder;
            _keep = keep;
            Files = files;
            Quiesce = quiesce;
            VmrunConnection vmrun = source.Options.Vmrun.Connection;
            Snapshot = keep
                ? new CapturedSnapshot(snapshotName, null, VmwareSource.SourceKind) { VmrunPath = vmrun.VmrunPath, VmrunHostType = vmrun.HostType.ToString() }
                : null;
        }

        public Consistency Reached => Quiesce.ReachedValue;

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot { get; }

        public QuiesceRecord Quiesce { get; }

        public string SnapshotName => _snapshotName;

        /// <summary>Keeps the snapshot after a successful copy with -KeepSnapshot; deletes it otherwise.</summary>
        public void Complete(bool success, CancellationToken cancel)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            // The copy is over: the VM folder's files are not read any more, and the snapshot's release may merge them.
            _heldFiles.Dispose();
            try
            {
                _source.Release(_snapshotName, delete: !success || !_keep, cancel);
            }
            finally
            {
                DeleteStaging(_stagingFolder, _source.Host);
            }
        }

        /// <summary>Without Complete the backup failed: the snapshot goes; a failure to delete it is reported, never thrown.</summary>
        public void Dispose()
        {
            if (_completed)
            {
                return;
            }

            try
            {
                Complete(false, CancellationToken.None);
            }
            catch (VmQuiesceException e)
            {
                _source.Host.WriteWarning(e.Message + (e.Remedy == null ? string.Empty : " " + e.Remedy));
            }
        }

        /// <summary>Removes the copies of the configuration the view read; a failure is a warning.</summary>
        internal static void DeleteStaging(string stagingFolder, IOperationHost host)
        {
            try
            {
                if (Directory.Exists(stagingFolder))
                {
                    Directory.Delete(stagingFolder, true);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                host.WriteWarning($"Could not remove the temporary folder '{stagingFolder}': {e.Message}");
            }
        }
    }
}
