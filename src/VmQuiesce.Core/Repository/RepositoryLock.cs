using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Keeps prune and backups from colliding. Backups, verifies and restores hold a shared lock
    /// (locks/shared-&lt;guid&gt;.lock), prune holds the exclusive one (locks/exclusive.lock); each file says who
    /// holds it (host, boot, PID namespace, pid and process start, purpose). A lock file is written whole under a
    /// temp name first, so one under its final name is never cut short. A lock whose process is provably gone
    /// from this host is removed with a warning; a lock of a live process, of another host, or one that cannot
    /// be judged needs a human (or -RemoveStaleLock). A lock that cannot be removed when released (the file system
    /// turned read-only meanwhile) is warned about, never thrown over the operation's own outcome, and removed by
    /// this process's next lock on the repository; once the process has ended, any other command removes it.
    /// </summary>
    public sealed class RepositoryLock : IDisposable
    {
        internal const string FolderName = "locks";
        private const string ExclusiveName = "exclusive.lock";
        private const string SharedPrefix = "shared-";
        private const int Attempts = 3;

        /// <summary>Lock files this process released but could not remove; they name a live process until it ends.</summary>
        private static readonly ConcurrentDictionary<string, bool> Unremoved = new ConcurrentDictionary<string, bool>(StringComparer.Ordinal);

        private readonly string? _path;
        private readonly Action<string>? _warn;
        private bool _released;

        private RepositoryLock(string? path, bool exclusive, Action<string>? warn)
        {
            _path = path;
            Exclusive = exclusive;
            _warn = warn;
        }

        public bool Exclusive { get; }

        /// <summary>False for a read of a repository that cannot be written: no lock file stands for it.</summary>
        public bool Held => _path != null;

        internal static RepositoryLock AcquireShared(string repositoryPath, string purpose, bool removeStale, Action<string>? warn, RepositoryFileOps ops)
        {
            string folder = LockFolder(repositoryPath);
            string exclusive = Path.Combine(folder, ExclusiveName);
            string mine = Path.Combine(folder, SharedPrefix + Guid.NewGuid().ToString("N") + ".lock");
            RemoveUnremoved(folder);
            for (int attempt = 0; attempt < Attempts; attempt++)
            {
                ThrowIfHeld(exclusive, repositoryPath, removeStale, warn, ops);
                Publish(folder, mine, purpose, replace: true);

                // Prune may have taken the exclusive lock between our check and our write: it then sees our
                // shared lock and gives up, or we see its lock here and back off; never both proceed.
                if (!File.Exists(exclusive))
                {
                    return new RepositoryLock(mine, exclusive: false, warn);
                }

                File.Delete(mine);
            }

            throw KeepsAppearing(repositoryPath);
        }

        /// <summary>
        /// A shared lock for reading (verify, restore). Where the repository cannot be written (a read-only mount,
        /// write-protected media, no write permission) no lock file can stand for the read: it goes on without one,
        /// after checking that no prune holds the repository, and says so through <paramref name="warn"/>.
        /// </summary>
        internal static RepositoryLock AcquireForReading(string repositoryPath, string purpose, Action<string>? warn, RepositoryFileOps ops)
        {
            try
            {
                return AcquireShared(repositoryPath, purpose, removeStale: false, warn, ops);
            }
            catch (Exception e) when (CannotWrite(e))
            {
                string exclusive = Path.Combine(repositoryPath, FolderName, ExclusiveName);
                Holder holder = Holder.Read(exclusive, repositoryPath, ops);
                if (holder.State == HolderState.Alive)
                {
                    throw Busy(repositoryPath, holder);
                }

                warn?.Invoke($"The repository '{repositoryPath}' cannot be written ({Describe(e)}), so it is read without a lock: a prune running at the same time from elsewhere is not excluded."
                    + (holder.State == HolderState.Gone ? string.Empty : $" It holds a prune's lock that could not be removed: {holder.Description}."));
                return new RepositoryLock(null, exclusive: false, warn);
            }
        }

        internal static RepositoryLock AcquireExclusive(string repositoryPath, string purpose, bool removeStale, Action<string>? warn, RepositoryFileOps ops)
        {
            string folder = LockFolder(repositoryPath);
            string exclusive = Path.Combine(folder, ExclusiveName);
            RemoveUnremoved(folder);
            for (int attempt = 0; ; attempt++)
            {
                ThrowIfHeld(exclusive, repositoryPath, removeStale, warn, ops);
                if (Publish(folder, exclusive, purpose, replace: false))
                {
                    break;
                }

                // Another prune took it between our check and our link: whose it is decides (a live one is busy).
                if (attempt == Attempts - 1)
                {
                    throw KeepsAppearing(repositoryPath);
                }
            }

            try
            {
                foreach (string shared in Directory.EnumerateFiles(folder, SharedPrefix + "*.lock"))
                {
                    ThrowIfHeld(shared, repositoryPath, removeStale, warn, ops);
                }
            }
            catch
            {
                File.Delete(exclusive);
                throw;
            }

            return new RepositoryLock(exclusive, exclusive: true, warn);
        }

        /// <summary>
        /// Removes the lock file. Where that fails (the repository's file system turned read-only during the
        /// operation), the operation's own outcome stands: the lock is warned about and left for later, not thrown.
        /// </summary>
        public void Dispose()
        {
            if (_released || _path == null)
            {
                return;
            }

            _released = true;
            try
            {
                File.Delete(_path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                Unremoved[_path] = true;
                _warn?.Invoke($"Could not remove the lock '{_path}' ({(CannotWrite(e) ? Describe(e) : e.Message)}). It keeps a prune of the repository out while this process runs; this process removes it with its next lock on the repository, and once the process has ended, the next VmQuiesce command removes it as a dead process's lock.");
            }
        }

        /// <summary>Retries the removal of lock files in <paramref name="folder"/> this process released but could not remove.</summary>
        private static void RemoveUnremoved(string folder)
        {
            foreach (string path in Unremoved.Keys.Where(path => string.Equals(Path.GetDirectoryName(path), folder, StringComparison.Ordinal)))
            {
                try
                {
                    File.Delete(path);
                    Unremoved.TryRemove(path, out _);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Still not writable: taking the new lock fails the same way and says so.
                }
            }
        }

        /// <summary>True when <paramref name="e"/> says this process cannot write the repository at all.</summary>
        internal static bool CannotWrite(Exception e) =>
            e is UnauthorizedAccessException || RegularFile.IsReadOnlyFileSystem(e) || RegularFile.ErrnoOf(e) == Libc.EACCES || RegularFile.ErrnoOf(e) == Libc.EPERM;

        private static string Describe(Exception e) => RegularFile.IsReadOnlyFileSystem(e) ? "its file system is mounted read-only" : "no write permission";

        private static string LockFolder(string repositoryPath)
        {
            // Every repository has it; made here only for repositories from before it existed (never its parents).
            string folder = Path.Combine(repositoryPath, FolderName);
            if (!Directory.Exists(folder))
            {
                Directory.CreateDirectory(folder);
            }

            return folder;
        }

        /// <summary>
        /// Writes the holder record to a temp name, then renames it to <paramref name="path"/> (a unique shared
        /// name) or links it there (the exclusive name: false when it exists). Either way the file under its final
        /// name is complete from the start.
        /// </summary>
        private static bool Publish(string folder, string path, string purpose, bool replace)
        {
            string temp = Path.Combine(folder, ChunkStore.TempPrefix + Guid.NewGuid().ToString("N"));
            using (var stream = RegularFile.CreateNew(temp))
            using (var writer = new StreamWriter(stream))
            {
                writer.Write(ProcessIdentity.Current.ToJson(purpose).ToString());
            }

            if (replace)
            {
                File.Move(temp, path);
                return true;
            }

            bool linked = RepositoryFileOps.Real.MoveNew(temp, path);
            if (!linked)
            {
                File.Delete(temp);
            }

            return linked;
        }

        /// <summary>Throws when <paramref name="lockPath"/> is held (busy) or cannot be judged; removes it, with a warning, when its holder is provably gone.</summary>
        private static void ThrowIfHeld(string lockPath, string repositoryPath, bool removeStale, Action<string>? warn, RepositoryFileOps ops)
        {
            Holder holder = Holder.Read(lockPath, repositoryPath, ops);
            switch (holder.State)
            {
                case HolderState.Gone:
                    return;
                case HolderState.Alive:
                    throw Busy(repositoryPath, holder);
                case HolderState.Dead:
                    File.Delete(lockPath);
                    warn?.Invoke($"Removed the lock '{lockPath}' of the repository '{repositoryPath}': {holder.Description}.");
                    return;
            }

            if (removeStale)
            {
                File.Delete(lockPath);
                warn?.Invoke($"Removed the lock '{lockPath}' of the repository '{repositoryPath}' (-RemoveStaleLock): {holder.Description}.");
                return;
            }

            throw new VmQuiesceException(
                "RepositoryLockStale",
                FailureKind.ResourceBusy,
                $"The repository '{repositoryPath}' holds a lock '{lockPath}' that VmQuiesce cannot prove abandoned: {holder.Description}.",
                repositoryPath)
            {
                Remedy = $"Make sure no VmQuiesce operation is running on '{repositoryPath}' from any host, then run Remove-VmBackup -Repository '{repositoryPath}' -RemoveStaleLock (it also removes the temp files the dead process left), or delete '{lockPath}'.",
            };
        }

        /// <summary>
        /// A lock file or lock object (<paramref name="what"/>) that could not be read: the disk, the store or the network
        /// failed, and what it says of its holder, who may be alive, is unknown. The lock stays and the operation fails.
        /// </summary>
        /// <param name="endpoint">The S3 endpoint the lock object was read from; null for a folder's lock file.</param>
        internal static VmQuiesceException ReadFailed(string repository, string what, string? endpoint, Exception e) =>
            new VmQuiesceException("RepositoryReadFailed", FailureKind.ReadError,
                $"Could not read {what} of the repository '{repository}'{(endpoint != null ? $" from {endpoint}" : string.Empty)}, so it was left as it is: {e.Message}", repository, e)
            {
                Remedy = $"{(endpoint != null ? "Check the endpoint, the network and any proxy in between" : "Check the disk and the file system of the repository")}, then run the command again. A lock that cannot be read may be a live operation's: not even -RemoveStaleLock removes it.",
            };

        private static VmQuiesceException Busy(string repositoryPath, Holder holder) =>
            new VmQuiesceException("RepositoryLocked", FailureKind.ResourceBusy, $"The repository '{repositoryPath}' is in use: {holder.Description}.", repositoryPath)
            {
                Remedy = "Wait for that operation to finish, then try again.",
            };

        private static VmQuiesceException KeepsAppearing(string repositoryPath) =>
            new VmQuiesceException("RepositoryLocked", FailureKind.ResourceBusy, $"The repository '{repositoryPath}' is being pruned (its exclusive lock keeps appearing).", repositoryPath)
            {
                Remedy = "Wait for Remove-VmBackup to finish, then try again.",
            };

        internal enum HolderState
        {
            /// <summary>No lock file (any more).</summary>
            Gone,
            Alive,

            /// <summary>Its process is provably gone from this host.</summary>
            Dead,

            /// <summary>Another host's, another PID namespace's, or a file VmQuiesce did not write: a human decides.</summary>
            Unknown,
        }

        /// <summary>Who a lock file (or lock object) says holds it, and whether that process still runs.</summary>
        internal sealed class Holder
        {
            private Holder(HolderState state, string description)
            {
                State = state;
                Description = description;
            }

            public HolderState State { get; }

            public string Description { get; }

            /// <summary>
            /// The holder the lock file names; Unknown when what is there is not a lock (a link, FIFO or device, far too
            /// large, or text that does not parse). A read that fails (the disk, the file system) says nothing about the
            /// lock, which may be live: it throws, so that nothing removes the lock as stale. An I/O error is
            /// RepositoryReadFailed; a refused permission stays the IOException it is (RepositoryAccessDenied).
            /// </summary>
            public static Holder Read(string lockPath, string repositoryPath, RepositoryFileOps ops)
            {
                string text;
                try
                {
                    text = ops.ReadSmallText(lockPath);
                }
                catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
                {
                    return new Holder(HolderState.Gone, string.Empty);
                }
                catch (UnexpectedFileException e)
                {
                    return new Holder(HolderState.Unknown, $"it cannot be read as a lock ({e.Message})");
                }
                catch (IOException e) when (RegularFile.ErrnoOf(e) != Libc.EACCES && RegularFile.ErrnoOf(e) != Libc.EPERM)
                {
                    throw ReadFailed(repositoryPath, $"the lock file '{lockPath}'", null, e);
                }

                JsonObject record;
                try
                {
                    record = JsonText.ParseObject(text);
                }
                catch (JsonFormatException e)
                {
                    return new Holder(HolderState.Unknown, $"it cannot be read as a lock ({e.Message})");
                }

                return Judge(record);
            }

            /// <summary>The holder a lock's record (untrusted: only compared and shown) names: alive, provably dead, or not to be judged from this host.</summary>
            public static Holder Judge(JsonObject record)
            {
                long? pid = record.GetOptionalInt64("pid");
                string host = record.GetOptionalString("host") ?? "an unknown host";
                string who = $"{Printable(record.GetOptionalString("purpose") ?? "an unknown operation")} (process {pid?.ToString(CultureInfo.InvariantCulture) ?? "?"} on {Printable(host)}, since {Printable(record.GetOptionalString("since") ?? "an unknown time")})";
                if (pid == null || pid < 1 || pid > int.MaxValue)
                {
                    return new Holder(HolderState.Unknown, $"{who}; it names no valid process id");
                }

                if (!string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase))
                {
                    return new Holder(HolderState.Unknown, $"{who}; it is held from another host, which this one cannot check");
                }

                ProcessIdentity current = ProcessIdentity.Current;
                string? bootId = record.GetOptionalString("bootId");
                if (bootId != null && current.BootId != null && bootId != current.BootId)
                {
                    return new Holder(HolderState.Dead, $"{who}; this host has restarted since");
                }

                string? pidNamespace = record.GetOptionalString("pidNamespace");
                if (pidNamespace != null && pidNamespace != current.PidNamespace)
                {
                    return new Holder(HolderState.Unknown, $"{who}; it runs in another PID namespace (a container) on this host, which this process cannot see");
                }

                return ProcessIdentity.IsRunning((int)pid.Value, record.GetOptionalString("processStartTicks"), record.GetOptionalString("processStart"))
                    ? new Holder(HolderState.Alive, who)
                    : new Holder(HolderState.Dead, $"{who}; that process is gone");
            }

            /// <summary>At most 200 characters of <paramref name="text"/>, control characters shown as '?': a record is shown, never trusted.</summary>
            private static string Printable(string text) => new string(text.Take(200).Select(c => char.IsControl(c) ? '?' : c).ToArray());
        }
    }
}
