using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
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
    /// other and backs off, deleting its own object. The objects name the host, process and purpose; one left by
    /// a process that died keeps prunes out until it is deleted (the error names it).
    /// </summary>
    internal sealed class ObjectRepositoryLock : IDisposable
    {
        internal const string Folder = "locks/";
        internal const string ExclusiveKey = Folder + "exclusive.json";
        private const string SharedPrefix = Folder + "shared-";
        private const int MaxLockBytes = 64 * 1024;

        private readonly IObjectStorage _storage;
        private readonly string _key;

        private ObjectRepositoryLock(IObjectStorage storage, string key)
        {
            _storage = storage;
            _key = key;
        }

        /// <summary>A backup's or reader's lock: refused (RepositoryLocked) while a prune holds the exclusive one.</summary>
        public static ObjectRepositoryLock AcquireShared(IObjectStorage storage, string purpose)
        {
            var held = new ObjectRepositoryLock(storage, SharedPrefix + Guid.NewGuid().ToString("N") + ".json");
            storage.CreateIfAbsent(held._key, Content(purpose));
            if (storage.Exists(ExclusiveKey))
            {
                held.Dispose();
                throw Busy(storage, new[] { ExclusiveKey });
            }

            return held;
        }

        /// <summary>A prune's lock: refused (RepositoryLocked, naming the holders) while another prune, a backup or a reader holds one.</summary>
        public static ObjectRepositoryLock AcquireExclusive(IObjectStorage storage, string purpose)
        {
            if (!storage.CreateIfAbsent(ExclusiveKey, Content(purpose)))
            {
                throw Busy(storage, new[] { ExclusiveKey });
            }

            var held = new ObjectRepositoryLock(storage, ExclusiveKey);
            List<string> shared = storage.List(SharedPrefix).Select(item => item.Key).ToList();
            if (shared.Count > 0)
            {
                held.Dispose();
                throw Busy(storage, shared);
            }

            return held;
        }

        public void Dispose() => _storage.Delete(_key);

        private static IReadOnlyList<ArraySegment<byte>> Content(string purpose) =>
            new[] { new ArraySegment<byte>(Encoding.UTF8.GetBytes(JsonText.Serialize(ProcessIdentity.Current.ToJson(purpose), indented: true))) };

        private static VmQuiesceException Busy(IObjectStorage storage, IReadOnlyList<string> keys)
        {
            string holders = string.Join("; ", keys.Take(3).Select(key => Describe(storage, key)));
            return new VmQuiesceException("RepositoryLocked", FailureKind.ResourceBusy, $"The repository '{storage.Location}' is in use: {holders}{(keys.Count > 3 ? $" and {keys.Count - 3} more" : string.Empty)}.", storage.Location)
            {
                Remedy = $"Wait for that operation to finish, then try again. A lock object whose process no longer runs (it was killed) stays until it is deleted: make sure no VmQuiesce operation is running on '{storage.Location}' from any host, then delete it ({storage.Location}/{keys[0]}).",
            };
        }

        /// <summary>Who holds the lock <paramref name="key"/>, from what it says (untrusted, only shown).</summary>
        private static string Describe(IObjectStorage storage, string key)
        {
            try
            {
                JsonObject holder = JsonText.ParseObject(Encoding.UTF8.GetString(storage.ReadAll(key, MaxLockBytes)));
                return string.Format(CultureInfo.InvariantCulture, "{0} (process {1} on {2}, since {3})", Printable(holder.GetString("purpose")), holder.GetInt64("pid"), Printable(holder.GetString("host")), Printable(holder.GetString("since")));
            }
            catch (Exception e) when (e is System.IO.IOException || e is JsonFormatException || e is System.IO.InvalidDataException)
            {
                return $"the lock object '{key}'";
            }
        }

        private static string Printable(string text) => new string(text.Take(200).Select(c => char.IsControl(c) ? '?' : c).ToArray());
    }
}
