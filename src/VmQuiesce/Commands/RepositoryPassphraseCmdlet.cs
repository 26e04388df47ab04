using System.Management.Automation;
using System.Security;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// What the key cmdlets that take a passphrase share: the repository, and the passphrase as a SecureString or
    /// a credential's password, never as text.
    /// </summary>
    public abstract class RepositoryPassphraseCmdlet : RepositoryCmdlet
    {
        protected const string PassphraseSet = "Passphrase";
        protected const string CredentialSet = "Credential";

        /// <summary>A folder, or s3://bucket/prefix.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("Path")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        [Parameter(Mandatory = true, ParameterSetName = PassphraseSet)]
        public SecureString? Passphrase { get; set; }

        /// <summary>As -Passphrase, from a credential's password (its user name is not used).</summary>
        [Parameter(Mandatory = true, ParameterSetName = CredentialSet)]
        [Credential]
        public PSCredential? Credential { get; set; }

        /// <summary>The passphrase of -Passphrase or -Credential, whichever was given.</summary>
        protected SecureString GivenPassphrase => NewVmBackupRepositoryCommand.PassphraseOf(Passphrase, Credential)!;
    }
}
