using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// Lock objects of a repository on object storage, so a prune never deletes a chunk that a backup in flight
    /// still needs. A backup or read creates its own <c>locks/shared-&lt;id&gt;.json</c>, then looks for
    /// <c>locks/exclusive.json</c>; a prune creates <c>locks/exclusive.json</c> with a conditional PUT
    /// (<c>If-None-Match: *</c>, so only one prune at a time), then lists <c>locks/shared-</c>. Each side creates
    /// its object before it looks for the other's, and the store's listing shows every object created before it
    /// (S3 and RGW are strongly consistent): of a backup and a prune starting together at least one sees the
    /// other and backs off, deleting its own object.
    /// <para>
    /// Many hosts share the repository, so a lock left behind is judged as restic judges one: each object records
    /// host, boot, process, its start and purpose, and the time it was last refreshed, which its holder rewrites
    /// every <see cref="RefreshInterval"/> while it holds it. A lock of this host whose process is gone is stale at
    /// once and removed with a warning; a lock of a live process never is; a lock of another host is stale once it
    /// has not been refreshed for <see cref="StaleAge"/> (by this host's clock), and then removed only when asked
    /// (-RemoveStaleLock), else named in RepositoryLockStale.
    /// </para>
    /// </summary>
    internal sealed class ObjectRepositoryLock : IDisposable
    {
        internal const string Folder = "locks/";
        internal const string ExclusiveKey = Folder + "exclusive.json";
        private const string SharedPrefix = Folder + "shared-";
        private const string RefreshedMember = "refreshed";
        private const string IdMember = "lockId";
        private const int MaxLockBytes = 64 * 1024;
        private const int Attempts = 3;

        /// <summary>How often a held lock object is rewritten with a new refresh time.</summary>
        internal static readonly TimeSpan RefreshInterval = TimeSpan.FromMinutes(5);

        /// <summary>How long another host's lock object may go unrefreshed before it counts as stale: six missed refreshes, and room for clocks minutes apart.</summary>
        internal static readonly TimeSpan StaleAge = TimeSpan.FromMinutes(30);

        private readonly IObjectStorage _storage;
        private readonly string _key;
        private readonly string _purpose;
        private readonly string _since = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture);

        /// <summary>Names this lock in its object, so a holder knows its own (<see cref="Create"/>).</summary>
        private readonly string _id = Guid.NewGuid().ToString("N");
        private readonly object _gate = new object();
        private Timer? _refresher;
        private bool _released;

        private ObjectRepositoryLock(IObjectStorage storage, string key, string purpose)
        {
            _storage = storage;
            _key = key;
            _purpose = purpose;
        }

        /// <summary>
        /// A backup's or reader's lock: refused (RepositoryLocked) while a prune holds the exclusive one, and
        /// (RepositoryLockStale) while a stale prune lock of another host is there; a dead process's prune lock of
        /// this host is removed with a warning.
        /// </summary>
        public static ObjectRepositoryLock AcquireShared(IObjectStorage storage, string purpose, Action<string>? warn = null)
        {
            var held = new ObjectRepositoryLock(storage, SharedPrefix + Guid.NewGuid().ToString("N") + ".json", purpose);
            storage.CreateIfAbsent(held._key, held.Content());
            try
            {
                for (int attempt = 0; storage.Exists(ExclusiveKey); attempt++)
                {
                    if (attempt == Attempts)
                    {
                        throw Busy(storage, new[] { ExclusiveKey });
                    }

                    ClearIfStale(storage, ExclusiveKey, removeStale: false, warn);
                }
            }
            catch
            {
                held.Dispose();
                throw;
            }

            return held.Start();
        }

        /// <summary>
        /// A prune's lock: refused (RepositoryLocked, naming the holders) while another prune, a backup or a reader
        /// holds one; lock objects of dead processes of this host are removed with a warning, stale ones of other
        /// hosts only with <paramref name="removeStale"/> (RepositoryLockStale otherwise).
        /// </summary>
        public static ObjectRepositoryLock AcquireExclusive(IObjectStorage storage, string purpose, bool removeStale = false, Action<string>? warn = null)
        {
            var held = new ObjectRepositoryLock(storage, ExclusiveKey, purpose);
            for (int attempt = 0; !held.Create(); attempt++)
            {
                if (attempt == Attempts)
                {
                    throw Busy(storage, new[] { ExclusiveKey });
                }

                ClearIfStale(storage, ExclusiveKey, removeStale, warn);
            }

            try
            {
                foreach (string shared in storage.List(SharedPrefix).Select(item => item.Key).ToList())
                {
                    ClearIfStale(storage, shared, removeStale, warn);
                }
            }
            catch
            {
                held.Dispose();
                throw;
            }

            return held.Start();
        }

        /// <summary>Rewrites the lock object with the time now, so other hosts see its holder is alive. What the timer does every <see cref="RefreshInterval"/>.</summary>
        internal void Refresh()
        {
            lock (_gate)
            {
                // Never after the release: a refresh that raced it would bring the deleted object back.
                if (!_released)
                {
                    _storage.Replace(_key, Content());
                }
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                if (_released)
                {
                    return;
                }

                _released = true;
            }

            _refresher?.Dispose();
            _storage.Delete(_key);
        }

        /// <summary>
        /// Creates the lock object unless one is there. One there that names this lock's id is this lock: the answer to
        /// its PUT was lost, and the SDK's retry met the object the first PUT created (412).
        /// </summary>
        private bool Create()
        {
            if (_storage.CreateIfAbsent(_key, Content()))
            {
                return true;
            }

            try
            {
                return JsonText.ParseObject(Encoding.UTF8.GetString(_storage.ReadAll(_key, MaxLockBytes))).GetOptionalString(IdMember) == _id;
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException || e is JsonFormatException)
            {
                // Gone again, or no lock of ours: ClearIfStale reads it again and judges it.
                return false;
            }
        }

        private ObjectRepositoryLock Start()
        {
            _refresher = new Timer(_ => RefreshOrRetry(), null, RefreshInterval, RefreshInterval);
            return this;
        }

        private void RefreshOrRetry()
        {
            try
            {
                Refresh();
            }
            catch (Exception e) when (e is VmQuiesceException || e is IOException || e is TimeoutException || e is ObjectDisposedException)
            {
                // On the timer's thread there is no one to tell (a cmdlet writes only from its pipeline thread); the
                // next tick tries again, and the operation's own requests meet the same store failure and report it.
            }
        }

        private IReadOnlyList<ArraySegment<byte>> Content() =>
            new[] { new ArraySegment<byte>(Encoding.UTF8.GetBytes(JsonText.Serialize(ProcessIdentity.Current.ToJson(_purpose).With(IdMember, _id).With("since", _since).With(RefreshedMember, DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture)), indented: true))) };

        /// <summary>
        /// Returns when the lock object <paramref name="key"/> is gone or was removed as stale (with a warning); throws
        /// RepositoryLocked while its holder may be alive, RepositoryLockStale when it is stale but not to be removed.
        /// </summary>
        private static void ClearIfStale(IObjectStorage storage, string key, bool removeStale, Action<string>? warn)
        {
            byte[] body;
            try
            {
                body = storage.ReadAll(key, MaxLockBytes);
            }
            catch (FileNotFoundException)
            {
                return;
            }
            catch (InvalidDataException) when (ListedSize(storage, key) is long size && size > MaxLockBytes)
            {
                // Received or not, an object that large is no lock: its size is what the store lists, not what the read made of it.
                RemoveStale(storage, key, $"it holds {size:N0} bytes, more than the {MaxLockBytes:N0} any lock holds", removeStale, warn);
                return;
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException)
            {
                // Any other failure to read it (a body not matching its ETag, a disk failing; a store or network that
                // fails is its S3 error already) says nothing about the lock, which may be a live one: it fails the
                // operation and the lock stays.
                throw RepositoryLock.ReadFailed(storage.Location, $"the lock object '{key}'", storage.Endpoint, e);
            }

            // Only a body received whole that does not parse is not a lock.
            JsonObject record;
            try
            {
                record = JsonText.ParseObject(Encoding.UTF8.GetString(body));
            }
            catch (JsonFormatException e)
            {
                RemoveStale(storage, key, $"it cannot be read as a lock ({e.Message})", removeStale, warn);
                return;
            }

            RepositoryLock.Holder holder = RepositoryLock.Holder.Judge(record);
            switch (holder.State)
            {
                case RepositoryLock.HolderState.Alive:
                    throw Busy(storage, new[] { key }, holder.Description);
                case RepositoryLock.HolderState.Dead:
                    storage.Delete(key);
                    warn?.Invoke($"Removed the lock object '{storage.Location}/{key}': {holder.Description}.");
                    return;
            }

            TimeSpan? age = DateTime.TryParse(record.GetOptionalString(RefreshedMember), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out DateTime refreshed)
                ? DateTime.UtcNow - refreshed.ToUniversalTime()
                : (TimeSpan?)null;
            if (age is TimeSpan known && known < StaleAge)
            {
                throw Busy(storage, new[] { key }, $"{holder.Description}; last refreshed {refreshed.ToUniversalTime():u}");
            }

            RemoveStale(storage, key, $"{holder.Description}; {(age is TimeSpan old ? $"not refreshed for {old.TotalMinutes:0} minutes" : "it records no refresh time")}", removeStale, warn);
        }

        /// <summary>The size the store lists for <paramref name="key"/>; null when it lists no such object.</summary>
        private static long? ListedSize(IObjectStorage storage, string key) =>
            storage.List(key).Where(stored => stored.Key == key).Select(stored => (long?)stored.Size).FirstOrDefault();

        private static void RemoveStale(IObjectStorage storage, string key, string description, bool removeStale, Action<string>? warn)
        {
            if (removeStale)
            {
                storage.Delete(key);
                warn?.Invoke($"Removed the stale lock object '{storage.Location}/{key}' (-RemoveStaleLock): {description}.");
                return;
            }

            throw new VmQuiesceException("RepositoryLockStale", FailureKind.ResourceBusy,
                $"The repository '{storage.Location}' holds a stale lock object '{key}': {description}. A lock not refreshed for {StaleAge.TotalMinutes:0} minutes is taken for abandoned.", storage.Location)
            {
                Remedy = $"Make sure no VmQuiesce operation is running on '{storage.Location}' from that host, then run Remove-VmBackup -Repository '{storage.Location}' -RemoveStaleLock (with the same -S3 parameters), which removes it.",
            };
        }

        private static VmQuiesceException Busy(IObjectStorage storage, IReadOnlyList<string> keys, string? holder = null)
        {
            string holders = holder ?? string.Join("; ", keys.Take(3).Select(key => $"the lock object '{key}'"));
            return new VmQuiesceException("RepositoryLocked", FailureKind.ResourceBusy, $"The repository '{storage.Location}' is in use: {holders}.", storage.Location)
            {
                Remedy = $"Wait for that operation to finish, then try again. A lock object whose holder stops refreshing it counts as stale after {StaleAge.TotalMinutes:0} minutes; one of a process of this host that is gone is removed at once.",
            };
        }
    }
}
