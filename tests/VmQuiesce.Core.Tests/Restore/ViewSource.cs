using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Tests.Restore
{
    /// <summary>
    /// A source whose view is given: plain files under chosen relative paths, and optionally the snapshot a
    /// hypervisor source with a revert step would record.
    /// </summary>
    internal sealed class ViewSource : IBackupSource
    {
        private readonly StableFilesView _view;
        private readonly CapturedSnapshot? _snapshot;

        public ViewSource(StableFilesView view, CapturedSnapshot? snapshot)
        {
            _view = view;
            _snapshot = snapshot;
        }

        public string Kind => "Test";

        public string VmName => "vm1";

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => new View(_view, _snapshot);

        private sealed class View : IConsistentView
        {
            private readonly StableFilesView _files;

            public View(StableFilesView files, CapturedSnapshot? snapshot)
            {
                _files = files;
                Snapshot = snapshot;
            }

            public Consistency Reached => Consistency.Crash;

            public IReadOnlyList<ViewFile> Files => _files.Files;

            public CapturedSnapshot? Snapshot { get; }

            public QuiesceRecord Quiesce => _files.Quiesce;

            public void Complete(bool success, CancellationToken cancel)
            {
            }

            public void Dispose()
            {
            }
        }
    }
}
