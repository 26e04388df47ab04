using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security;
using System.Threading;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// A scripted stand-in for the platform calls: it records every call in order and separates
    /// the calls that change something, so tests can prove what happened before the first change.
    /// </summary>
    internal sealed class FakeLogonBackend : IServiceLogonBackend
    {
        private static readonly HashSet<string> ChangingCalls = new HashSet<string>
        {
            nameof(GrantLogonRight), nameof(GrantFolderAccess), nameof(RevokeFolderAccess), nameof(SetServiceAccount), nameof(RestoreServiceAccount), nameof(RestartService),
        };

        public bool UsesPassword { get; set; } = true;

        public string ServiceName { get; set; } = "vmvss";

        public string CurrentAccount { get; set; } = "LocalSystem";

        public ServiceRunState State { get; set; } = ServiceRunState.Running;

        public HashSet<string> Accounts { get; } = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { @".\backup", "LocalSystem" };

        /// <summary>The password the fake accepts for every account (compared inside the fake only).</summary>
        public string CorrectPassword { get; set; } = "Correct-Horse-1";

        public LogonRight Right { get; set; } = LogonRight.Missing;

        public bool Administrator { get; set; } = true;

        /// <summary>Folder -> can modify; a folder not listed does not exist.</summary>
        public Dictionary<string, bool> Folders { get; } = new Dictionary<string, bool>();

        public int RestartFailuresLeft { get; set; }

        /// <summary>Whether a folder grant comes back with an undo record (Windows) or without one (POSIX ACLs across a tree).</summary>
        public bool FolderGrantsCanBeUndone { get; set; } = true;

        public bool RevokeFails { get; set; }

        public bool SetAccountFails { get; set; }

        /// <summary>Whether the service's configuration lies where another user could redirect its write (UnitFolderUnsafe).</summary>
        public bool ConfigurationUnsafe { get; set; }

        public bool RestoreAccountFails { get; set; }

        public string? WhyNoRestart { get; set; }

        /// <summary>Cancelled by the next restart once it has stopped the service, as Ctrl+C while the real backend waits for the start.</summary>
        public CancellationTokenSource? CancelDuringRestart { get; set; }

        public List<string> Calls { get; } = new List<string>();

        public List<string> Changes { get; } = new List<string>();

        public ServiceEntry FindService(string? name)
        {
            Record(nameof(FindService), name ?? "(default)");
            if (name != null && name != ServiceName)
            {
                throw new VmQuiesceException("ServiceNotFound", FailureKind.ObjectNotFound, $"No service '{name}'.", name);
            }

            return new ServiceEntry(ServiceName, "VMware VSS Writer Service", CurrentAccount, "Automatic", State);
        }

        public LogonAccount ResolveAccount(string name)
        {
            Record(nameof(ResolveAccount), name);
            if (!Accounts.Contains(name))
            {
                throw new VmQuiesceException("AccountNotFound", FailureKind.ObjectNotFound, $"The account '{name}' does not exist.", name);
            }

            return new LogonAccount(name, "SID-" + name.ToUpperInvariant()) { IsBuiltInServiceAccount = name == "LocalSystem" };
        }

        public void ResolveGroup(string name) => Record(nameof(ResolveGroup), name);

        public bool VerifyPassword(LogonAccount account, SecureString password)
        {
            Record(nameof(VerifyPassword), account.Name);
            IntPtr native = Marshal.SecureStringToGlobalAllocUnicode(password);
            try
            {
                return Marshal.PtrToStringUni(native, password.Length) == CorrectPassword;
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(native);
            }
        }

        public LogonRight GetLogonRight(LogonAccount account)
        {
            Record(nameof(GetLogonRight), account.Name);
            return Right;
        }

        public void GrantLogonRight(LogonAccount account)
        {
            Record(nameof(GrantLogonRight), account.Name);
            Right = LogonRight.Granted;
        }

        public bool IsAdministrator(LogonAccount account)
        {
            Record(nameof(IsAdministrator), account.Name);
            return Administrator || account.Name == "LocalSystem";
        }

        public FolderAccess CheckFolderAccess(LogonAccount account, string folder)
        {
            Record(nameof(CheckFolderAccess), folder);
            if (!Folders.TryGetValue(folder, out bool canModify))
            {
                throw new VmQuiesceException("FolderNotFound", FailureKind.ObjectNotFound, $"The VM folder '{folder}' does not exist.", folder);
            }

            return new FolderAccess(folder, canModify, canModify ? "modify granted" : "no modify rule");
        }

        public FolderGrant GrantFolderAccess(LogonAccount account, string folder)
        {
            Record(nameof(GrantFolderAccess), folder);
            Folders[folder] = true;
            return new FolderGrant(folder, account.Name, FolderGrantsCanBeUndone ? "entry-for-" + account.Identity : null);
        }

        public void RevokeFolderAccess(FolderGrant grant)
        {
            Record(nameof(RevokeFolderAccess), grant.Path + "|" + grant.UndoState);
            if (RevokeFails)
            {
                throw new VmQuiesceException("FolderAccessRevokeFailed", FailureKind.WriteError, $"Cannot remove the Modify entry from '{grant.Path}': access denied.", grant.Path);
            }

            Folders[grant.Path] = false;
        }

        public void CheckCanSetServiceAccount(ServiceEntry service)
        {
            Record(nameof(CheckCanSetServiceAccount), service.Name);
            if (ConfigurationUnsafe)
            {
                throw new VmQuiesceException("UnitFolderUnsafe", FailureKind.SecurityError, $"The configuration of {service.Name} is not root's alone.", service.Name);
            }
        }

        public PreviousLogon SetServiceAccount(ServiceEntry service, LogonAccount account, SecureString? password, string? group)
        {
            Record(nameof(SetServiceAccount), account.Name);
            if (SetAccountFails)
            {
                throw new VmQuiesceException("ServiceConfigChangeFailed", FailureKind.PermissionDenied, $"Cannot set the logon account of '{service.Name}': access denied.", service.Name);
            }

            var previous = new PreviousLogon(CurrentAccount, "state-of-" + CurrentAccount);
            CurrentAccount = account.Name;
            return previous;
        }

        public void RestoreServiceAccount(ServiceEntry service, PreviousLogon previous)
        {
            Record(nameof(RestoreServiceAccount), previous.Account + "|" + previous.PlatformState);
            if (RestoreAccountFails)
            {
                throw new VmQuiesceException("ServiceConfigChangeFailed", FailureKind.PermissionDenied, $"Cannot set the logon account of '{service.Name}': access denied.", service.Name);
            }

            CurrentAccount = previous.Account;
        }

        public string? WhyRestartIsUnavailable(ServiceEntry service)
        {
            Record(nameof(WhyRestartIsUnavailable), service.Name);
            return WhyNoRestart;
        }

        public void RestartService(ServiceEntry service, CancellationToken cancel)
        {
            Record(nameof(RestartService), CurrentAccount);
            if (RestartFailuresLeft > 0)
            {
                RestartFailuresLeft--;
                throw new VmQuiesceException("ServiceRestartFailed", FailureKind.InvalidOperation, "The service did not start: logon failure (error 1069).", service.Name);
            }

            CancelDuringRestart?.Cancel();
            CancelDuringRestart = null;
            cancel.ThrowIfCancellationRequested();
        }

        private void Record(string call, string argument)
        {
            Calls.Add(call + ":" + argument);
            if (ChangingCalls.Contains(call))
            {
                Changes.Add(call + ":" + argument);
            }
        }
    }

    /// <summary>Answers ShouldProcess as told and keeps everything the core said.</summary>
    internal sealed class RecordingGate : IOperationHost
    {
        public bool Answer { get; set; } = true;

        public List<string> Asked { get; } = new List<string>();

        public List<string> Warnings { get; } = new List<string>();

        public List<string> Verbose { get; } = new List<string>();

        public IEnumerable<string> Everything => ((IEnumerable<string>)Asked).Concat(Warnings).Concat(Verbose);

        /// <summary>A question whose action starts so is answered with Ctrl+C (OperationCanceledException), as the cmdlet's pump does.</summary>
        public string? StopAt { get; set; }

        public bool ShouldProcess(string target, string action)
        {
            Asked.Add(target + ": " + action);
            if (StopAt != null && action.StartsWith(StopAt, StringComparison.Ordinal))
            {
                throw new OperationCanceledException();
            }

            return Answer;
        }

        public void WriteWarning(string message) => Warnings.Add(message);

        public void WriteVerbose(string message) => Verbose.Add(message);

        public void WriteProgress(TransferProgress progress)
        {
        }
    }
}
