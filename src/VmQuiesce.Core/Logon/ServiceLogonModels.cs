using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Logon
{
    /// <summary>Whether an account may log on as a service ("Log on as a service" on Windows).</summary>
    public enum LogonRight
    {
        /// <summary>The account holds the right (directly, or it is a built-in service account).</summary>
        Granted,

        /// <summary>The account lacks the right; Set grants it.</summary>
        Missing,

        /// <summary>The account holds the deny right, which wins over any grant; Set refuses it.</summary>
        Denied,

        /// <summary>The platform has no such right (systemd starts a unit as any existing user).</summary>
        NotApplicable,
    }

    /// <summary>What the service manager reports about a service right now.</summary>
    public enum ServiceRunState
    {
        Unknown,
        Stopped,
        Starting,
        Stopping,
        Running,
        Paused,
    }

    /// <summary>A service (Windows) or unit (systemd) as the backend found it.</summary>
    public sealed class ServiceEntry
    {
        public ServiceEntry(string name, string displayName, string account, string startMode, ServiceRunState state)
        {
            Name = name;
            DisplayName = displayName;
            Account = account;
            StartMode = startMode;
            State = state;
        }

        /// <summary>Service key name (Windows) or unit name such as vmware-vss.service (Linux).</summary>
        public string Name { get; }

        public string DisplayName { get; }

        /// <summary>The account the service logs on as, as the service manager spells it.</summary>
        public string Account { get; }

        /// <summary>The group the unit runs as (systemd Group=); null when not set or not applicable.</summary>
        public string? Group { get; init; }

        public string StartMode { get; }

        public ServiceRunState State { get; }

        /// <summary>Where the logon setting lives (the systemd drop-in); null on Windows (the SCM database).</summary>
        public string? ConfigurationPath { get; init; }
    }

    /// <summary>An account the backend resolved: the canonical name to configure and a platform identity.</summary>
    public sealed class LogonAccount
    {
        public LogonAccount(string name, string identity)
        {
            Name = name;
            Identity = identity;
        }

        /// <summary>The name written into the service configuration (.\user, DOMAIN\user, or a Unix user name).</summary>
        public string Name { get; }

        /// <summary>A stable identity to compare accounts by: a SID string or a Unix uid.</summary>
        public string Identity { get; }

        /// <summary>LocalSystem, LocalService or NetworkService: no password, implicit logon right.</summary>
        public bool IsBuiltInServiceAccount { get; init; }

        public bool SameAs(LogonAccount other) => string.Equals(Identity, other.Identity, StringComparison.OrdinalIgnoreCase);

        public override string ToString() => Name;
    }

    /// <summary>Whether an account can modify a VM folder, and if not, why.</summary>
    public sealed class FolderAccess
    {
        public FolderAccess(string path, bool canModify, string detail)
        {
            Path = path;
            CanModify = canModify;
            Detail = detail;
        }

        public string Path { get; }

        /// <summary>Windows: the effective rights include Modify. Linux: read, write and search (rwx), and every parent can be searched.</summary>
        public bool CanModify { get; }

        /// <summary>How the answer was reached or what is missing, in words.</summary>
        public string Detail { get; }

        public override string ToString() => CanModify ? Path : Path + " (no access)";
    }

    /// <summary>What the service logs on as and whether that account has what the VSS writer needs.</summary>
    public sealed class ServiceLogonInfo
    {
        internal ServiceLogonInfo(ServiceEntry service, LogonRight logonRight, bool? isAdministrator, IReadOnlyList<FolderAccess> folders)
        {
            ServiceName = service.Name;
            DisplayName = service.DisplayName;
            Account = service.Account;
            Group = service.Group;
            StartMode = service.StartMode;
            StateValue = service.State;
            ConfigurationPath = service.ConfigurationPath;
            LogonRightValue = logonRight;
            IsAdministrator = isAdministrator;
            FolderAccess = folders;
        }

        public string ServiceName { get; }

        public string DisplayName { get; }

        public string Account { get; }

        public string? Group { get; }

        public string StartMode { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StateValue"/> is the typed value.</summary>
        public string State => StateValue.ToString();

        internal ServiceRunState StateValue { get; }

        public string? ConfigurationPath { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="LogonRightValue"/> is the typed value.</summary>
        public string LogonRight => LogonRightValue.ToString();

        internal LogonRight LogonRightValue { get; }

        /// <summary>Null when the account could not be resolved (it no longer exists).</summary>
        public bool? IsAdministrator { get; }

        public IReadOnlyList<FolderAccess> FolderAccess { get; }
    }

    /// <summary>One condition Test checks.</summary>
    public sealed class ServiceLogonCheck
    {
        public ServiceLogonCheck(string name, bool passed, string detail)
        {
            Name = name;
            Passed = passed;
            Detail = detail;
        }

        /// <summary>Service, Account, Group, Password, LogonRight, Administrator or Folder.</summary>
        public string Name { get; }

        public bool Passed { get; }

        public string Detail { get; }

        public override string ToString() => (Passed ? "[ok] " : "[failed] ") + Name + ": " + Detail;
    }

    /// <summary>The result of Test: every check, and whether all hold.</summary>
    public sealed class ServiceLogonTestResult
    {
        internal ServiceLogonTestResult(string serviceName, string expectedAccount, IReadOnlyList<ServiceLogonCheck> checks)
        {
            ServiceName = serviceName;
            ExpectedAccount = expectedAccount;
            Checks = checks;
            foreach (ServiceLogonCheck check in checks)
            {
                if (!check.Passed)
                {
                    FailedChecks++;
                }
            }
        }

        public string ServiceName { get; }

        public string ExpectedAccount { get; }

        public bool InDesiredState => FailedChecks == 0;

        public int FailedChecks { get; }

        public IReadOnlyList<ServiceLogonCheck> Checks { get; }
    }

    /// <summary>What Set did, for -PassThru and for scripts that want to know.</summary>
    public sealed class ServiceLogonChange
    {
        internal ServiceLogonChange(string serviceName, string previousAccount, string account, IReadOnlyList<string> actions, bool restarted)
        {
            ServiceName = serviceName;
            PreviousAccount = previousAccount;
            Account = account;
            Actions = actions;
            Restarted = restarted;
        }

        public string ServiceName { get; }

        public string PreviousAccount { get; }

        public string Account { get; }

        /// <summary>Each change made, in order (empty when everything already held).</summary>
        public IReadOnlyList<string> Actions { get; }

        public bool Restarted { get; }
    }

    /// <summary>
    /// A folder entry Set added for the account, kept for its rollback: the backend's record of exactly what it added.
    /// </summary>
    public sealed class FolderGrant
    {
        public FolderGrant(string path, string account, object? undoState)
        {
            Path = path;
            Account = account;
            UndoState = undoState;
        }

        /// <summary>The folder, as the backend resolved it.</summary>
        public string Path { get; }

        public string Account { get; }

        /// <summary>
        /// What the backend needs to remove the entry it added (Windows: the account's SID); null when nothing can be
        /// removed: the very entry was there before, or the grant widened entries across a tree (POSIX ACLs).
        /// </summary>
        public object? UndoState { get; }

        public bool CanBeUndone => UndoState != null;
    }

    /// <summary>
    /// The previous logon, captured by the backend when it changes the account, so a failed restart
    /// can put it back. PlatformState is whatever the backend needs (the previous drop-in text).
    /// </summary>
    public sealed class PreviousLogon
    {
        public PreviousLogon(string account, object? platformState)
        {
            Account = account;
            PlatformState = platformState;
        }

        public string Account { get; }

        public object? PlatformState { get; }
    }
}
