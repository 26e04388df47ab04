using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Tests
{
    /// <summary>
    /// A consistent view over files given as they are (any relative paths, for the engine's checks): Crash
    /// consistency, nothing quiesced, and it remembers how it was completed.
    /// </summary>
    public sealed class StableFilesView : IConsistentView
    {
        public StableFilesView(IEnumerable<ViewFile> files)
        {
            Files = files.ToList();
        }

        /// <summary>Each path is stored under its file name and restored to its full path; <paramref name="snapshot"/> as a hypervisor source with a revert step records one.</summary>
        public static StableFilesView ForPaths(IEnumerable<string> paths, CapturedSnapshot? snapshot = null) =>
            new StableFilesView(paths.Select(path => Path.GetFullPath(path)).Select(full => new ViewFile(Path.GetFileName(full), full, full))) { Snapshot = snapshot };

        public Consistency Reached => Consistency.Crash;

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot { get; init; }

        public QuiesceRecord Quiesce => QuiesceFailure != null ? throw QuiesceFailure : new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, QuiesceMethod.None);

        /// <summary>What <see cref="Quiesce"/> throws when set: what a view that finishes its record beside the copy (a post-thaw hook) found.</summary>
        public Exception? QuiesceFailure { get; init; }

        /// <summary>Null until Complete is called, then its success argument.</summary>
        public bool? CompletedWith { get; private set; }

        public void Complete(bool success, CancellationToken cancel) => CompletedWith = success;

        public void Dispose()
        {
        }
    }
}
