using System;
using System.IO;
using System.Security;
using System.Security.Cryptography;
using System.Text;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    public sealed class PasswordVerifierStoreTests : IDisposable
    {
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "vmq-verifier-" + Guid.NewGuid().ToString("N"), "state");
        private readonly LogonAccount _account = new LogonAccount(@".\backup", "S-1-5-21-1-2-3-1001");

        public void Dispose()
        {
            string parent = Path.GetDirectoryName(_folder)!;
            if (Directory.Exists(parent))
            {
                Directory.Delete(parent, recursive: true);
            }
        }

        private static SecureString Secure(string text)
        {
            var secure = new SecureString();
            foreach (char c in text)
            {
                secure.AppendChar(c);
            }

            return secure;
        }

        [Fact]
        public void Pbkdf2MatchesTheRfc7914VectorAndTheFrameworkImplementation()
        {
            // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1, dkLen=64.
            byte[] derived = PasswordVerifierStore.Pbkdf2Sha256(Encoding.ASCII.GetBytes("passwd"), Encoding.ASCII.GetBytes("salt"), 1, 64);
            Assert.Equal("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783", Convert.ToHexString(derived).ToLowerInvariant());

            byte[] key = Encoding.UTF8.GetBytes("pässwörd");
            byte[] salt = RandomNumberGenerator.GetBytes(16);
            Assert.Equal(Rfc2898DeriveBytes.Pbkdf2(key, salt, 5000, HashAlgorithmName.SHA256, 32), PasswordVerifierStore.Pbkdf2Sha256(key, salt, 5000, 32));
        }

        [Fact]
        public void ComparesTheSavedPasswordAndNoticesARotationOrAnotherAccount()
        {
            var store = new PasswordVerifierStore(_folder, iterations: 2000);
            Assert.Equal(VerifierMatch.Missing, store.Compare("vmvss", _account, Secure("first")));

            store.Save("vmvss", _account, Secure("first"));
            Assert.Equal(VerifierMatch.Matches, store.Compare("vmvss", _account, Secure("first")));
            Assert.Equal(VerifierMatch.Differs, store.Compare("vmvss", _account, Secure("second")));
            Assert.Equal(VerifierMatch.Differs, store.Compare("vmvss", new LogonAccount(@".\other", "S-1-5-21-1-2-3-1002"), Secure("first")));
            Assert.Equal(VerifierMatch.Missing, store.Compare("othersvc", _account, Secure("first")));
        }

        [Fact]
        public void TheFileHoldsASaltedHashWithAHighDefaultIterationCountAndNoPassword()
        {
            var store = new PasswordVerifierStore(_folder);
            store.Save("vmvss", _account, Secure("Visible-Marker-Password"));
            store.Save("vmvss", _account, Secure("Visible-Marker-Password"));
            string text = File.ReadAllText(store.PathFor("vmvss"));

            Assert.DoesNotContain("Visible-Marker", text, StringComparison.Ordinal);
            JsonObject document = JsonText.ParseObject(text);
            Assert.Equal(600_000, document.GetInt64("iterations"));
            Assert.Equal("PBKDF2-HMAC-SHA256", document.GetString("algorithm"));
            Assert.Equal(16, Convert.FromBase64String(document.GetString("salt")).Length);
            Assert.Single(Directory.GetFiles(_folder)); // the temporary file was renamed over the old one
        }

        [Fact]
        public void TwoSavesOfOnePasswordUseDifferentSalts()
        {
            var store = new PasswordVerifierStore(_folder, iterations: 1000);
            store.Save("a", _account, Secure("same"));
            store.Save("b", _account, Secure("same"));
            Assert.NotEqual(
                JsonText.ParseObject(File.ReadAllText(store.PathFor("a"))).GetString("salt"),
                JsonText.ParseObject(File.ReadAllText(store.PathFor("b"))).GetString("salt"));
        }

        [LinuxFact]
        public void OnLinuxOnlyRootCanReadTheVerifier()
        {
            var store = new PasswordVerifierStore(_folder, iterations: 1000);
            store.Save("vmvss", _account, Secure("x"));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store.PathFor("vmvss")));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_folder));
        }

        [Fact]
        public void ACorruptVerifierIsAClearError()
        {
            var store = new PasswordVerifierStore(_folder, iterations: 1000);
            store.Save("vmvss", _account, Secure("x"));
            File.WriteAllText(store.PathFor("vmvss"), "{\"service\":\"vmvss\",\"account\":\"S-1\",\"algorithm\":\"PBKDF2-HMAC-SHA256\",\"iterations\":1,\"salt\":\"@@\",\"hash\":\"\"}");
            VmQuiesceException failure = Assert.Throws<VmQuiesceException>(() => store.Compare("vmvss", _account, Secure("x")));
            Assert.Equal("PasswordVerifierCorrupt", failure.ErrorId);
            Assert.Contains(store.PathFor("vmvss"), failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void DefaultFolderIsProgramDataOrVarLib()
        {
            Assert.Equal(
                OperatingSystem.IsWindows() ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmQuiesce") : "/var/lib/vmquiesce",
                PasswordVerifierStore.DefaultFolder);
        }

        [LinuxFact]
        public void AVerifierThatIsAFifoIsNamedUnreadInsteadOfHangingTheTest()
        {
            // The state folder may be one the administrator chose (-StateDirectory), which another user can write.
            var store = new PasswordVerifierStore(_folder);
            Directory.CreateDirectory(_folder);
            string verifier = store.PathFor("vmware-vss");
            Fifo.Make(verifier);

            VmQuiesceException e = Fifo.Within(verifier, () => Assert.Throws<VmQuiesceException>(() => store.Compare("vmware-vss", _account, Secure("secret"))));

            Assert.Equal("PasswordVerifierUnreadable", e.ErrorId);
            Assert.Contains($"'{verifier}' is a FIFO", e.Message);
        }
    }
}
