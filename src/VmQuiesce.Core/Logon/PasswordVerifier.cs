using System;
using System.IO;
using System.Security;
using System.Security.Cryptography;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon
{
    /// <summary>What the stored verifier says about a password.</summary>
    public enum VerifierMatch
    {
        /// <summary>The password is the one last applied to this service and account.</summary>
        Matches,

        /// <summary>A different password (or account) was last applied: the password was rotated.</summary>
        Differs,

        /// <summary>No verifier: the password was never applied by VmQuiesce.</summary>
        Missing,
    }

    /// <summary>
    /// A salted PBKDF2-HMAC-SHA256 verifier of the password last applied to each service, so Test
    /// notices a rotated password without storing the password. One small JSON file per service in
    /// a folder only root/Administrators can read: Linux mode 0700 folder, 0600 files; Windows a
    /// protected DACL for Administrators and SYSTEM only.
    /// </summary>
    public sealed class PasswordVerifierStore
    {
        /// <summary>OWASP's 2023 figure for PBKDF2-HMAC-SHA256.</summary>
        public const int DefaultIterations = 600_000;

        private const string Algorithm = "PBKDF2-HMAC-SHA256";
        private const int SaltBytes = 16;
        private const int HashBytes = 32;

        public PasswordVerifierStore(string folder, int iterations = DefaultIterations)
        {
            if (string.IsNullOrWhiteSpace(folder))
            {
                throw new VmQuiesceException("StateDirectoryInvalid", FailureKind.InvalidArgument, "The state directory must be a folder path; it was empty.", folder);
            }

            Folder = Path.GetFullPath(folder);
            Iterations = iterations;
        }

        /// <summary>%ProgramData%\VmQuiesce on Windows, /var/lib/vmquiesce elsewhere.</summary>
        public static string DefaultFolder => HostPlatform.IsWindows
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmQuiesce")
            : "/var/lib/vmquiesce";

        public string Folder { get; }

        public int Iterations { get; }

        public string PathFor(string serviceName) => Path.Combine(Folder, "logon-" + SafeFileName(serviceName) + ".verifier.json");

        public void Save(string serviceName, LogonAccount account, SecureString password)
        {
            byte[] salt = new byte[SaltBytes];
            using (RandomNumberGenerator random = RandomNumberGenerator.Create())
            {
                random.GetBytes(salt);
            }

            byte[] hash = Derive(password, salt, Iterations);
            var document = new JsonObject()
                .With("service", serviceName)
                .With("account", account.Identity)
                .With("algorithm", Algorithm)
                .With("iterations", (long)Iterations)
                .With("salt", Convert.ToBase64String(salt))
                .With("hash", Convert.ToBase64String(hash));
            StateFiles.WriteProtected(Folder, PathFor(serviceName), JsonText.Serialize(document, indented: true));
        }

        public VerifierMatch Compare(string serviceName, LogonAccount account, SecureString password)
        {
            string path = PathFor(serviceName);
            if (!File.Exists(path))
            {
                return VerifierMatch.Missing;
            }

            JsonObject document;
            byte[] salt;
            byte[] expected;
            int iterations;
            try
            {
                document = JsonText.ParseObject(StateFiles.ReadOwn(path));
                if (document.GetString("algorithm") != Algorithm)
                {
                    throw new FormatException("unknown algorithm " + document.GetString("algorithm"));
                }

                salt = Convert.FromBase64String(document.GetString("salt"));
                expected = Convert.FromBase64String(document.GetString("hash"));
                iterations = checked((int)document.GetInt64("iterations"));
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("PasswordVerifierUnreadable", FailureKind.PermissionDenied,
                    $"The password verifier '{path}' cannot be read: {e.Message}", path, e)
                {
                    Remedy = "Run as root/Administrator: only they may read the verifier.",
                };
            }
            catch (Exception e) when (e is FormatException || e is OverflowException)
            {
                throw new VmQuiesceException("PasswordVerifierCorrupt", FailureKind.InvalidData,
                    $"The password verifier '{path}' cannot be read ({e.Message}). Run Set-VssWriterServiceLogon again to rewrite it.", path, e);
            }

            if (!string.Equals(document.GetString("account"), account.Identity, StringComparison.OrdinalIgnoreCase))
            {
                return VerifierMatch.Differs;
            }

            byte[] actual = Derive(password, salt, iterations);
            return FixedTimeEquals(actual, expected) ? VerifierMatch.Matches : VerifierMatch.Differs;
        }

        /// <summary>
        /// PBKDF2 (RFC 8018) with HMAC-SHA256. netstandard2.0's Rfc2898DeriveBytes offers only SHA-1,
        /// so the loop is written out here; tests check it against Rfc2898DeriveBytes.Pbkdf2 (SHA-256).
        /// </summary>
        internal static byte[] Derive(SecureString password, byte[] salt, int iterations)
        {
            byte[] key = SecretText.ToUtf8(password);
            try
            {
                return Pbkdf2Sha256(key, salt, iterations, HashBytes);
            }
            finally
            {
                Array.Clear(key, 0, key.Length);
            }
        }

        internal static byte[] Pbkdf2Sha256(byte[] key, byte[] salt, int iterations, int length)
        {
            if (iterations < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(iterations));
            }

            byte[] output = new byte[length];
            using var hmac = new HMACSHA256(key);
            byte[] block = new byte[salt.Length + 4];
            Buffer.BlockCopy(salt, 0, block, 0, salt.Length);
            int offset = 0;
            for (uint blockIndex = 1; offset < length; blockIndex++)
            {
                block[salt.Length] = (byte)(blockIndex >> 24);
                block[salt.Length + 1] = (byte)(blockIndex >> 16);
                block[salt.Length + 2] = (byte)(blockIndex >> 8);
                block[salt.Length + 3] = (byte)blockIndex;
                byte[] u = hmac.ComputeHash(block);
                byte[] t = (byte[])u.Clone();
                for (int i = 1; i < iterations; i++)
                {
                    u = hmac.ComputeHash(u);
                    for (int j = 0; j < t.Length; j++)
                    {
                        t[j] ^= u[j];
                    }
                }

                int count = Math.Min(t.Length, length - offset);
                Buffer.BlockCopy(t, 0, output, offset, count);
                offset += count;
            }

            return output;
        }

        private static bool FixedTimeEquals(byte[] a, byte[] b)
        {
            int difference = a.Length ^ b.Length;
            for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
            {
                difference |= a[i] ^ b[i];
            }

            return difference == 0;
        }

        private static string SafeFileName(string name)
        {
            char[] chars = name.ToCharArray();
            for (int i = 0; i < chars.Length; i++)
            {
                if (!(char.IsLetterOrDigit(chars[i]) || chars[i] == '-' || chars[i] == '_' || chars[i] == '.'))
                {
                    chars[i] = '_';
                }
            }

            return new string(chars);
        }
    }
}
