using System;
using System.IO;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// Key files: a repository key in plain form, named by the repository's id, in a folder only root/Administrators
    /// can read (/etc/vmquiesce/keys; %ProgramData%\VmQuiesce\Keys on Windows; VMQUIESCE_KEY_FOLDER overrides it).
    /// The same format is what Export-VmBackupRepositoryKey writes and Import-VmBackupRepositoryKey -KeyFile reads.
    /// </summary>
    public static class HostKeyStore
    {
        public const string FolderVariable = "VMQUIESCE_KEY_FOLDER";
        internal const string KeyFileFormat = "VmQuiesceRepositoryKey";
        internal const string Extension = ".key";
        private const long MaxKeyFileBytes = 64 * 1024;

        /// <summary>Where this host keeps repository keys.</summary>
        public static string Folder
        {
            get
            {
                string? configured = Environment.GetEnvironmentVariable(FolderVariable);
                if (!string.IsNullOrEmpty(configured))
                {
                    return Path.GetFullPath(configured);
                }

                return HostPlatform.IsWindows
                    ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmQuiesce", "Keys")
                    : "/etc/vmquiesce/keys";
            }
        }

        public static string PathOf(string repositoryId) => Path.Combine(Folder, repositoryId + Extension);

        internal static RepositoryKey? TryRead(string repositoryId) => TryRead(repositoryId, out _);

        /// <summary>The host's key for the repository and the repository its file records (null when it records none); null when there is no file.</summary>
        internal static RepositoryKey? TryRead(string repositoryId, out string? recordedRepository)
        {
            string path = PathOf(repositoryId);
            recordedRepository = null;
            return File.Exists(path) ? ReadKeyFile(path, repositoryId, out recordedRepository) : null;
        }

        /// <summary>Writes the host's key file for the repository (replacing one there), readable by root/Administrators only.</summary>
        internal static string Write(string repositoryId, RepositoryKey key, string repositoryPath)
        {
            string path = PathOf(repositoryId);
            WriteKeyFile(Folder, path, repositoryId, key, repositoryPath);
            return path;
        }

        /// <summary>
        /// Refuses a repository whose file says it is not encrypted while this host holds the key of an encrypted
        /// repository at that path: someone replaced the repository file to make planted plaintext restore points
        /// readable. A repository moved elsewhere leaves only a stale path here, which never matches a wrong one.
        /// </summary>
        internal static void RefuseDowngrade(string repositoryPath)
        {
            if (!Directory.Exists(Folder))
            {
                return;
            }

            foreach (string file in Directory.EnumerateFiles(Folder, "*" + Extension))
            {
                string? recorded;
                try
                {
                    recorded = JsonText.ParseObject(ReadText(file)).GetOptionalString("repository");
                }
                catch (Exception e) when (e is JsonFormatException || e is IOException || e is UnauthorizedAccessException)
                {
                    continue;
                }

                if (recorded != null && SamePlace(recorded, repositoryPath))
                {
                    throw new VmQuiesceException("RepositoryNotAuthentic", FailureKind.SecurityError,
                        $"The repository file of '{repositoryPath}' says it is not encrypted, but this host holds the key of the encrypted repository there ({file}): the file was replaced by someone without the key.", repositoryPath)
                    {
                        Remedy = "Nothing is read from it. Find out who can write the repository; restore from a copy of the repository kept elsewhere.",
                    };
                }
            }
        }

        /// <summary>Whether a key file's recorded repository is <paramref name="repositoryPath"/>: a folder path, or an s3:// address as written.</summary>
        internal static bool SamePlace(string recorded, string repositoryPath) => Storage.S3RepositoryAddress.IsS3(recorded)
            ? string.Equals(recorded, repositoryPath, StringComparison.Ordinal)
            : string.Equals(Path.GetFullPath(recorded), repositoryPath, HostPlatform.IsWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

        /// <summary>
        /// Copies the host's key file for the repository aside, to a name no key is looked up by (the same folder, closed to
        /// others), and returns that name: a key file is never lost by replacing it, nor when the replacement then fails.
        /// </summary>
        internal static string KeepAside(string repositoryId)
        {
            string path = PathOf(repositoryId);
            string aside = path + ".replaced-" + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", System.Globalization.CultureInfo.InvariantCulture);
            File.Copy(path, aside, overwrite: false);
            return aside;
        }

        internal static bool Remove(string repositoryId)
        {
            string path = PathOf(repositoryId);
            if (!File.Exists(path))
            {
                return false;
            }

            File.Delete(path);
            return true;
        }

        /// <summary>Writes a key file at <paramref name="path"/> in <paramref name="folder"/>, the folder and the file closed to everyone but root/Administrators.</summary>
        internal static void WriteKeyFile(string folder, string path, string repositoryId, RepositoryKey key, string repositoryPath)
        {
            string text = JsonText.Serialize(new JsonObject()
                .With("format", KeyFileFormat)
                .With("repositoryId", repositoryId)
                .With("repository", repositoryPath)
                .With("keyId", key.KeyId)
                .With("key", Convert.ToBase64String(key.Master)), indented: true);
            try
            {
                StateFiles.WriteProtected(folder, path, text);
            }
            catch (VmQuiesceException e)
            {
                throw new VmQuiesceException("RepositoryKeyWriteFailed", FailureKind.WriteError, $"Cannot write the key file '{path}': {e.InnerException?.Message ?? e.Message}", path, e)
                {
                    Remedy = $"Run as root (or Administrator); or set {FolderVariable} to a folder only root can read.",
                };
            }
        }

        /// <summary>
        /// Reads a key file; <paramref name="repositoryId"/>, when given, must be the repository it names. The key's
        /// id is recomputed from the key, so a key file whose key id was edited is refused. <paramref name="recordedRepository"/>
        /// is the repository (folder or s3:// address) the file was written for, null when it records none.
        /// </summary>
        internal static RepositoryKey ReadKeyFile(string path, string? repositoryId, out string? recordedRepository)
        {
            try
            {
                JsonObject json = JsonText.ParseObject(ReadText(path));
                if (json.GetString("format") != KeyFileFormat)
                {
                    throw new JsonFormatException($"The member 'format' is not '{KeyFileFormat}'.");
                }

                string fileRepositoryId = json.GetString("repositoryId");
                if (repositoryId != null && fileRepositoryId != repositoryId)
                {
                    throw new JsonFormatException($"It is the key of the repository {fileRepositoryId}, not of {repositoryId}.");
                }

                RepositoryKey key = RepositoryKey.FromBytes(Convert.FromBase64String(json.GetString("key")));
                if (key.KeyId != json.GetString("keyId"))
                {
                    throw new JsonFormatException($"Its key has the id {key.KeyId}, not the {json.GetString("keyId")} it claims.");
                }

                recordedRepository = json.GetOptionalString("repository");
                return key;
            }
            catch (Exception e) when (e is JsonFormatException || e is FormatException || e is ArgumentException || e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("RepositoryKeyFileInvalid", FailureKind.InvalidData, $"The key file '{path}' cannot be used: {e.Message}", path, e)
                {
                    Remedy = "Use the key file exported from this repository (Export-VmBackupRepositoryKey), or import the key with its passphrase.",
                };
            }
        }

        internal static RepositoryKey ReadKeyFile(string path, string repositoryId) => ReadKeyFile(path, repositoryId, out _);

        /// <summary>
        /// A key file's text: a regular file of at most <see cref="MaxKeyFileBytes"/> (a link is followed: -KeyFile is the
        /// administrator's path); a FIFO or device, which whoever can write the folder could put there, is refused unread.
        /// </summary>
        private static string ReadText(string path) => RegularFile.ReadAllTextFollowingLinks(path, MaxKeyFileBytes);
    }
}
