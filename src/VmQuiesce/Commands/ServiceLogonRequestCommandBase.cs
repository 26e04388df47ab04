using System;
using System.Management.Automation;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Commands
{
    /// <summary>Set and Test take the same request: the account, the service, the VM folders and where state lives.</summary>
    public abstract class ServiceLogonRequestCommandBase : VmQuiesceCmdlet
    {
        /// <summary>The account to log on as; its password is checked before anything changes (Windows) and ignored on Linux.</summary>
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(ServiceNameCompleter))]
        public string? ServiceName { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[] VmFolder { get; set; } = Array.Empty<string>();

        /// <summary>Linux only: the systemd Group= to run the unit with.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Group { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? UnitDirectory { get; set; }

        /// <summary>Where the password verifier is kept (default %ProgramData%\VmQuiesce or /var/lib/vmquiesce).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? StateDirectory { get; set; }

        /// <summary>The request the parameters describe; an empty account name ends the command before anything is read.</summary>
        protected ServiceLogonRequest BuildRequest()
        {
            if (Credential == PSCredential.Empty || string.IsNullOrEmpty(Credential.UserName))
            {
                ThrowInvalidArgument("CredentialRequired", "-Credential must name the account the service logs on as.", Credential);
            }

            return new ServiceLogonRequest(Credential.UserName)
            {
                ServiceName = ServiceName,
                Password = Credential.Password,
                Group = Group,
                VmFolders = Array.ConvertAll(VmFolder, folder => ResolveFileSystemPath(folder, nameof(VmFolder))),
            };
        }

        protected ServiceLogonManager CreateManager() =>
            ServiceLogonSupport.CreateManager(
                UnitDirectory == null ? null : ResolveFileSystemPath(UnitDirectory, nameof(UnitDirectory)),
                StateDirectory == null ? null : ResolveFileSystemPath(StateDirectory, nameof(StateDirectory)));
    }
}
