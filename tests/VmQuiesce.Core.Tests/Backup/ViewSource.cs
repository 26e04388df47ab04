using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Tests.Backup
{
    /// <summary>A source that hands out a view the test built: files, formats and all.</summary>
    internal sealed class ViewSource : IBackupSource
    {
        private readonly IConsistentView _view;

        public ViewSource(IConsistentView view, string vmName = "vm")
        {
            _view = view;
            VmName = vmName;
        }

        public string Kind => "Fake";

        public string VmName { get; }

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => _view;
    }
}
