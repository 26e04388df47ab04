using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace VmQuiesce.Core.Sources.PlainImage
{
    /// <summary>
    /// The source of plain image files that nothing writes while they are copied (a stopped VM's disks, an image
    /// on its own): nothing is quiesced, so the point is Crash consistent; nothing is made, so nothing is released.
    /// </summary>
    public sealed class PlainImageSource : IBackupSource
    {
        /// <summary>Restore points of plain images record this source kind.</summary>
        public const string SourceKind = "Files";

        private readonly IReadOnlyList<string> _paths;
        private readonly IOperationHost _host;

        public PlainImageSource(string vmName, IEnumerable<string> paths, IOperationHost? host = null)
        {
            VmName = vmName;
            _paths = paths.ToList();
            _host = host ?? OperationHost.None;
        }

        public string Kind => SourceKind;

        public string VmName { get; }

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
        {
            options.RefuseKeepSnapshot(VmName, "plain files are copied as they are, without a snapshot");
            if (options.Required > Consistency.Crash && options.AllowLower)
            {
                _host.WriteWarning($"The VM '{VmName}' is a set of plain files: it reaches Crash consistency, below the required {options.Required} (accepted by -AllowLowerConsistency).");
            }
            else if (options.Required > Consistency.Crash)
            {
                throw new VmQuiesceException(
                    "ConsistencyNotReached",
                    FailureKind.InvalidOperation,
                    $"The VM '{VmName}' is a set of plain files: it reaches Crash consistency, not the required {options.Required}.",
                    VmName)
                {
                    Remedy = "Use -Consistency Crash, or -AllowLowerConsistency to accept it with a warning.",
                };
            }

            foreach (string path in _paths)
            {
                // A folder goes on to the copy, which names what it is instead of calling it missing.
                if (!File.Exists(path) && !Directory.Exists(path))
                {
                    throw new VmQuiesceException("SourceFileNotFound", FailureKind.ObjectNotFound, $"The file '{path}' of VM '{VmName}' does not exist.", path);
                }
            }

            options.PreFreeze?.Invoke(cancel);
            options.PostThaw?.Invoke(cancel);
            return new PlainImageView(_paths.Select(path => Path.GetFullPath(path)).Select(full => new ViewFile(Path.GetFileName(full), full, full)).ToList());
        }

        /// <summary>The files as they are: each stored under its file name and restored to its full path.</summary>
        private sealed class PlainImageView : IConsistentView
        {
            public PlainImageView(IReadOnlyList<ViewFile> files)
            {
                Files = files;
            }

            public Consistency Reached => Consistency.Crash;

            public IReadOnlyList<ViewFile> Files { get; }

            public CapturedSnapshot? Snapshot => null;

            public QuiesceRecord Quiesce { get; } = new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, QuiesceMethod.None);

            public void Complete(bool success, CancellationToken cancel)
            {
            }

            public void Dispose()
            {
            }
        }
    }
}
