using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Backup
{
    /// <summary>
    /// A consistent view over plain files that are already stable (nothing writes them): Crash
    /// consistency, nothing quiesced, nothing to release. Used by tests, and by sources whose files
    /// are stable once a snapshot is taken.
    /// </summary>
    public sealed class StableFilesView : IConsistentView
    {
        public StableFilesView(IEnumerable<ViewFile> files)
        {
            Files = files.ToList();
        }

        /// <summary>Each path is stored under its file name and restored to its full path.</summary>
        public static StableFilesView ForPaths(IEnumerable<string> paths) =>
            new StableFilesView(paths.Select(path => Path.GetFullPath(path)).Select(full => new ViewFile(Path.GetFileName(full), full, full)));

        public Consistency Reached => Consistency.Crash;

        public IReadOnlyList<ViewFile> Files { get; }

        public CapturedSnapshot? Snapshot => null;

        public QuiesceRecord Quiesce { get; } = new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, "None");

        /// <summary>Null until Complete is called, then its success argument.</summary>
        public bool? CompletedWith { get; private set; }

        public void Complete(bool success, CancellationToken cancel) => CompletedWith = success;

        public void Dispose()
        {
        }
    }

    /// <summary>A backup source over plain, stable files (kind "Files"): crash consistent, no quiesce.</summary>
    public sealed class StableFilesSource : IBackupSource
    {
        private readonly IReadOnlyList<string> _paths;
        private readonly SourceMessages _messages;

        public StableFilesSource(string vmName, IEnumerable<string> paths, SourceMessages? messages = null)
        {
            VmName = vmName;
            _paths = paths.ToList();
            _messages = messages ?? SourceMessages.None;
        }

        public string Kind => "Files";

        public string VmName { get; }

        /// <summary>A VM target for Invoke-VmQuiescedBackup whose disks are these files.</summary>
        public static BackupVm CreateVm(string vmName, string[] paths)
        {
            var details = new Dictionary<string, string> { ["Files"] = string.Join(", ", paths) };
            return new BackupVm(vmName, "Files", paths.Length > 0 ? Path.GetDirectoryName(Path.GetFullPath(paths[0])) ?? string.Empty : string.Empty, details, messages => new StableFilesSource(vmName, paths, messages));
        }

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
        {
            if (options.Required > Consistency.Crash && options.AllowLower)
            {
                _messages.Warn?.Invoke($"The VM '{VmName}' is a set of plain files: it reaches Crash consistency, below the required {options.Required} (accepted by -AllowLowerConsistency).");
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
            return StableFilesView.ForPaths(_paths);
        }
    }
}
