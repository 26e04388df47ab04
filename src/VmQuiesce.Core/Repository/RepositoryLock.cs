using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Keeps prune and backups from colliding. Backups and verifies hold a shared lock
    /// (locks/shared-&lt;guid&gt;.lock), prune holds the exclusive one (locks/exclusive.lock); each file
    /// says who holds it (pid, host, process start, purpose). A lock whose process is gone from this host
    /// is stale: it is reported with what to do and removed only when the caller asks.
    /// </summary>
    public sealed class RepositoryLock : IDisposable
    {
        internal const string FolderName = "locks";
        private const string ExclusiveName = "exclusive.lock";
        private const string SharedPrefix = "shared-";

        private readonly string _path;
        private bool _released;

        private RepositoryLock(string path, bool exclusive)
        {
            _path = path;
            Exclusive = exclusive;
        }

        public bool Exclusive { get; }

        internal static RepositoryLock AcquireShared(string repositoryPath, string purpose, bool removeStale)
        {
            string folder = Path.Combine(repositoryPath, FolderName);
            Directory.CreateDirectory(folder);
            string exclusive = Path.Combine(folder, ExclusiveName);
            string mine = Path.Combine(folder, SharedPrefix + Guid.NewGuid().ToString("N") + ".lock");
            for (int attempt = 0; attempt < 3; attempt++)
            {
                ThrowIfHeld(exclusive, repositoryPath, removeStale);
                WriteHolder(mine, purpose);

                // Prune may have taken the exclusive lock between our check and our write: it then sees our
                // shared lock and gives up, or we see its lock here and back off; never both proceed.
                if (!File.Exists(exclusive))
                {
                    return new RepositoryLock(mine, exclusive: false);
                }

                File.Delete(mine);
            }

            throw new VmQuiesceException(
                "RepositoryLocked",
                FailureKind.ResourceBusy,
                $"The repository '{repositoryPath}' is being pruned (its exclusive lock keeps appearing).",
                repositoryPath)
            {
                Remedy = "Wait for Remove-VmBackup to finish, then try again.",
            };
        }

        internal static RepositoryLock AcquireExclusive(string repositoryPath, string purpose, bool removeStale)
        {
            string folder = Path.Combine(repositoryPath, FolderName);
            Directory.CreateDirectory(folder);
            string exclusive = Path.Combine(folder, ExclusiveName);
            ThrowIfHeld(exclusive, repositoryPath, removeStale);
            try
            {
                WriteHolder(exclusive, purpose);
            }
            catch (IOException) when (File.Exists(exclusive))
            {
                ThrowIfHeld(exclusive, repositoryPath, removeStale: false);
                throw;
            }

            try
            {
                foreach (string shared in Directory.EnumerateFiles(folder, SharedPrefix + "*.lock"))
                {
                    ThrowIfHeld(shared, repositoryPath, removeStale);
                }
            }
            catch
            {
                File.Delete(exclusive);
                throw;
            }

            return new RepositoryLock(exclusive, exclusive: true);
        }

        public void Dispose()
        {
            if (!_released)
            {
                _released = true;
                File.Delete(_path);
            }
        }

        private static void WriteHolder(string path, string purpose)
        {
            using var process = Process.GetCurrentProcess();
            string text = new JsonObject()
                .With("pid", process.Id)
                .With("host", Environment.MachineName)
                .With("processStart", process.StartTime.ToUniversalTime().ToString("o", CultureInfo.InvariantCulture))
                .With("purpose", purpose)
                .With("since", DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture))
                .ToString();
            using var stream = RegularFile.CreateNew(path);
            using var writer = new StreamWriter(stream);
            writer.Write(text);
        }

        /// <summary>Throws when <paramref name="lockPath"/> is held (busy) or stale (unless removing stale locks).</summary>
        private static void ThrowIfHeld(string lockPath, string repositoryPath, bool removeStale)
        {
            JsonObject holder;
            try
            {
                holder = JsonText.ParseObject(RegularFile.ReadAllText(lockPath, BackupRepository.MaxSmallFileBytes));
            }
            catch (FileNotFoundException)
            {
                return;
            }
            catch (DirectoryNotFoundException)
            {
                return;
            }
            catch (Exception e) when (e is JsonFormatException || e is UnexpectedFileException)
            {
                // A lock file cut short by a crash while it was written: its holder never started work.
                holder = new JsonObject();
            }

            long? pid = holder.GetOptionalInt64("pid");
            string host = holder.GetOptionalString("host") ?? "an unknown host";
            string purpose = holder.GetOptionalString("purpose") ?? "an unknown operation";
            string since = holder.GetOptionalString("since") ?? "an unknown time";
            bool stale = pid == null || (string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase) && !IsAlive((int)pid.Value, holder.GetOptionalString("processStart")));
            if (!stale)
            {
                throw new VmQuiesceException(
                    "RepositoryLocked",
                    FailureKind.ResourceBusy,
                    $"The repository '{repositoryPath}' is in use: {purpose} (process {pid} on {host}, since {since}).",
                    repositoryPath)
                {
                    Remedy = "Wait for that operation to finish, then try again.",
                };
            }

            if (removeStale)
            {
                File.Delete(lockPath);
                return;
            }

            throw new VmQuiesceException(
                "RepositoryLockStale",
                FailureKind.ResourceBusy,
                $"The repository '{repositoryPath}' holds a stale lock '{lockPath}' from {purpose} (process {pid} on {host}, since {since}); that process is gone.",
                repositoryPath)
            {
                Remedy = $"Make sure no VmQuiesce operation is running on '{repositoryPath}', then run Remove-VmBackup -Repository '{repositoryPath}' -RemoveStaleLock (it also removes the temp files the dead process left), or delete '{lockPath}'.",
            };
        }

        private static bool IsAlive(int pid, string? processStart)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                if (process.HasExited)
                {
                    return false;
                }

                // A reused pid belongs to a process that started later than the lock's holder.
                if (processStart != null && DateTime.TryParse(processStart, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out DateTime recorded))
                {
                    return Math.Abs((process.StartTime.ToUniversalTime() - recorded.ToUniversalTime()).TotalSeconds) < 2;
                }

                return true;
            }
            catch (ArgumentException)
            {
                return false;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // The process exists but we may not inspect it (another user's, on Windows): not ours to call stale.
                return true;
            }
        }
    }
}
