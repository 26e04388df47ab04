using System.Management.Automation;
using System.Security;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Commands
{
    /// <summary>Makes a new encrypted repository, in a folder or at an s3:// prefix: a new key, its key file on this host, optionally a passphrase copy inside.</summary>
    [Cmdlet(VerbsCommon.New, "VmBackupRepository", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = PassphraseSet)]
    [OutputType(typeof(RepositorySummary))]
    public sealed class NewVmBackupRepositoryCommand : RepositoryCmdlet
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
            bool onObjectStorage = S3RepositoryAddress.IsS3(Path);
            string location = onObjectStorage ? Path : ResolveFileSystemPath(Path, nameof(Path));
            SecureString? passphrase = PassphraseOf(Passphrase, Credential);
            // RepositoryKeys checks it only as it adds the copy, after the repository and its key file are made.
            RequireLongEnough(passphrase);

            if (!ShouldProcess(location, $"Create an encrypted repository, its key file in '{HostKeyStore.Folder}'{(passphrase != null ? " and a passphrase copy of the key inside it" : string.Empty)}"))
            {
                return;
            }

            RepositoryCipher? cipher = MyInvocation.BoundParameters.ContainsKey(nameof(Cipher)) ? Cipher : (RepositoryCipher?)null;
            try
            {
                if (onObjectStorage)
                {
                    S3ObjectStorage storage = OpenS3Storage(location);
                    ObjectRepository repository;
                    try
                    {
                        repository = RepositoryKeys.CreateRepository(storage, ChunkSize, passphrase, cipher);
                    }
                    catch
                    {
                        storage.Dispose();
                        throw;
                    }

                    using (repository)
                    {
                        WriteObject(RepositorySummary.Of(repository, WriteFailure));
                    }
                }
                else
                {
                    WriteObject(RepositorySummary.Of(RepositoryKeys.CreateRepository(location, ChunkSize, passphrase, cipher), WriteFailure));
                }
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
