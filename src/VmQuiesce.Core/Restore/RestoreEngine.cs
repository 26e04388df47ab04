using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Restore
{
    /// <summary>Where a restore looks for who uses a file, how much room a folder has, and how it moves files: tests replace each.</summary>
    internal sealed class RestoreEnvironment
    {
        public static readonly RestoreEnvironment Real = new RestoreEnvironment();

        public IFileUsageProbe Usage { get; init; } = HostFileUsageProbe.Instance;

        /// <summary>(volume key, free bytes) of an existing folder; null when unknown (the check is skipped).</summary>
        public Func<string, (string Volume, long Free)?> FreeSpace { get; init; } = QueryFreeSpace;

        public RepositoryFileOps Ops { get; init; } = RepositoryFileOps.Real;

        public SnapshotReverters Reverters { get; init; } = SnapshotReverters.Default;

        private static (string Volume, long Free)? QueryFreeSpace(string folder)
        {
            try
            {
                // Off Windows a DriveInfo over any folder reports its file system (statvfs); folders of one
                // file system report the same totals, which is how they are told apart.
                var drive = new DriveInfo(HostPlatform.IsWindows ? Path.GetPathRoot(folder)! : folder);
                return (HostPlatform.IsWindows ? drive.Name : drive.TotalSize + ":" + drive.TotalFreeSpace, drive.AvailableFreeSpace);
            }
            catch (Exception e) when (e is IOException || e is ArgumentException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// The two-step restore: (1) every file of a restore point is written from verified chunks to a temp
    /// name beside its target, sparse, checked against its whole-file SHA-256 and flushed; (2) the captured
    /// snapshot is applied to those temp files; only then are all targets replaced by renames, with the
    /// originals kept aside until every rename succeeded. A failure or Ctrl+C before that leaves every
    /// original untouched; a failure during the renames puts the originals back.
    /// </summary>
    public sealed class RestoreEngine
    {
        internal const string TempMarker = ".vmquiesce-restore-";
        internal const string ReplacedSuffix = ".vmquiesce-replaced";

        /// <summary>Runs of zeros at least this long (and so aligned) are left as holes.</summary>
        private const int HoleBlock = 4096;

        private readonly BackupRepository _repository;
        private readonly RestoreEnvironment _environment;

        public RestoreEngine(BackupRepository repository)
            : this(repository, RestoreEnvironment.Real)
        {
        }

        internal RestoreEngine(BackupRepository repository, RestoreEnvironment environment)
        {
            _repository = repository;
            _environment = environment;
        }

        /// <summary>
        /// Works out the targets and checks everything that can be checked before writing: safe paths, the
        /// VM is not running, no file is replaced without Force, free space, a reverter for the snapshot kind.
        /// Changes nothing.
        /// </summary>
        public RestorePlan Plan(RestoreRequest request, CancellationToken cancel)
        {
            RestorePoint point = request.Point;
            var reader = new RestorePointReader(_repository, point);
            string? destination = request.Destination == null ? null : FullFolder(request.Destination);
            var targets = new List<RestoreTarget>();
            var seen = new HashSet<string>(HostPlatform.IsWindows ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
            foreach (RestorePointFile file in point.Files)
            {
                string path = destination == null ? OriginalTarget(point, file) : DestinationTarget(point, file, destination);
                if (!seen.Add(path))
                {
                    throw new VmQuiesceException("RestoreTargetDuplicate", FailureKind.InvalidData,
                        $"Two files of restore point '{point.Id}' would be restored to '{path}'.", path)
                    {
                        Remedy = "Restore with -Destination, which places each file under its own relative path.",
                    };
                }

                if (Directory.Exists(path))
                {
                    throw new VmQuiesceException("RestoreTargetIsFolder", FailureKind.InvalidOperation,
                        $"The restore target '{path}' is a folder; expected a file path or nothing.", path);
                }

                targets.Add(new RestoreTarget(file, path, File.Exists(path), reader.DataBytes(file)));
            }

            ISnapshotReverter? reverter = !request.SkipRevert && point.Snapshot != null ? _environment.Reverters.For(point.Snapshot, point.Id) : null;
            var plan = new RestorePlan(request, targets, reverter);
            Check(plan, cancel);
            return plan;
        }

        /// <summary>Runs a plan from <see cref="Plan"/>, reporting its progress to <paramref name="host"/>.</summary>
        public RestoreResult Run(RestorePlan plan, IOperationHost? host, CancellationToken cancel)
        {
            host ??= OperationHost.None;
            // The VM may have been started since the plan was made.
            Check(plan, cancel);
            var clock = Stopwatch.StartNew();
            var reader = new RestorePointReader(_repository, plan.Point);
            var temps = plan.Targets.Select(target => TempPathFor(target.Path)).ToList();
            long bytesTotal = plan.Bytes;
            long bytesDone = 0;
            string revertDetail;
            RevertStatus revert;
            string Revert(IReadOnlyList<string> files, CancellationToken token)
            {
                host.WriteProgress(new RestoreProgress(RestorePhase.Reverting, plan.Point.Snapshot!.Name, bytesDone, bytesTotal, clock.Elapsed));
                return plan.Reverter!.Revert(plan.Point.Snapshot!, files, token);
            }

            try
            {
                for (int i = 0; i < plan.Targets.Count; i++)
                {
                    RestoreTarget target = plan.Targets[i];
                    Directory.CreateDirectory(Path.GetDirectoryName(target.Path)!);
                    long fileStart = bytesDone;
                    WriteSparse(_environment.Ops, reader, target.File, temps[i], done =>
                    {
                        bytesDone = fileStart + done;
                        host.WriteProgress(new RestoreProgress(RestorePhase.Writing, target.Path, bytesDone, bytesTotal, clock.Elapsed));
                    }, cancel);
                    GuestViewImage.WriteImageFormat(temps[i], target.File, cancel);
                }

                if (plan.Reverter != null)
                {
                    cancel.ThrowIfCancellationRequested();
                    revert = RevertStatus.Reverted;
                    revertDetail = plan.Reverter.Stage == RevertStage.BeforeReplace ? Revert(temps, cancel) : string.Empty;
                }
                else if (plan.Point.Snapshot == null)
                {
                    revert = RevertStatus.NotNeeded;
                    revertDetail = "The backup captured no snapshot to revert to: the restored files already are the quiesced point in time.";
                }
                else
                {
                    revert = RevertStatus.Skipped;
                    revertDetail = $"-SkipRevert: the files are back; the snapshot '{plan.Point.Snapshot.Name}' ({plan.Point.Snapshot.Kind}) was not applied.";
                }

                cancel.ThrowIfCancellationRequested();
                host.WriteProgress(new RestoreProgress(RestorePhase.Replacing, plan.Point.VmName, bytesDone, bytesTotal, clock.Elapsed));
            }
            catch
            {
                foreach (string temp in temps)
                {
                    DeleteQuietly(temp);
                }

                throw;
            }

            Replace(plan.Targets, temps);
            if (plan.Reverter?.Stage == RevertStage.AfterReplace)
            {
                var finalPaths = plan.Targets.Select(target => target.Path).ToList();
                try
                {
                    revertDetail = Revert(finalPaths, CancellationToken.None);
                }
                catch (VmQuiesceException e)
                {
                    throw new VmQuiesceException("SnapshotRevertFailed", FailureKind.InvalidOperation,
                        $"The files of restore point '{plan.Point.Id}' are back, but reverting to snapshot '{plan.Point.Snapshot!.Name}' failed: {e.Message}", plan.Point.Snapshot, e)
                    {
                        Remedy = e.Remedy ?? $"Revert the VM to snapshot '{plan.Point.Snapshot.Name}' with the hypervisor's own tool; the restored files are in place.",
                    };
                }
            }

            var files = plan.Targets.Select(target => new RestoredFile(
                target.File.Path,
                target.Path,
                target.File.Size,
                UnixFiles.TryGetDataExtents(target.Path, target.File.Size)?.Sum(extent => extent.Length),
                target.File.Digest,
                target.Exists)).ToList();
            return new RestoreResult(plan.Point, plan.Request.Destination == null ? null : FullFolder(plan.Request.Destination), files, clock.Elapsed, revert, revertDetail);
        }

        internal static string TempPathFor(string target) =>
            Path.Combine(Path.GetDirectoryName(target)!, "." + Path.GetFileName(target) + TempMarker + Guid.NewGuid().ToString("N").Substring(0, 8));

        private void Check(RestorePlan plan, CancellationToken cancel)
        {
            RestorePoint point = plan.Point;
            foreach (RestoreTarget target in plan.Targets)
            {
                cancel.ThrowIfCancellationRequested();
                if (File.Exists(target.Path) && _environment.Usage.FindUser(target.Path, cancel) is string user)
                {
                    throw new VmQuiesceException("VmRunning", FailureKind.ResourceBusy,
                        $"The file '{target.Path}' of VM '{point.VmName}' is in use by {user}: the VM is running. Nothing was restored.", target.Path)
                    {
                        Remedy = $"Shut the VM '{point.VmName}' down (for QEMU: guest-shutdown through its agent, or 'system_powerdown' on its monitor), wait for its process to end, and run the restore again.",
                    };
                }

                if (File.Exists(target.Path + ReplacedSuffix))
                {
                    throw new VmQuiesceException("RestoreLeftoverFound", FailureKind.InvalidOperation,
                        $"'{target.Path + ReplacedSuffix}' exists: an earlier restore was interrupted while replacing files, and it may hold the only copy of the file it replaced.", target.Path + ReplacedSuffix)
                    {
                        Remedy = $"Compare it with '{target.Path}', keep the one you want under '{target.Path}', delete the other, and run the restore again.",
                    };
                }
            }

            var existing = plan.Targets.Where(target => File.Exists(target.Path)).Select(target => target.Path).ToList();
            if (existing.Count > 0 && !plan.Request.Force)
            {
                throw new VmQuiesceException("RestoreTargetExists", FailureKind.InvalidOperation,
                    $"The restore of '{point.Id}' would replace {existing.Count} existing file(s): {string.Join(", ", existing)}. Nothing was restored.", existing[0])
                {
                    Remedy = "Add -Force to replace them (each is kept until the whole restore succeeded), or restore elsewhere with -Destination.",
                };
            }

            CheckFreeSpace(plan);
        }

        private void CheckFreeSpace(RestorePlan plan)
        {
            var needed = new Dictionary<string, (string Folder, long Free, long Needed)>(StringComparer.Ordinal);
            foreach (RestoreTarget target in plan.Targets)
            {
                string folder = NearestExistingFolder(Path.GetDirectoryName(target.Path)!);
                if (_environment.FreeSpace(folder) is (string volume, long free))
                {
                    needed[volume] = needed.TryGetValue(volume, out var known) ? (known.Folder, known.Free, known.Needed + target.DataBytes) : (folder, free, target.DataBytes);
                }
            }

            foreach (var (folder, free, bytes) in needed.Values)
            {
                if (bytes > free)
                {
                    throw new VmQuiesceException("InsufficientDiskSpace", FailureKind.LimitsExceeded,
                        $"The restore of '{plan.Point.Id}' needs up to {bytes:N0} bytes on the file system of '{folder}', which has {free:N0} bytes free. Nothing was restored.", folder)
                    {
                        Remedy = "Free space there (the originals stay until the restore succeeded, so both must fit), or restore elsewhere with -Destination.",
                    };
                }
            }
        }

        private static string NearestExistingFolder(string folder)
        {
            string? current = folder;
            while (current != null && !Directory.Exists(current))
            {
                current = Path.GetDirectoryName(current);
            }

            return current ?? folder;
        }

        /// <summary>
        /// Writes the file from verified chunks, seeking over zero chunks and 4 KiB blocks of zeros so they
        /// stay holes, then sets the length, and flushes to disk. The reader checks the whole-file digest.
        /// With chunks a whole number of 4 KiB blocks, every write starts on a block boundary, so the file is
        /// written past the page cache where the platform allows (<see cref="RepositoryFileOps.CreateNewBulk"/>).
        /// </summary>
        private static void WriteSparse(RepositoryFileOps ops, RestorePointReader reader, RestorePointFile file, string temp, Action<long> written, CancellationToken cancel)
        {
            using Stream stream = reader.Point.ChunkSize % DirectFileStream.Alignment == 0 ? ops.CreateNewBulk(temp) : ops.CreateNew(temp);
            var lastReport = DateTime.MinValue;
            reader.Read(file, (offset, buffer, length) =>
            {
                if (buffer != null)
                {
                    WriteDataRuns(stream, offset, buffer, length);
                }

                if ((DateTime.UtcNow - lastReport).TotalMilliseconds >= 100 || offset + length == file.Size)
                {
                    lastReport = DateTime.UtcNow;
                    written(offset + length);
                }
            }, cancel);
            stream.SetLength(file.Size);
            ops.FlushToDisk(stream);
        }

        private static void WriteDataRuns(Stream stream, long offset, byte[] buffer, int length)
        {
            int position = 0;
            while (position < length)
            {
                while (position < length && ZeroBytes.IsAllZero(buffer, position, Math.Min(HoleBlock, length - position)))
                {
                    position += HoleBlock;
                }

                int start = position;
                while (position < length && !ZeroBytes.IsAllZero(buffer, position, Math.Min(HoleBlock, length - position)))
                {
                    position += HoleBlock;
                }

                int end = Math.Min(position, length);
                if (end > start)
                {
                    stream.Position = offset + start;
                    stream.Write(buffer, start, end - start);
                }
            }
        }

        /// <summary>
        /// Moves each original aside (.vmquiesce-replaced) and its restored file in; when any step fails,
        /// undoes the steps done so far, so every original is back, and throws.
        /// </summary>
        private void Replace(IReadOnlyList<RestoreTarget> targets, IReadOnlyList<string> temps)
        {
            RepositoryFileOps ops = _environment.Ops;
            var done = new List<(string Target, string? Aside, bool RestoredIn)>();
            try
            {
                for (int i = 0; i < targets.Count; i++)
                {
                    string target = targets[i].Path;
                    string? aside = null;
                    if (File.Exists(target))
                    {
                        aside = target + ReplacedSuffix;
                        Move(ops, target, aside);
                    }

                    done.Add((target, aside, false));
                    Move(ops, temps[i], target);
                    done[done.Count - 1] = (target, aside, true);
                }

                foreach (string folder in targets.Select(target => Path.GetDirectoryName(target.Path)!).Distinct())
                {
                    ops.SyncDirectory(folder);
                }
            }
            catch (Exception failure) when (failure is IOException || failure is UnauthorizedAccessException)
            {
                var stuck = new List<string>();
                for (int i = done.Count - 1; i >= 0; i--)
                {
                    var (target, aside, restoredIn) = done[i];
                    try
                    {
                        if (restoredIn)
                        {
                            ops.Delete(target);
                        }

                        if (aside != null)
                        {
                            Move(ops, aside, target);
                        }
                    }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                    {
                        stuck.Add(aside != null ? $"'{aside}' -> '{target}'" : $"'{target}'");
                    }
                }

                foreach (string temp in temps)
                {
                    DeleteQuietly(temp);
                }

                throw stuck.Count == 0
                    ? new VmQuiesceException("RestoreReplaceFailed", FailureKind.WriteError,
                        $"Replacing the files failed ({failure.Message}); every original file was put back.", failure.Message, failure)
                    : new VmQuiesceException("RestoreRollbackFailed", FailureKind.WriteError,
                        $"Replacing the files failed ({failure.Message}) and putting these originals back failed too: {string.Join(", ", stuck)}.", stuck, failure)
                    {
                        Remedy = "Rename each '.vmquiesce-replaced' file named above back to its original name by hand before starting the VM.",
                    };
            }

            foreach (var (_, aside, _) in done)
            {
                if (aside != null)
                {
                    DeleteQuietly(aside);
                }
            }
        }

        private static void Move(RepositoryFileOps ops, string from, string to)
        {
            if (!ops.MoveNew(from, to))
            {
                throw new IOException($"'{to}' exists, so '{from}' cannot be renamed to it");
            }
        }

        private static void DeleteQuietly(string path)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // A temp left behind is harmless: its name says what it is.
            }
        }

        private static string FullFolder(string folder) => Path.GetFullPath(folder);

        private static string OriginalTarget(RestorePoint point, RestorePointFile file)
        {
            if (string.IsNullOrEmpty(file.OriginalPath) || !Path.IsPathRooted(file.OriginalPath))
            {
                throw new VmQuiesceException("RestoreOriginalPathInvalid", FailureKind.InvalidData,
                    $"The file '{file.Path}' of restore point '{point.Id}' has no absolute original path ('{file.OriginalPath}').", file.Path)
                {
                    Remedy = "Restore it with -Destination <folder>.",
                };
            }

            return Path.GetFullPath(file.OriginalPath);
        }

        private static string DestinationTarget(RestorePoint point, RestorePointFile file, string destination)
        {
            string[] parts = file.Path.Split('/');
            if (parts.Any(part => part.Length == 0 || part == "." || part == ".." || part.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0))
            {
                throw new VmQuiesceException("RestorePathUnsafe", FailureKind.InvalidData,
                    $"The file path '{file.Path}' in restore point '{point.Id}' is not a plain relative path; it is not restored outside '{destination}'.", file.Path);
            }

            return Path.Combine(new[] { destination }.Concat(parts).ToArray());
        }
    }
}
