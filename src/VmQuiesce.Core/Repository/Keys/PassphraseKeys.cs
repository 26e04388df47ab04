using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// Copies of a repository's key inside the repository (keys/&lt;slot&gt;.json), each sealed (AES-256-GCM) under a key
    /// derived from a passphrase with Argon2id (RFC 9106; 64 MiB, 3 passes), so a new host recovers everything from
    /// the repository and a passphrase. The passphrase comes as a SecureString and is held in plain form only
    /// while the KDF runs. A copy is an object of the repository's storage (a folder or a bucket), created once under
    /// a new slot and never replaced: a passphrase changes by adding the new copy, then removing the old one, so the
    /// repository always holds a usable copy.
    /// </summary>
    internal sealed class PassphraseKeys
    {
        internal const string FolderName = "keys";
        internal const string WrappedKeyFormat = "VmQuiesceWrappedKey";
        internal const string Kdf = "Argon2id";
        private const int MaxWrappedKeyBytes = 64 * 1024;
        private const string Prefix = FolderName + "/";
        private static readonly Regex SlotPattern = new Regex("^[0-9a-f]{8}$", RegexOptions.CultureInvariant);

        private readonly IObjectStorage _storage;
        private readonly RepositoryEncryption _encryption;

        public PassphraseKeys(IObjectStorage storage, RepositoryEncryption encryption)
        {
            _storage = storage;
            _encryption = encryption;
        }

        /// <summary>The KDF's cost; tests lower it. A wrapped key records its own, and reading bounds it.</summary>
        internal static KdfCost DefaultCost { get; set; } = new KdfCost(64 * 1024, 3, 1);

        /// <summary>The slots (8 hex digits) of the passphrase copies the repository holds.</summary>
        public IReadOnlyList<string> Slots
        {
            get
            {
                var slots = new List<string>();
                foreach (StoredObject item in _storage.List(Prefix))
                {
                    string name = item.Key.Substring(Prefix.Length);
                    if (name.EndsWith(".json", StringComparison.Ordinal) && SlotPattern.IsMatch(name.Substring(0, name.Length - ".json".Length)))
                    {
                        slots.Add(name.Substring(0, name.Length - ".json".Length));
                    }
                }

                slots.Sort(StringComparer.Ordinal);
                return slots;
            }
        }

        /// <summary>
        /// Seals the repository's key under <paramref name="passphrase"/> into a new slot, created whole or not at all
        /// (create-if-absent: a temp file linked into place, or a conditional PUT); returns the slot.
        /// </summary>
        public string Add(SecureString passphrase)
        {
            RepositoryKey key = _encryption.RequireKey()!;
            string slot = ChunkStore.ToHex(Random.Bytes(4));
            KdfCost cost = DefaultCost;
            byte[] salt = Random.Bytes(16);
            byte[] wrapping = Derive(passphrase, salt, cost);
            var sealedKey = new byte[RepositoryKey.Length + Aead.Overhead];
            Aead.Seal(RepositoryCipher.Aes256Gcm, wrapping, key.Master, 0, RepositoryKey.Length, Associated(slot, key.KeyId, cost), sealedKey, 0);
            Array.Clear(wrapping, 0, wrapping.Length);
            string text = JsonText.Serialize(new JsonObject()
                .With("format", WrappedKeyFormat)
                .With("keyId", key.KeyId)
                .With("kdf", Kdf)
                .With("memoryKiB", cost.MemoryKiB)
                .With("iterations", cost.Iterations)
                .With("parallelism", cost.Parallelism)
                .With("salt", Convert.ToBase64String(salt))
                .With("sealed", Convert.ToBase64String(sealedKey)), indented: true);
            if (!_storage.CreateIfAbsent(KeyOf(slot), new[] { new ArraySegment<byte>(new UTF8Encoding(false).GetBytes(text)) }))
            {
                throw new IOException($"'{_storage.Location}/{KeyOf(slot)}' already exists.");
            }

            _storage.Flush();
            return slot;
        }

        /// <summary>The key that <paramref name="passphrase"/> opens in any slot; RepositoryPassphraseWrong when none.</summary>
        public RepositoryKey Open(SecureString passphrase)
        {
            IReadOnlyList<string> slots = Slots;
            if (slots.Count == 0)
            {
                throw new VmQuiesceException("RepositoryKeyNotFound", FailureKind.ObjectNotFound,
                    $"The repository '{_storage.Location}' holds no passphrase copy of its key.", _storage.Location)
                {
                    Remedy = "Import the key from a key file exported earlier: Import-VmBackupRepositoryKey -KeyFile <file>.",
                };
            }

            foreach (string slot in slots)
            {
                if (TryOpen(slot, passphrase) is RepositoryKey key)
                {
                    return key;
                }
            }

            throw new VmQuiesceException("RepositoryPassphraseWrong", FailureKind.SecurityError,
                $"The passphrase opens none of the {slots.Count} passphrase copies of the key of '{_storage.Location}'.", _storage.Location)
            {
                Remedy = "Check the passphrase (it is case-sensitive), or import a key file exported earlier with -KeyFile.",
            };
        }

        public bool Remove(string slot)
        {
            if (!SlotPattern.IsMatch(slot) || !_storage.Exists(KeyOf(slot)))
            {
                return false;
            }

            _storage.Delete(KeyOf(slot));
            return true;
        }

        private static string KeyOf(string slot) => Prefix + slot + ".json";

        private RepositoryKey? TryOpen(string slot, SecureString passphrase)
        {
            string path = _storage.Location + "/" + KeyOf(slot);
            JsonObject json;
            KdfCost cost;
            byte[] salt, sealedKey;
            string keyId;
            try
            {
                // Bounded before it is read: a planted giant object is refused (InvalidDataException), never loaded.
                json = JsonText.ParseObject(Encoding.UTF8.GetString(_storage.ReadAll(KeyOf(slot), MaxWrappedKeyBytes)));
                if (json.GetString("format") != WrappedKeyFormat || json.GetString("kdf") != Kdf)
                {
                    throw new JsonFormatException($"It is not a '{WrappedKeyFormat}' with '{Kdf}'.");
                }

                keyId = json.GetString("keyId");
                cost = KdfCost.Bounded(json.GetInt64("memoryKiB"), json.GetInt64("iterations"), json.GetInt64("parallelism"));
                salt = Convert.FromBase64String(json.GetString("salt"));
                sealedKey = Convert.FromBase64String(json.GetString("sealed"));
            }
            catch (Exception e) when (e is JsonFormatException || e is FormatException || e is IOException || e is InvalidDataException)
            {
                throw new VmQuiesceException("RepositoryKeyFileInvalid", FailureKind.InvalidData, $"The passphrase copy '{path}' cannot be read: {e.Message}", path, e);
            }

            if (keyId != _encryption.KeyId || salt.Length < 16 || sealedKey.Length != RepositoryKey.Length + Aead.Overhead)
            {
                return null;
            }

            byte[] wrapping = Derive(passphrase, salt, cost);
            var master = new byte[RepositoryKey.Length];
            try
            {
                Aead.Open(RepositoryCipher.Aes256Gcm, wrapping, sealedKey, 0, sealedKey.Length, Associated(slot, keyId, cost), master);
                return RepositoryKey.FromBytes(master);
            }
            catch (System.Security.Cryptography.CryptographicException)
            {
                return null;
            }
            finally
            {
                Array.Clear(wrapping, 0, wrapping.Length);
                Array.Clear(master, 0, master.Length);
            }
        }

        private byte[] Associated(string slot, string keyId, KdfCost cost) =>
            Encoding.ASCII.GetBytes($"VmQuiesce wrapped key\n{_encryption.RepositoryId}\n{keyId}\n{slot}\n{Kdf} {cost.MemoryKiB} {cost.Iterations} {cost.Parallelism}");

        /// <summary>Argon2id of the passphrase (UTF-8): the key that wraps the repository key.</summary>
        private static byte[] Derive(SecureString passphrase, byte[] salt, KdfCost cost)
        {
            char[] text = new char[passphrase.Length];
            IntPtr plain = Marshal.SecureStringToGlobalAllocUnicode(passphrase);
            try
            {
                Marshal.Copy(plain, text, 0, text.Length);
                return Argon2id.Derive(text, salt, cost, Aead.KeyLength);
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(plain);
                Array.Clear(text, 0, text.Length);
            }
        }
    }

    /// <summary>Argon2id's cost: memory in KiB, passes, lanes.</summary>
    internal sealed class KdfCost
    {
        public KdfCost(int memoryKiB, int iterations, int parallelism)
        {
            MemoryKiB = memoryKiB;
            Iterations = iterations;
            Parallelism = parallelism;
        }

        public int MemoryKiB { get; }

        public int Iterations { get; }

        public int Parallelism { get; }

        /// <summary>A recorded cost within what a passphrase copy can sensibly ask for: a planted one cannot make a host allocate without end.</summary>
        public static KdfCost Bounded(long memoryKiB, long iterations, long parallelism)
        {
            if (memoryKiB < 8 || memoryKiB > 1024 * 1024 || iterations < 1 || iterations > 16 || parallelism < 1 || parallelism > 16)
            {
                throw new JsonFormatException($"Its cost ({memoryKiB} KiB, {iterations} passes, {parallelism} lanes) is outside 8 KiB-1 GiB, 1-16 passes, 1-16 lanes.");
            }

            return new KdfCost((int)memoryKiB, (int)iterations, (int)parallelism);
        }
    }
}
