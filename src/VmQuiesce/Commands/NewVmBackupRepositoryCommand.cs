using System.Management.Automation;
using System.Security;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Commands
{
    /// <summary>Makes a new encrypted repository: a new key, its key file on this host, optionally a passphrase copy inside.</summary>
    [Cmdlet(VerbsCommon.New, "VmBackupRepository", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = PassphraseSet)]
    [OutputType(typeof(RepositorySummary))]
    public sealed class NewVmBackupRepositoryCommand : VmQuiesceCmdlet
    {
        private const string PassphraseSet = "Passphrase";
        private const string CredentialSet = "Credential";

        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; } = string.Empty;

        [Parameter]
        [ValidateRange(BackupRepository.MinChunkSize, BackupRepository.MaxChunkSize)]
        public int ChunkSize { get; set; } = BackupRepository.DefaultChunkSize;

        /// <summary>The AEAD of chunks and manifests; without it, AES-256-GCM where the CPU has AES instructions, else ChaCha20-Poly1305.</summary>
        [Parameter]
        public RepositoryCipher Cipher { get; set; }

        /// <summary>Also keeps a copy of the key inside the repository, sealed under this passphrase.</summary>
        [Parameter(ParameterSetName = PassphraseSet)]
        public SecureString? Passphrase { get; set; }

        /// <summary>As -Passphrase, from a credential's password (its user name is not used).</summary>
        [Parameter(ParameterSetName = CredentialSet)]
        [Credential]
        public PSCredential? Credential { get; set; }

        protected override void ProcessRecord()
        {
            string path = ResolveFileSystemPath(Path, nameof(Path));
            if (!ShouldProcess(path, $"Create an encrypted repository, its key file in '{HostKeyStore.Folder}'{(PassphraseOf(Passphrase, Credential) != null ? " and a passphrase copy of the key inside it" : string.Empty)}"))
            {
                return;
            }

            try
            {
                BackupRepository repository = RepositoryKeys.CreateRepository(path, ChunkSize, PassphraseOf(Passphrase, Credential), MyInvocation.BoundParameters.ContainsKey(nameof(Cipher)) ? Cipher : (RepositoryCipher?)null);
                WriteObject(RepositorySummary.Of(repository, WriteFailure));
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
            }
        }

        /// <summary>The passphrase of -Passphrase or -Credential, whichever was given.</summary>
        internal static SecureString? PassphraseOf(SecureString? passphrase, PSCredential? credential) => passphrase ?? credential?.Password;
    }
}
