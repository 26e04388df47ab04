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
        private readonly bool _removeOnSuccess;
        private bool _completed;

        public VmwareConsistentView(VmwareSource source, string snapshotName, bool removeOnSuccess, IReadOnlyList<ViewFile> files, string stagingFolder, QuiesceRecord quiesce)
        {
            _source = source;
            _snapshotName = snapshotName;
            _stagingFolder = stagingFolder;
            _removeOnSuccess = removeOnSuccess;
            Files = files;
            Quiesce = quiesce;
            Snapshot = removeOnSuccess ? null : new CapturedSnapshot(snapshotName, null, VmwareSource.SourceKind);
        }

        public Consistency Reached => Quiesce.Reached;

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot { get; }

        public QuiesceRecord Quiesce { get; }

        public string SnapshotName => _snapshotName;

        /// <summary>Keeps the snapshot after a successful copy (unless RemoveSnapshot); deletes it otherwise.</summary>
        public void Complete(bool success, CancellationToken cancel)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            try
            {
                _source.Release(_snapshotName, delete: !success || _removeOnSuccess, cancel);
            }
            finally
            {
                DeleteStaging();
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

        private void DeleteStaging()
        {
            try
            {
                if (Directory.Exists(_stagingFolder))
                {
                    Directory.Delete(_stagingFolder, true);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                _source.Host.WriteWarning($"Could not remove the temporary folder '{_stagingFolder}': {e.Message}");
            }
        }
    }
}
