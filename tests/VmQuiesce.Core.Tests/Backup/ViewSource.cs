using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Tests.Backup
{
    /// <summary>A source whose consistent view is given: any view, or plain files with the snapshot a hypervisor source with a revert step would record.</summary>
    internal sealed class ViewSource : IBackupSource
    {
        private readonly IConsistentView _view;

        public ViewSource(IConsistentView view) => _view = view;

        public ViewSource(StableFilesView files, CapturedSnapshot? snapshot)
            : this(new FilesView(files, snapshot))
        {
        }

        public string Kind => "Test";

        public string VmName => "vm1";

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => _view;

        private sealed class FilesView : IConsistentView
        {
            private readonly StableFilesView _files;

            public FilesView(StableFilesView files, CapturedSnapshot? snapshot)
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
