using System.Security;
using System.Threading;

namespace VmQuiesce.Core.Logon
{
    /// <summary>
    /// The seam between the service-logon decisions (ServiceLogonManager, written once) and the
    /// platform calls: SCM + LSA + Authz on Windows, systemd unit files + POSIX permissions on Linux.
    /// Failures are VmQuiesceExceptions with stable ids; no member ever puts a password in a message.
    /// </summary>
    public interface IServiceLogonBackend
    {
        /// <summary>Whether the service manager needs the account's password (Windows) or not (systemd).</summary>
        bool UsesPassword { get; }

        /// <summary>Finds the service by name, or by its default display name when name is null. Throws ServiceNotFound.</summary>
        ServiceEntry FindService(string? name);

        /// <summary>Resolves a user name to an account. Throws AccountNotFound.</summary>
        LogonAccount ResolveAccount(string name);

        /// <summary>Checks the group exists (systemd Group=). Throws GroupNotFound or, where groups do not apply, NotSupported.</summary>
        void ResolveGroup(string name);

        /// <summary>True when the password is right for the account; false when the platform says it is wrong.</summary>
        bool VerifyPassword(LogonAccount account, SecureString password);

        LogonRight GetLogonRight(LogonAccount account);

        void GrantLogonRight(LogonAccount account);

        bool IsAdministrator(LogonAccount account);

        /// <summary>Effective access of the account to the folder. Throws FolderNotFound.</summary>
        FolderAccess CheckFolderAccess(LogonAccount account, string folder);

        /// <summary>
        /// Adds a Modify (Windows) or rwx (POSIX ACL) entry for the account, inherited by new files; returns what was added,
        /// so that a rollback can remove exactly that.
        /// </summary>
        FolderGrant GrantFolderAccess(LogonAccount account, string folder);

        /// <summary>
        /// Removes exactly the entry <paramref name="grant"/> added, leaving the account's other entries (those that were
        /// there before) alone; does nothing for a grant that cannot be undone. Throws FolderAccessRevokeFailed.
        /// </summary>
        void RevokeFolderAccess(FolderGrant grant);

        /// <summary>
        /// Refuses, before anything changes, a service whose account <see cref="SetServiceAccount"/> could not set safely
        /// (systemd: a drop-in folder another user could redirect; UnitFolderUnsafe). Nothing to check on Windows.
        /// </summary>
        void CheckCanSetServiceAccount(ServiceEntry service);

        /// <summary>Makes the service log on as the account; returns what to put back if a restart fails.</summary>
        PreviousLogon SetServiceAccount(ServiceEntry service, LogonAccount account, SecureString? password, string? group);

        void RestoreServiceAccount(ServiceEntry service, PreviousLogon previous);

        /// <summary>Null when the service manager can restart this service now; otherwise why not (the change then applies at the next start).</summary>
        string? WhyRestartIsUnavailable(ServiceEntry service);

        /// <summary>Stops the service if it runs, starts it and waits until it runs. Throws ServiceRestartFailed.</summary>
        void RestartService(ServiceEntry service, CancellationToken cancel);
    }
}
