using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
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

        public RestoreFileOps Files { get; init; } = RestoreFileOps.Real;

        public SnapshotReverters Reverters { get; init; } = SnapshotReverters.Default;

        /// <summary>For tests: called with each entry the tidy-up after a failed restore finds in a folder it made, before entering it.</summary>
        public Action<string>? BeforeEnteringMadeFolder { get; init; }

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

    /// <summary>The renames and links that make the replace safe; tests replace it to fail at any step.</summary>
    internal class RestoreFileOps
    {
        public static readonly RestoreFileOps Real = new RestoreFileOps();

        public virtual bool TryLink(TrustedFolder folder, string existing, string name) => folder.TryLink(existing, name);

        public virtual void Rename(TrustedFolder folder, string from, string to) => folder.Rename(from, to);
    }

    /// <summary>
    /// The two-step restore: (1) every file of a restore point is written from verified chunks to a temp
    /// name beside its target, sparse, checked against its whole-file digest, given the original's owner and
    /// mode, and flushed; (2) the captured snapshot is applied to those temp files; only then is each target
    /// replaced in one rename, its original first hard-linked aside, so a file is always at the target (the old
    /// one or the new one) whenever the process dies. A failure or Ctrl+C before that leaves every original
    /// untouched; a failure during the renames puts the originals back. The folders on the way to a target are
    /// opened without following links someone else made (see <see cref="TrustedFolder"/>), and everything is
    /// written relative to them. What a killed restore left (its temp file, an original's extra link) is found
    /// and cleaned by the next one.
    /// </summary>
    public sealed class RestoreEngine
    {
        internal const string TempMarker = ".vmquiesce-restore-";
        internal const string ReplacedSuffix = ".vmquiesce-replaced";

        /// <summary>Runs of zeros at least this long (and so aligned) are left as holes.</summary>
        private const int HoleBlock = RestorePoint.AllocationBlock;

        /// <summary>The mode of a restored file whose original mode is not known (older points, another host).</summary>
        private const int UnknownMode = 0x180; // 0600

        private readonly IRestorePointSource _repository;
        private readonly RestoreEnvironment _environment;

        /// <param name="repository">A folder repository or one on object storage: chunks are read, verified and written the same way from either.</param>
        public RestoreEngine(IRestorePointSource repository)
            : this(repository, RestoreEnvironment.Real)
        {
        }

        /// <param name="reverters">How snapshots are reverted (e.g. <see cref="SnapshotReverters.WithVmrun"/> for Restore-VmSnapshot -VmrunPath).</param>
        public RestoreEngine(IRestorePointSource repository, SnapshotReverters reverters)
            : this(repository, new RestoreEnvironment { Reverters = reverters })
        {
        }

        internal RestoreEngine(IRestorePointSource repository, RestoreEnvironment environment)
        {
            _repository = repository;
            _environment = environment;
        }

        /// <summary>
        /// Works out the targets and checks everything that can be checked before writing: safe paths and
        /// folders, the VM is not running, no file is replaced without Force, free space, a reverter for the
        /// snapshot kind. Changes nothing.
        /// </summary>
        public RestorePlan Plan(RestoreRequest request, CancellationToken cancel)
        {
            RestorePoint point = request.Point;
            var reader = new RestorePointReader(_repository, point);
            string? destination = request.Destination == null ? null : FullFolder(request.Destination);
            var targets = new List<RestoreTarget>();
            var seen = new HashSet<string>(HostPlatform.IsWindows ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
            IReadOnlyList<string>? vmFolders = destination == null ? OriginalLocation.AllowedFolders(_repository, point) : null;
            foreach (RestorePointFile file in point.Files)
            {
                string path = destination == null ? OriginalTarget(point, file) : DestinationTarget(point, file, destination);
                if (vmFolders != null)
                {
                    OriginalLocation.Check(point, vmFolders, path);
                }

                if (!seen.Add(path))
                {
                    throw new VmQuiesceException("RestoreTargetDuplicate", FailureKind.InvalidData,
                        $"Two files of restore point '{point.Id}' would be restored to '{path}'.", path)
                    {
                        Remedy = "Restore with -Destination, which places each file under its own relative path.",
                    };
                }

                CheckFolder(path, OwnerOnThisHost(point, file)?.Uid, destination);
                if (Directory.Exists(path))
                {
                    throw new VmQuiesceException("RestoreTargetIsFolder", FailureKind.InvalidOperation,
                        $"The restore target '{path}' is a folder; expected a file path or nothing.", path);
                }

                if (RegularFile.StatNoFollow(path) is FileStatus found && !found.IsRegularFile)
                {
                    throw new VmQuiesceException("RestoreTargetNotAFile", FailureKind.InvalidOperation,
                        $"The restore target '{path}' is {found.KindName}; expected a regular file or nothing. Nothing was restored.", path)
                    {
                        Remedy = "Remove it (a link is never written through), or restore elsewhere with -Destination.",
                    };
                }

                targets.Add(new RestoreTarget(file, path, File.Exists(path), file.AllocatedBytes ?? reader.DataBytes(file)));
            }

            ISnapshotReverter? reverter = !request.SkipRevert && point.Snapshot != null ? _environment.Reverters.For(point.Snapshot, point.Id) : null;
            var plan = new RestorePlan(request, targets, reverter);
            Check(plan, cancel);
            return plan;
        }

        /// <summary>
        /// After a failed restore into a -Destination it made: that folder and the folders below it go again where
        /// they are empty (the written files are gone by then); nothing else is deleted. The folders were given to the
        /// restored files' owners, who could swap one for a link to have root remove empty folders wherever it led: so
        /// each is entered through its parent's descriptor and removed relative to it, and a link is never entered.
        /// </summary>
        private void RemoveEmptyFolders(string destination)
        {
            try
            {
                using TrustedFolder parent = TrustedFolder.Open(Path.GetDirectoryName(destination)!, RegularFile.StatNoFollow(destination)?.Uid, create: false);
                RemoveIfEmpty(parent, Path.GetFileName(destination));
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // Its parent is gone or refused: the folder stays, as it would have without this tidy-up.
            }
        }

        private void RemoveIfEmpty(TrustedFolder parent, string name)
        {
            try
            {
                // Whoever owns it, it is reached from this descriptor and not through a link: its owner is no reason to stop.
                using (TrustedFolder folder = parent.OpenBelow(name, parent.Stat(name)?.Uid, create: false))
                {
                    foreach (string below in folder.Names().ToList())
                    {
                        _environment.BeforeEnteringMadeFolder?.Invoke(folder.Combine(below));
                        RemoveIfEmpty(folder, below);
                    }
                }

                parent.DeleteFolder(name);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // A file, a link, not empty, or not ours to remove: it stays, as it would have without this tidy-up.
            }
        }

        /// <summary>Runs a plan from <see cref="Plan"/>, reporting its progress to <paramref name="host"/>.</summary>
        public RestoreResult Run(RestorePlan plan, IOperationHost? host, CancellationToken cancel)
        {
            host ??= OperationHost.None;
            // The VM may have been started since the plan was made.
            Check(plan, cancel);
            var clock = Stopwatch.StartNew();
            string? madeDestination = plan.Request.Destination is string given && !Directory.Exists(FullFolder(given)) ? FullFolder(given) : null;
            var reader = new RestorePointReader(_repository, plan.Point);
            var folders = new Dictionary<string, TrustedFolder>(StringComparer.Ordinal);
            var written = new List<WrittenFile>();
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
                try
                {
                    foreach (RestoreTarget target in plan.Targets)
                    {
                        TrustedFolder folder = OpenFolder(folders, plan, target);
                        CleanLeftovers(folder, target.Path, host);
                        long fileStart = bytesDone;
                        written.Add(Write(folder, reader, target, OwnerOnThisHost(plan.Point, target.File), done =>
                        {
                            bytesDone = fileStart + done;
                            host.WriteProgress(new RestoreProgress(RestorePhase.Writing, target.Path, bytesDone, bytesTotal, clock.Elapsed));
                        }, cancel));
                    }

                    if (plan.Reverter != null)
                    {
                        cancel.ThrowIfCancellationRequested();
                        revert = RevertStatus.Reverted;
                        revertDetail = plan.Reverter.Stage == RevertStage.BeforeReplace ? RevertTemps(written, files => Revert(files, cancel)) : string.Empty;
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
                catch (Exception failure)
                {
                    foreach (WrittenFile file in written)
                    {
                        file.Discard();
                    }

                    if (madeDestination != null)
                    {
                        RemoveEmptyFolders(madeDestination);
                    }

                    if (WriteFailure(plan, failure) is VmQuiesceException typed)
                    {
                        throw typed;
                    }

                    throw;
                }

                Replace(written);
            }
            finally
            {
                foreach (WrittenFile file in written)
                {
                    file.Dispose();
                }

                foreach (TrustedFolder folder in folders.Values)
                {
                    folder.Dispose();
                }
            }

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

        /// <summary>
        /// Reverts the written temp files, unlocked meanwhile: the revert's tool locks them itself, and on NFS an
        /// flock is a whole-file lock that its own would meet. Locked again after, so that until the rename another
        /// restore sees them in use.
        /// </summary>
        private static string RevertTemps(List<WrittenFile> written, Func<IReadOnlyList<string>, string> revert)
        {
            written.ForEach(file => file.Unlock());
            string detail = revert(written.Select(file => file.RevertPath).ToList());
            foreach (WrittenFile file in written.Where(file => !file.TryLock()))
            {
                throw RestoreInProgress(file.TempPath, file.Folder.Combine(file.TargetName));
            }

            return detail;
        }

        /// <summary>The hidden temp name a target is written under: ".&lt;name&gt;.vmquiesce-restore-&lt;8 hex&gt;".</summary>
        internal static string TempNameFor(string target) =>
            "." + Path.GetFileName(target) + TempMarker + Guid.NewGuid().ToString("N").Substring(0, 8);

        /// <summary>
        /// The recorded owner when the file is restored on the host that backed it up (ids mean the same users
        /// there); elsewhere null, and the file stays root's with its owner bits only.
        /// </summary>
        private static FileOwner? OwnerOnThisHost(RestorePoint point, RestorePointFile file) =>
            string.Equals(point.Host, Environment.MachineName, StringComparison.OrdinalIgnoreCase) ? file.OwnerValue : null;

        private static int ModeFor(RestorePointFile file, FileOwner? owner) => owner?.Mode ?? (file.OwnerValue == null ? UnknownMode : file.OwnerValue.Mode & 0x1C0);

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

                string aside = target.Path + ReplacedSuffix;
                if (RegularFile.StatNoFollow(aside) is FileStatus leftover ? !IsSameFile(leftover, target.Path) : File.Exists(aside))
                {
                    throw new VmQuiesceException("RestoreLeftoverFound", FailureKind.InvalidOperation,
                        $"'{aside}' exists and is not '{target.Path}': a restore was interrupted while it replaced files, and it may hold the only copy of the file it replaced.", aside)
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

            foreach (var (folder, free, bytes) in SpaceByVolume(plan))
            {
                if (bytes > free)
                {
                    throw new VmQuiesceException("InsufficientDiskSpace", FailureKind.LimitsExceeded,
                        $"The restore of '{plan.Point.Id}' needs {ExactBytes(bytes)} on the file system of '{folder}', which has {ExactBytes(free)} free. Nothing was restored.", folder)
                    {
                        Remedy = $"Free at least {ExactBytes(bytes - free)} there (the originals stay until the restore succeeded, so both must fit), or restore elsewhere with -Destination.",
                    };
                }
            }
        }

        /// <summary>
        /// Per file system: the folder asked, its free bytes (plus what leftovers of dead restores there take, which
        /// this restore removes) and the bytes the targets there will allocate (their data blocks; holes are free).
        /// </summary>
        private List<(string Folder, long Free, long Needed)> SpaceByVolume(RestorePlan plan)
        {
            var volumes = new Dictionary<string, (string Folder, long Free, long Needed)>(StringComparer.Ordinal);
            foreach (RestoreTarget target in plan.Targets)
            {
                string folder = NearestExistingFolder(Path.GetDirectoryName(target.Path)!);
                if (_environment.FreeSpace(folder) is (string volume, long free))
                {
                    long reclaimable = LeftoverTemps(target.Path).Sum(temp => RegularFile.StatNoFollow(temp)?.Allocated ?? 0);
                    volumes[volume] = volumes.TryGetValue(volume, out var known)
                        ? (known.Folder, SaturatingAdd(known.Free, reclaimable), known.Needed + target.DataBytes)
                        : (folder, SaturatingAdd(free, reclaimable), target.DataBytes);
                }
            }

            return volumes.Values.ToList();
        }

        private static long SaturatingAdd(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

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
        /// Refuses, before anything changes, a target whose existing folders lead through a link someone else
        /// made (or any link below -Destination), a file, or a folder someone else owns. Missing folders are fine.
        /// </summary>
        private static void CheckFolder(string target, uint? owner, string? destination)
        {
            try
            {
                OpenTargetFolder(target, owner, destination, create: false).Dispose();
            }
            catch (FolderTrustException e) when (e.Problem == FolderProblem.Missing)
            {
                // Made when the restore runs.
            }
            catch (FolderTrustException e)
            {
                throw FolderRefused(target, e);
            }
        }

        private static TrustedFolder OpenFolder(Dictionary<string, TrustedFolder> folders, RestorePlan plan, RestoreTarget target)
        {
            string path = Path.GetDirectoryName(target.Path)!;
            if (!folders.TryGetValue(path, out TrustedFolder? folder))
            {
                try
                {
                    folder = OpenTargetFolder(target.Path, OwnerOnThisHost(plan.Point, target.File)?.Uid, plan.Request.Destination == null ? null : FullFolder(plan.Request.Destination), create: true);
                }
                catch (FolderTrustException e)
                {
                    throw FolderRefused(target.Path, e);
                }

                folders[path] = folder;
            }

            return folder;
        }

        /// <summary>The target's folder; below a -Destination no link is followed at all, so nothing lands outside it.</summary>
        private static TrustedFolder OpenTargetFolder(string target, uint? owner, string? destination, bool create)
        {
            string folder = Path.GetDirectoryName(target)!;
            if (destination == null)
            {
                return TrustedFolder.Open(folder, owner, create);
            }

            TrustedFolder root = TrustedFolder.Open(destination, owner, create);
            if (folder == destination)
            {
                return root;
            }

            using (root)
            {
                return root.OpenBelow(folder.Substring(destination.Length + 1).Replace(Path.DirectorySeparatorChar, '/'), owner, create);
            }
        }

        private static VmQuiesceException FolderRefused(string target, FolderTrustException e) => e.Problem == FolderProblem.NotAFolder
            ? new VmQuiesceException("RestoreTargetUnderFile", FailureKind.InvalidArgument, $"{e.Message} The restore target '{target}' runs under it. Nothing was restored.", e.Folder, e)
            {
                Remedy = "Move that file out of the way, or restore elsewhere with -Destination.",
            }
            : new VmQuiesceException("RestoreTargetFolderUnsafe", FailureKind.SecurityError, $"{e.Message} The restore target is '{target}'. Nothing was restored.", e.Folder, e)
            {
                Remedy = "Make it a real folder owned by root (or by the restored file's owner), or restore elsewhere with -Destination into a folder only root can change.",
            };

        /// <summary>Temp files that earlier restores of <paramref name="target"/> left (full paths).</summary>
        private static IEnumerable<string> LeftoverTemps(string target)
        {
            string folder = Path.GetDirectoryName(target)!;
            if (!Directory.Exists(folder))
            {
                return Enumerable.Empty<string>();
            }

            string prefix = "." + Path.GetFileName(target) + TempMarker;
            return Directory.EnumerateFiles(folder, prefix + "*").Where(path => Path.GetFileName(path).Length == prefix.Length + 8).ToList();
        }

        /// <summary>
        /// Removes what a killed restore of this target left: its temp files (unless a running restore still holds
        /// one: then this one stops) and an aside link that is the target itself. Each removal is reported.
        /// </summary>
        private static void CleanLeftovers(TrustedFolder folder, string target, IOperationHost host)
        {
            foreach (string temp in LeftoverTemps(target))
            {
                string name = Path.GetFileName(temp);
                FileStream? leftover;
                try
                {
                    leftover = folder.OpenExistingForWrite(name);
                }
                catch (IOException) when (!HostPlatform.IsLinux)
                {
                    // Windows: a temp another process still has open cannot be opened for writing at all.
                    throw RestoreInProgress(temp, target);
                }

                if (leftover == null)
                {
                    continue;
                }

                using (leftover)
                {
                    // The restore that writes a temp holds an flock on it until the temp is renamed into place.
                    if (HostPlatform.IsLinux && !RegularFile.TryLockExclusive((int)leftover.SafeFileHandle.DangerousGetHandle()))
                    {
                        throw RestoreInProgress(temp, target);
                    }

                    long size = leftover.Length;
                    folder.Delete(name);
                    host.WriteWarning($"Removed '{temp}' ({ExactBytes(size)}), which a restore of '{target}' that was interrupted left behind.");
                }
            }

            string aside = Path.GetFileName(target) + ReplacedSuffix;
            if (folder.Stat(aside) is FileStatus extra && folder.Stat(Path.GetFileName(target)) is FileStatus current && extra.IsSameFile(current))
            {
                folder.Delete(aside);
                host.WriteWarning($"Removed '{folder.Combine(aside)}', a second name for '{target}' that an interrupted restore left (the file itself is unchanged).");
            }
        }

        private static VmQuiesceException RestoreInProgress(string temp, string target) =>
            new VmQuiesceException("RestoreInProgress", FailureKind.ResourceBusy,
                $"Another restore is writing '{temp}' for '{target}' right now. Nothing was restored.", target)
            {
                Remedy = "Wait for that restore to finish; two restores of one file cannot both win.",
            };

        private static bool IsSameFile(FileStatus status, string path) => RegularFile.StatNoFollow(path) is FileStatus other && status.IsSameFile(other);

        /// <summary>
        /// Writes the file from verified chunks under a temp name in <paramref name="folder"/>, seeking over zero
        /// chunks and 4 KiB blocks of zeros so they stay holes, sets the length, gives it its owner and mode, and
        /// flushes it to disk. The reader checks the whole-file digest. With chunks a whole number of 4 KiB blocks,
        /// every write starts on a block boundary, so it is written past the page cache where the platform allows.
        /// </summary>
        private static WrittenFile Write(TrustedFolder folder, RestorePointReader reader, RestoreTarget target, FileOwner? owner, Action<long> written, CancellationToken cancel)
        {
            string temp = TempNameFor(target.Path);
            // A disk written back as qcow2 is rewritten through this stream (GuestViewImage), which a direct write cannot do.
            CreatedFile created = folder.CreateNew(temp, direct: reader.Point.ChunkSize % DirectFileStream.Alignment == 0 && !GuestViewImage.IsConverted(target.File));
            var file = new WrittenFile(folder, temp, Path.GetFileName(target.Path), created);
            try
            {
                if (!created.TryLock())
                {
                    // Another restore's leftover clean-up opened it between its creation and this lock.
                    throw RestoreInProgress(file.TempPath, target.Path);
                }

                Stream stream = created.Stream;
                var lastReport = DateTime.MinValue;
                reader.Read(target.File, (offset, buffer, length) =>
                {
                    if (buffer != null)
                    {
                        WriteDataRuns(stream, offset, buffer, length);
                    }

                    if ((DateTime.UtcNow - lastReport).TotalMilliseconds >= 100 || offset + length == target.File.Size)
                    {
                        lastReport = DateTime.UtcNow;
                        written(offset + length);
                    }
                }, cancel);
                stream.SetLength(target.File.Size);
                GuestViewImage.WriteImageFormat(folder, temp, created, target.File, (at, buffer, length) => WriteDataRuns(stream, at, buffer, length), cancel);
                created.SetOwnerAndMode(owner?.Uid, owner?.Gid, ModeFor(target.File, owner));
                RepositoryFileOps.Real.FlushToDisk(stream);
                created.SyncMetadata();
                return file;
            }
            catch
            {
                file.Discard();
                file.Dispose();
                throw;
            }
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
        /// Replaces each target in one rename, its original first given a second name (.vmquiesce-replaced, a hard
        /// link) so it can be put back; where the file system has no hard links the original is renamed aside
        /// instead. When any step fails, undoes the steps done so far, so every original is back, and throws.
        /// </summary>
        private void Replace(IReadOnlyList<WrittenFile> written)
        {
            RestoreFileOps ops = _environment.Files;
            if (written.FirstOrDefault(file => !file.IsStillAtTempName()) is WrittenFile swapped)
            {
                throw new VmQuiesceException("RestoreTempFileReplaced", FailureKind.SecurityError,
                    $"'{swapped.TempPath}' is no longer the file this restore wrote to restore '{swapped.Folder.Combine(swapped.TargetName)}': someone who may write '{swapped.Folder.Path}' renamed it or put something in its place. Nothing was replaced.", swapped.TempPath)
                {
                    Remedy = $"Find out who changed '{swapped.Folder.Path}' and restrict who may write it, then run the restore again.",
                };
            }

            var done = new List<(WrittenFile File, string Target, string? Aside, bool RestoredIn)>();
            try
            {
                foreach (WrittenFile file in written)
                {
                    string target = file.TargetName;
                    string? aside = null;
                    if (file.Folder.Exists(target))
                    {
                        aside = target + ReplacedSuffix;
                        if (!ops.TryLink(file.Folder, target, aside))
                        {
                            ops.Rename(file.Folder, target, aside);
                        }
                    }

                    done.Add((file, target, aside, false));
                    ops.Rename(file.Folder, file.TempName, target);
                    file.Renamed();
                    done[done.Count - 1] = (file, target, aside, true);
                }

                foreach (TrustedFolder folder in written.Select(file => file.Folder).Distinct())
                {
                    folder.Sync();
                }
            }
            catch (Exception failure) when (failure is IOException || failure is UnauthorizedAccessException)
            {
                var stuck = new List<string>();
                for (int i = done.Count - 1; i >= 0; i--)
                {
                    var (file, target, aside, restoredIn) = done[i];
                    try
                    {
                        if (aside != null && (restoredIn || !file.Folder.Exists(target)))
                        {
                            ops.Rename(file.Folder, aside, target);
                        }
                        else if (aside != null)
                        {
                            file.Folder.Delete(aside);
                        }
                        else if (restoredIn)
                        {
                            file.Folder.Delete(target);
                        }
                    }
                    catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                    {
                        stuck.Add(aside != null ? $"'{file.Folder.Combine(aside)}' -> '{file.Folder.Combine(target)}'" : $"'{file.Folder.Combine(target)}'");
                    }
                }

                foreach (WrittenFile file in written)
                {
                    file.Discard();
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

            foreach (var (file, _, aside, _) in done)
            {
                if (aside != null)
                {
                    DeleteQuietly(file.Folder, aside);
                }
            }

            // Else a power cut could bring back a second name of a replaced original, which the next restore refuses.
            foreach (TrustedFolder folder in done.Where(step => step.Aside != null).Select(step => step.File.Folder).Distinct())
            {
                folder.Sync();
            }
        }

        /// <summary>
        /// A write that failed for a reason the user can act on, as a typed error (null: rethrow as it is): the
        /// file system full (with how much the restore needs), read-only, or not writable by this user.
        /// </summary>
        private VmQuiesceException? WriteFailure(RestorePlan plan, Exception failure)
        {
            if (failure is VmQuiesceException || failure is OperationCanceledException || !(failure is IOException || failure is UnauthorizedAccessException))
            {
                return null;
            }

            if (RegularFile.IsDiskFull(failure))
            {
                var (folder, free, needed) = SpaceByVolume(plan).OrderByDescending(volume => volume.Needed - volume.Free).FirstOrDefault();
                string figures = folder == null ? string.Empty : $" It needs {ExactBytes(needed)} there, and {ExactBytes(free)} are free with this restore's temp files removed.";
                return new VmQuiesceException("RestoreDestinationFull", FailureKind.LimitsExceeded,
                    $"The file system of '{folder ?? failure.Message}' is full: the restore of '{plan.Point.Id}' could not write all its files.{figures} Nothing was replaced.", folder, failure)
                {
                    Remedy = folder == null ? "Free space there, or restore elsewhere with -Destination."
                        : $"Free at least {ExactBytes(Math.Max(needed - free, RestorePoint.AllocationBlock))} on the file system of '{folder}' (the originals stay until the restore succeeded, so both must fit), or restore elsewhere with -Destination.",
                };
            }

            if (RegularFile.IsReadOnlyFileSystem(failure))
            {
                return new VmQuiesceException("RestoreTargetReadOnly", FailureKind.PermissionDenied,
                    $"The restore of '{plan.Point.Id}' cannot write there: the file system is mounted read-only ({failure.Message}). Nothing was replaced.", failure.Message, failure)
                {
                    Remedy = "Remount it read-write, or restore elsewhere with -Destination.",
                };
            }

            return new VmQuiesceException("RestoreWriteFailed", FailureKind.WriteError,
                $"The restore of '{plan.Point.Id}' could not write its files: {failure.Message} Nothing was replaced.", failure.Message, failure)
            {
                Remedy = "Run as root (or Administrator) for the original paths, or restore with -Destination into a folder you may write.",
            };
        }

        /// <summary>"1,148,207,104 bytes (1.1 GiB)": exact, and readable.</summary>
        private static string ExactBytes(long bytes) =>
            bytes < 1024 ? bytes.ToString("N0", CultureInfo.InvariantCulture) + " bytes" : $"{bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes ({ByteText.Of(bytes)})";

        private static void DeleteQuietly(TrustedFolder folder, string name)
        {
            try
            {
                folder.Delete(name);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // Harmless: the next restore removes a second name of its target, and a temp no one holds.
            }
        }

        private static string FullFolder(string folder)
        {
            string full = RepositoryLayout.FullPath(folder, "destination", "InvalidDestinationPath");
            if (full.Length > (Path.GetPathRoot(full) ?? string.Empty).Length)
            {
                full = full.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
            }

            RepositoryLayout.ThrowIfFileOnPath(full, folder, "destination", "RestoreDestinationIsFile");
            return full;
        }

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

        /// <summary>A restored file under its temp name, held open (and locked) until it is renamed into place or discarded.</summary>
        private sealed class WrittenFile : IDisposable
        {
            private readonly CreatedFile _created;
            private bool _renamed;

            public WrittenFile(TrustedFolder folder, string tempName, string targetName, CreatedFile created)
            {
                Folder = folder;
                TempName = tempName;
                TargetName = targetName;
                _created = created;
            }

            public TrustedFolder Folder { get; }

            public string TempName { get; }

            public string TargetName { get; }

            public string TempPath => Folder.Combine(TempName);

            /// <summary>The temp file as the revert's tool is given it: through this process's descriptor where there is one, so a name swapped meanwhile is not followed.</summary>
            public string RevertPath => _created.DescriptorPath ?? TempPath;

            public bool IsStillAtTempName() => _created.IsStillNamed(Folder, TempName);

            public void Renamed() => _renamed = true;

            public bool TryLock() => _created.TryLock();

            public void Unlock() => _created.Unlock();

            /// <summary>Removes the temp file unless it was renamed into place (a failure or Ctrl+C before the replace).</summary>
            public void Discard()
            {
                if (!_renamed)
                {
                    _renamed = true;
                    DeleteQuietly(Folder, TempName);
                }
            }

            public void Dispose() => _created.Dispose();
        }
    }
}
