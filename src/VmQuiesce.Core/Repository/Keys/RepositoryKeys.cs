using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// Where a repository's key lives and how it gets there: the host key file, passphrase copies inside the
    /// repository, exported key files. What New-, Add-, Import-, Export- and Remove-VmBackupRepositoryKey do, the same
    /// on a folder repository and on object storage.
    /// </summary>
    public sealed class RepositoryKeys : IDisposable
    {
        private readonly RepositoryEncryption _encryption;
        private readonly IObjectStorage _storage;
        private readonly PassphraseKeys _passphrases;

        /// <summary>The keys of a folder repository.</summary>
        public RepositoryKeys(BackupRepository repository)
            : this(repository.Encryption, new FileObjectStorage(repository.Path))
        {
        }

        /// <summary>The keys of a repository on object storage; disposing these disposes <paramref name="repository"/>.</summary>
        public RepositoryKeys(ObjectRepository repository)
            : this(repository.Encryption, repository.Storage)
        {
        }

        private RepositoryKeys(RepositoryEncryption encryption, IObjectStorage storage)
        {
            _encryption = encryption;
            _storage = storage;
            _passphrases = new PassphraseKeys(storage, encryption);
        }

        /// <summary>The repository: a folder path or an s3:// address.</summary>
        public string Location => _storage.Location;

        /// <summary>The slots of the repository's passphrase copies.</summary>
        public IReadOnlyList<string> PassphraseSlots => _passphrases.Slots;

        /// <summary>This host's key file for the repository, or null when there is none (or the repository is not encrypted).</summary>
        public string? HostKeyFile => _encryption.IsEncrypted && File.Exists(HostKeyStore.PathOf(_encryption.RepositoryId!))
            ? HostKeyStore.PathOf(_encryption.RepositoryId!)
            : null;

        /// <summary>
        /// Makes a new encrypted repository in a folder that is missing or empty: a new random key, its key file in
        /// this host's key folder, and a passphrase copy inside the repository when <paramref name="passphrase"/> is given;
        /// sealed with <paramref name="cipher"/> (null: the one this CPU runs fastest).
        /// </summary>
        public static BackupRepository CreateRepository(string path, int chunkSize, SecureString? passphrase, RepositoryCipher? cipher = null)
        {
            string full = Path.GetFullPath(path);
            if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            {
                throw new VmQuiesceException("RepositoryFolderNotEmpty", FailureKind.InvalidArgument,
                    $"The folder '{full}' is not empty; a new repository needs a missing or empty folder.", path)
                {
                    Remedy = "Choose another folder. Get-VmBackupRepository shows an existing repository.",
                };
            }

            BackupRepository repository = BackupRepository.OpenOrCreate(full, chunkSize, RepositoryKey.Generate(), cipher);
            if (passphrase != null)
            {
                new RepositoryKeys(repository).AddPassphrase(passphrase);
            }

            return repository;
        }

        /// <summary>
        /// Makes a new encrypted repository in <paramref name="storage"/> (an S3 prefix holding no object), as
        /// <see cref="CreateRepository(string, int, SecureString?, RepositoryCipher?)"/> does in a folder. The repository
        /// then owns the storage.
        /// </summary>
        public static ObjectRepository CreateRepository(IObjectStorage storage, int chunkSize, SecureString? passphrase, RepositoryCipher? cipher = null)
        {
            if (storage.List(string.Empty).Any())
            {
                throw new VmQuiesceException("RepositoryPrefixNotEmpty", FailureKind.InvalidArgument,
                    $"'{storage.Location}' already holds objects; a new repository needs a prefix with none.", storage.Location)
                {
                    Remedy = "Choose another prefix. Get-VmBackupRepository shows an existing repository.",
                };
            }

            ObjectRepository repository = ObjectRepository.OpenOrCreate(storage, chunkSize, RepositoryKey.Generate(), cipher);
            if (passphrase != null)
            {
                new RepositoryKeys(repository).AddPassphrase(passphrase);
            }

            return repository;
        }

        /// <summary>Adds a passphrase copy of the key (this host must have the key).</summary>
        public RepositoryKeyCopy AddPassphrase(SecureString passphrase)
        {
            RequireEncrypted();
            CheckPassphrase(passphrase);
            string slot = _passphrases.Add(passphrase);
            return new RepositoryKeyCopy(Location, _encryption.KeyId!, KeyCopyKind.Passphrase, slot, null);
        }

        /// <summary>Brings the key to this host from a passphrase copy: writes the host key file.</summary>
        public RepositoryKeyCopy ImportFromPassphrase(SecureString passphrase)
        {
            RequireEncrypted();
            CheckPassphrase(passphrase);
            return Import(_passphrases.Open(passphrase));
        }

        /// <summary>Brings the key to this host from a key file exported earlier.</summary>
        public RepositoryKeyCopy ImportFromKeyFile(string keyFile)
        {
            RequireEncrypted();
            return Import(HostKeyStore.ReadKeyFile(keyFile, _encryption.RepositoryId!));
        }

        /// <summary>Writes a copy of the key (a key file, in plain form) to <paramref name="destination"/>, which must not exist.</summary>
        public RepositoryKeyCopy Export(string destination)
        {
            RepositoryKey key = RequireEncrypted().RequireKey()!;
            string full = Path.GetFullPath(destination);
            if (File.Exists(full) || Directory.Exists(full))
            {
                throw new VmQuiesceException("KeyFileExists", FailureKind.InvalidArgument, $"'{full}' exists; the key is exported to a new file only.", destination);
            }

            if (_storage is FileObjectStorage folder && IsInFolder(full, folder.Root))
            {
                throw new VmQuiesceException("KeyFileInRepository", FailureKind.InvalidArgument,
                    $"'{full}' is inside the repository '{Location}': a key kept beside the data it protects protects nothing.", destination)
                {
                    Remedy = "Export the key to another disk or host (removable media, a password manager's file store); a passphrase copy (Add-VmBackupRepositoryKey) is the copy meant to live in the repository.",
                };
            }

            HostKeyStore.WriteKeyFile(Path.GetDirectoryName(full)!, full, _encryption.RepositoryId!, key, Location);
            return new RepositoryKeyCopy(Location, key.KeyId, KeyCopyKind.ExportedKeyFile, null, full);
        }

        /// <summary>Removes a passphrase copy. The last copy of the key is kept unless <paramref name="force"/>.</summary>
        public bool RemovePassphrase(string slot, bool force)
        {
            RequireEncrypted();
            if (!_passphrases.Slots.Contains(slot))
            {
                throw new VmQuiesceException("RepositoryKeySlotNotFound", FailureKind.ObjectNotFound, $"The repository '{Location}' has no passphrase copy '{slot}'.", slot)
                {
                    Remedy = $"Get-VmBackupRepository '{Location}' lists its passphrase slots.",
                };
            }

            if (!force && HostKeyFile == null && _passphrases.Slots.Count == 1)
            {
                throw LastCopy($"passphrase copy '{slot}'");
            }

            return _passphrases.Remove(slot);
        }

        /// <summary>
        /// Removes this host's key file. The last copy of the key is kept unless <paramref name="force"/>; a file
        /// holding another repository's key (see <see cref="KeyFileOfAnotherRepository"/>) is kept even then.
        /// </summary>
        public bool RemoveHostKey(bool force)
        {
            RepositoryEncryption encryption = RequireEncrypted();
            if (KeyFileOfAnotherRepository() is (string file, var recorded))
            {
                throw RepositoryIdInUse(file, recorded);
            }

            if (!force && _passphrases.Slots.Count == 0 && HostKeyFile != null)
            {
                throw LastCopy($"host key file '{HostKeyFile}'");
            }

            return HostKeyStore.Remove(encryption.RepositoryId!);
        }

        /// <summary>
        /// True when <paramref name="full"/> lies in the repository's folder <paramref name="repositoryPath"/>, by its
        /// path or (Linux) through a link: its nearest existing folder or one above it is the repository's folder.
        /// </summary>
        private static bool IsInFolder(string full, string repositoryPath)
        {
            StringComparison comparison = HostPlatform.IsWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            string root = repositoryPath.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar) + Path.DirectorySeparatorChar;
            if (full.StartsWith(root, comparison))
            {
                return true;
            }

            FileStatus? repositoryFolder = HostPlatform.IsLinux ? UnixFiles.StatFollowingLinks(repositoryPath) : null;
            for (string? folder = Path.GetDirectoryName(full); repositoryFolder != null && folder != null; folder = Path.GetDirectoryName(folder))
            {
                if (UnixFiles.StatFollowingLinks(folder) is FileStatus status && status.IsSameFile(repositoryFolder.Value))
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>
        /// Unlocks the repository with <paramref name="key"/> and writes it as this host's key file. A key file there that
        /// holds another key is refused when written for another location; written for this one, it is copied aside first
        /// (<see cref="RepositoryKeyCopy.ReplacedKeyFile"/>): it opened whatever repository was here before its repository
        /// file was replaced, maybe that repository's only copy. A damaged key file (nobody's key) is replaced.
        /// </summary>
        private RepositoryKeyCopy Import(RepositoryKey key)
        {
            _encryption.Unlock(key);
            string? keptAside = null;
            if (KeyFileOfAnotherRepository() is (string file, var recorded))
            {
                keptAside = recorded != null && HostKeyStore.SamePlace(recorded, Location)
                    ? HostKeyStore.KeepAside(_encryption.RepositoryId!)
                    : throw RepositoryIdInUse(file, recorded);
            }

            string path = HostKeyStore.Write(_encryption.RepositoryId!, key, Location);
            return new RepositoryKeyCopy(Location, key.KeyId, KeyCopyKind.HostKeyFile, null, path) { ReplacedKeyFile = keptAside };
        }

        /// <summary>
        /// This host's key file for the repository's id, and the repository it records, when the file can be read and its
        /// key does not open this repository: then it is the key of another repository whose id this one claims (an id is
        /// no secret; anyone who can write a repository file can copy one), maybe that repository's only copy. Null when
        /// there is no such file, it cannot be read (it is nobody's key), or its key opens this repository.
        /// </summary>
        private (string File, string? Recorded)? KeyFileOfAnotherRepository()
        {
            RepositoryKey? held;
            string? recorded;
            try
            {
                held = HostKeyStore.TryRead(_encryption.RepositoryId!, out recorded);
            }
            catch (VmQuiesceException e) when (e.ErrorId == "RepositoryKeyFileInvalid")
            {
                return null;
            }

            return held != null && !_encryption.Opens(held) ? (HostKeyStore.PathOf(_encryption.RepositoryId!), recorded) : ((string, string?)?)null;
        }

        private VmQuiesceException RepositoryIdInUse(string file, string? recorded) =>
            new VmQuiesceException("RepositoryIdInUse", FailureKind.SecurityError,
                $"This host's key file '{file}' holds the key of another repository ({(recorded == null ? "its location is not recorded" : $"'{recorded}'")}), which has the repository id {_encryption.RepositoryId} that '{Location}' claims; expected the key of '{Location}'. The key file is left as it is.", Location)
            {
                Remedy = $"Someone who can write '{Location}' may have copied another repository's id into its repository file: do not trust it. To give up the other repository's key, run Remove-VmBackupRepositoryKey on that repository.",
            };

        private RepositoryEncryption RequireEncrypted()
        {
            if (!_encryption.IsEncrypted)
            {
                throw new VmQuiesceException("RepositoryNotEncrypted", FailureKind.InvalidOperation,
                    $"The repository '{Location}' was made before repository keys: it is not encrypted and has no key.", Location)
                {
                    Remedy = "Make an encrypted repository with New-VmBackupRepository and back up into it.",
                };
            }

            return _encryption;
        }

        /// <summary>The shortest passphrase a copy of a key is sealed under.</summary>
        public const int MinPassphraseLength = 8;

        private static void CheckPassphrase(SecureString passphrase)
        {
            if (passphrase.Length < MinPassphraseLength)
            {
                throw new VmQuiesceException("PassphraseTooShort", FailureKind.InvalidArgument,
                    $"The passphrase has {passphrase.Length} characters; expected at least {MinPassphraseLength}.", "Passphrase");
            }
        }

        private VmQuiesceException LastCopy(string what) =>
            new VmQuiesceException("RepositoryKeyLastCopy", FailureKind.InvalidOperation,
                $"The {what} is the last copy of the key of '{Location}' this host knows: without it nothing in the repository can be read again.", Location)
            {
                Remedy = "Export the key first (Export-VmBackupRepositoryKey) or add a passphrase copy (Add-VmBackupRepositoryKey); or use -Force if the repository is to be given up.",
            };

        public void Dispose() => _storage.Dispose();
    }
}
