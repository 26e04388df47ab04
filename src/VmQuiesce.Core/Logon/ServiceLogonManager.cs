using System;
using System.Collections.Generic;
using System.Linq;
using System.Security;
using System.Threading;

namespace VmQuiesce.Core.Logon
{
    /// <summary>What Set is asked to do.</summary>
    public sealed record ServiceLogonRequest
    {
        public ServiceLogonRequest(string userName)
        {
            UserName = userName;
        }

        /// <summary>Service or unit name; null finds the service by its display name "VMware VSS Writer Service".</summary>
        public string? ServiceName { get; init; }

        public string UserName { get; }

        /// <summary>Kept as a SecureString throughout; never turned into a managed string.</summary>
        public SecureString? Password { get; init; }

        /// <summary>systemd Group=; not supported on Windows.</summary>
        public string? Group { get; init; }

        public IReadOnlyList<string> VmFolders { get; init; } = Array.Empty<string>();

        public bool GrantFolderAccess { get; init; }

        public bool Restart { get; init; }
    }

    /// <summary>
    /// The service-logon decisions, written once for every platform and driven through
    /// IServiceLogonBackend. Set validates everything (account, password, rights, folders) before
    /// the first change, asks the host before each change, and puts the previous account back
    /// when the restart fails.
    /// </summary>
    public sealed class ServiceLogonManager
    {
        public const string DefaultDisplayName = "VMware VSS Writer Service";

        private readonly IServiceLogonBackend _backend;
        private readonly PasswordVerifierStore _verifiers;

        public ServiceLogonManager(IServiceLogonBackend backend, PasswordVerifierStore verifiers)
        {
            _backend = backend;
            _verifiers = verifiers;
        }

        public ServiceLogonInfo Get(string? serviceName, IEnumerable<string> vmFolders, Action<VmQuiesceException> folderFailed)
        {
            ServiceEntry service = _backend.FindService(serviceName);
            LogonAccount? account = TryResolve(service.Account);
            var folders = new List<FolderAccess>();
            foreach (string folder in vmFolders)
            {
                if (account == null)
                {
                    folders.Add(new FolderAccess(folder, false, $"the service's account '{service.Account}' does not exist"));
                    continue;
                }

                try
                {
                    folders.Add(_backend.CheckFolderAccess(account, folder));
                }
                catch (VmQuiesceException failure)
                {
                    folderFailed(failure);
                }
            }

            return new ServiceLogonInfo(service, account == null ? LogonRight.Missing : LogonRightOf(account), account == null ? (bool?)null : _backend.IsAdministrator(account), folders);
        }

        public ServiceLogonTestResult Test(ServiceLogonRequest request, IOperationHost host)
        {
            ServiceEntry service = _backend.FindService(request.ServiceName);
            if (request.Group != null)
            {
                _backend.ResolveGroup(request.Group);
            }

            WarnIfPasswordUnused(request, host);
            var checks = new List<ServiceLogonCheck>();
            LogonAccount? wanted = TryResolve(request.UserName);
            LogonAccount? current = TryResolve(service.Account);
            if (wanted == null)
            {
                checks.Add(new ServiceLogonCheck("Account", false, $"the user '{request.UserName}' does not exist"));
                return Finish(service, request, checks, host);
            }

            checks.Add(current != null && current.SameAs(wanted)
                ? new ServiceLogonCheck("Account", true, $"{service.Name} logs on as {service.Account}")
                : new ServiceLogonCheck("Account", false, $"{service.Name} logs on as {service.Account}, not {wanted.Name}"));
            if (request.Group != null)
            {
                bool sameGroup = string.Equals(service.Group, request.Group, StringComparison.Ordinal);
                checks.Add(new ServiceLogonCheck("Group", sameGroup, sameGroup ? $"{service.Name} runs with group {request.Group}" : $"{service.Name} runs with group {service.Group ?? "(the user's primary group)"}, not {request.Group}"));
            }

            if (NeedsPassword(wanted))
            {
                checks.Add(PasswordCheck(service, wanted, request.Password));
            }

            LogonRight right = LogonRightOf(wanted);
            checks.Add(new ServiceLogonCheck("LogonRight", right == LogonRight.Granted || right == LogonRight.NotApplicable, DescribeRight(wanted, right)));
            bool admin = _backend.IsAdministrator(wanted);
            checks.Add(new ServiceLogonCheck("Administrator", admin, admin ? $"{wanted.Name} is an administrator" : $"{wanted.Name} is not an administrator"));
            foreach (string folder in request.VmFolders)
            {
                try
                {
                    FolderAccess access = _backend.CheckFolderAccess(wanted, folder);
                    checks.Add(new ServiceLogonCheck("Folder", access.CanModify, $"{access.Path}: {access.Detail}"));
                }
                catch (VmQuiesceException failure)
                {
                    checks.Add(new ServiceLogonCheck("Folder", false, failure.Message));
                }
            }

            return Finish(service, request, checks, host);
        }

        public ServiceLogonChange Set(ServiceLogonRequest request, IOperationHost host, CancellationToken cancel)
        {
            // 1. Read-only validation: nothing changes until every input is known to be good.
            ServiceEntry service = _backend.FindService(request.ServiceName);
            LogonAccount account = _backend.ResolveAccount(request.UserName);
            if (request.Group != null)
            {
                _backend.ResolveGroup(request.Group);
            }

            WarnIfPasswordUnused(request, host);
            SecureString password = request.Password ?? new SecureString();
            if (NeedsPassword(account) && !_backend.VerifyPassword(account, password))
            {
                throw new VmQuiesceException("PasswordIncorrect", FailureKind.SecurityError,
                    $"The password for '{account.Name}' is not correct: nothing was changed.", account.Name)
                {
                    Remedy = "Pass the account's current password in -Credential.",
                };
            }

            LogonRight right = LogonRightOf(account);
            if (right == LogonRight.Denied)
            {
                throw new VmQuiesceException("LogonRightDenied", FailureKind.PermissionDenied,
                    $"'{account.Name}' holds the 'Deny log on as a service' right (SeDenyServiceLogonRight), which wins over any grant: nothing was changed.", account.Name)
                {
                    Remedy = "Remove the account (or its group) from 'Deny log on as a service' in the local or domain security policy, or use another account.",
                };
            }

            if (!_backend.IsAdministrator(account))
            {
                throw new VmQuiesceException("AccountNotAdministrator", FailureKind.PermissionDenied,
                    $"'{account.Name}' is not an administrator, and the VSS writer needs administrative rights over every VM: nothing was changed.", account.Name)
                {
                    Remedy = "Windows: add the account to the local Administrators group. Linux: use root or a member of the sudo or wheel group.",
                };
            }

            var foldersToGrant = new List<FolderAccess>();
            foreach (string folder in request.VmFolders)
            {
                FolderAccess access = _backend.CheckFolderAccess(account, folder);
                if (access.CanModify)
                {
                    continue;
                }

                if (!request.GrantFolderAccess)
                {
                    throw new VmQuiesceException("FolderAccessDenied", FailureKind.PermissionDenied,
                        $"'{account.Name}' cannot modify the VM folder '{access.Path}' ({access.Detail}): nothing was changed.", folder)
                    {
                        Remedy = "Add -GrantFolderAccess to give the account modify access, or fix the folder's permissions.",
                    };
                }

                foldersToGrant.Add(access);
            }

            LogonAccount? current = TryResolve(service.Account);
            bool alreadySet = current != null && current.SameAs(account)
                && (request.Group == null || string.Equals(service.Group, request.Group, StringComparison.Ordinal))
                && (!NeedsPassword(account) || _verifiers.Compare(service.Name, account, password) == VerifierMatch.Matches);
            if (!alreadySet)
            {
                _backend.CheckCanSetServiceAccount(service);
            }

            // 2. Changes, each behind ShouldProcess. When a later step fails or the command is stopped, what this run changed
            // is undone: the account is put back and the folder entries it added are removed (each exactly, so one the account
            // held before stays). The logon right stays: it is said so.
            var done = new SetChanges(service, account, service.State == ServiceRunState.Running);
            try
            {
                MakeChanges(request, service, account, password, right, foldersToGrant, alreadySet, done, host, cancel);
            }
            catch (VmQuiesceException failure) when (done.CanBeUndone)
            {
                bool restartFailed = done.Restarting && done.Previous != null;
                string what = restartFailed ? $"{service.Name} did not restart under the new account ({failure.Message})." : failure.Message;
                throw new VmQuiesceException(failure.ErrorId, restartFailed ? FailureKind.InvalidOperation : failure.Kind, $"{what} {RollBack(done)}", failure.Target, failure)
                {
                    Remedy = failure.Remedy,
                };
            }
            catch (OperationCanceledException) when (done.CanBeUndone)
            {
                // Stopped mid-change (mid-restart, the service may be down under an account it never ran as): undone like a
                // failure, and said before the stop goes on; the cmdlet shows the warning even while the pipeline stops.
                string stopped = done.Restarting && done.Previous != null ? $"{service.Name} was not restarted under the new account" : $"{service.Name} was not set up to log on as {account.Name}";
                host.WriteWarning($"{stopped}: the command was stopped. {RollBack(done)}");
                throw;
            }

            if (done.Previous != null && NeedsPassword(account))
            {
                _verifiers.Save(service.Name, account, password);
            }

            return new ServiceLogonChange(service.Name, service.Account, done.Previous != null ? account.Name : service.Account, done.Actions, done.Restarted);
        }

        private void MakeChanges(ServiceLogonRequest request, ServiceEntry service, LogonAccount account, SecureString password, LogonRight right,
            IReadOnlyList<FolderAccess> foldersToGrant, bool alreadySet, SetChanges done, IOperationHost host, CancellationToken cancel)
        {
            if (right == LogonRight.Missing && host.ShouldProcess(account.Name, "Grant the 'Log on as a service' right"))
            {
                _backend.GrantLogonRight(account);
                string granted = $"Granted 'Log on as a service' to {account.Name}";
                done.Actions.Add(granted);
                done.Kept.Add(granted);
            }

            foreach (FolderAccess folder in foldersToGrant)
            {
                if (host.ShouldProcess(folder.Path, $"Give {account.Name} modify access"))
                {
                    done.FolderGrants.Add(_backend.GrantFolderAccess(account, folder.Path));
                    done.Actions.Add($"Gave {account.Name} modify access to {folder.Path}");
                }
            }

            if (alreadySet)
            {
                host.WriteVerbose($"{service.Name} already logs on as {account.Name}.");
            }
            else if (host.ShouldProcess(service.Name, $"Set the logon account to {account.Name}"))
            {
                done.Previous = _backend.SetServiceAccount(service, account, NeedsPassword(account) ? password : null, request.Group);
                done.Actions.Add($"Set the logon account of {service.Name} to {account.Name} (was {done.Previous.Account})");
            }

            if (request.Restart || (done.Previous != null && done.WasRunning))
            {
                Restart(service, done, host, cancel);
            }
            else if (done.Previous != null)
            {
                string? why = _backend.WhyRestartIsUnavailable(service);
                if (why != null)
                {
                    host.WriteWarning($"The new account applies when {service.Name} next starts: {why}.");
                }
                else
                {
                    host.WriteVerbose($"{service.Name} is not running; the new account applies when it next starts.");
                }
            }
        }

        private void Restart(ServiceEntry service, SetChanges done, IOperationHost host, CancellationToken cancel)
        {
            string? why = _backend.WhyRestartIsUnavailable(service);
            if (why != null)
            {
                host.WriteWarning($"{service.Name} was not restarted: {why}. The new account applies when it next starts.");
                return;
            }

            if (!host.ShouldProcess(service.Name, "Restart the service"))
            {
                return;
            }

            done.Restarting = true;
            _backend.RestartService(service, cancel);
            done.Restarting = false;
            done.Restarted = true;
            done.Actions.Add($"Restarted {service.Name}");
        }

        /// <summary>
        /// Undoes what <paramref name="done"/> holds, each step whatever became of the one before: puts the previous account
        /// back (starting the service again if it ran), removes the folder entries this run added. Says what happened, what
        /// could not be undone and why, and what was kept.
        /// </summary>
        private string RollBack(SetChanges done)
        {
            var said = new List<string>();
            if (done.Previous != null)
            {
                said.Add(PutPreviousAccountBack(done.Service, done.Account, done.Previous, done.WasRunning));
            }

            var kept = new List<string>(done.Kept);
            var removed = new List<string>();
            foreach (FolderGrant grant in done.FolderGrants)
            {
                if (!grant.CanBeUndone)
                {
                    kept.Add($"Gave {grant.Account} modify access to {grant.Path}");
                    continue;
                }

                try
                {
                    _backend.RevokeFolderAccess(grant);
                    removed.Add(grant.Path);
                }
                catch (VmQuiesceException failure)
                {
                    said.Add($"The modify access given to {grant.Account} on {grant.Path} could not be removed: {failure.Message}");
                }
            }

            if (removed.Count > 0)
            {
                said.Add($"The modify access given to {done.Account.Name} was removed again from {string.Join(", ", removed)}.");
            }

            if (kept.Count > 0)
            {
                said.Add($"Kept: {string.Join("; ", kept)}.");
            }

            return string.Join(" ", said);
        }

        /// <summary>Restores the previous account and, if the service ran before, starts it under it; says what happened.</summary>
        private string PutPreviousAccountBack(ServiceEntry service, LogonAccount account, PreviousLogon previous, bool wasRunning)
        {
            try
            {
                _backend.RestoreServiceAccount(service, previous);
            }
            catch (VmQuiesceException failure)
            {
                return $"The previous account '{previous.Account}' could not be put back ({failure.Message}): {service.Name} is still set to log on as {account.Name}.";
            }

            string outcome = "it was not running before, so it was left stopped";
            if (wasRunning)
            {
                try
                {
                    // Not cancellable: the rollback is the cleanup of a stopped or failed command, and the wait is bounded.
                    _backend.RestartService(service, CancellationToken.None);
                    outcome = "the service runs again under it";
                }
                catch (VmQuiesceException again)
                {
                    outcome = "the service did not start under it either: " + again.Message;
                }
            }

            string passwordNote = _backend.UsesPassword
                ? " The previous account's password is not known to VmQuiesce: if it was a user account, set it again."
                : string.Empty;
            return $"The previous account '{previous.Account}' was put back and {outcome}.{passwordNote}";
        }

        private ServiceLogonTestResult Finish(ServiceEntry service, ServiceLogonRequest request, List<ServiceLogonCheck> checks, IOperationHost host)
        {
            foreach (ServiceLogonCheck check in checks)
            {
                host.WriteVerbose(check.ToString());
            }

            return new ServiceLogonTestResult(service.Name, request.UserName, checks);
        }

        private ServiceLogonCheck PasswordCheck(ServiceEntry service, LogonAccount account, SecureString? password)
        {
            if (SecretText.IsEmpty(password))
            {
                return new ServiceLogonCheck("Password", false, "no password was given to compare with the one last applied");
            }

            return _verifiers.Compare(service.Name, account, password!) switch
            {
                VerifierMatch.Matches => new ServiceLogonCheck("Password", true, "the password is the one last applied by Set-VssWriterServiceLogon"),
                VerifierMatch.Differs => new ServiceLogonCheck("Password", false, "the password differs from the one last applied (it was rotated)"),
                _ => new ServiceLogonCheck("Password", false, $"no password verifier in '{_verifiers.Folder}' (or it cannot be seen without elevation): the password was not applied by Set-VssWriterServiceLogon"),
            };
        }

        private bool NeedsPassword(LogonAccount account) => _backend.UsesPassword && !account.IsBuiltInServiceAccount;

        private void WarnIfPasswordUnused(ServiceLogonRequest request, IOperationHost host)
        {
            if (!_backend.UsesPassword && !SecretText.IsEmpty(request.Password))
            {
                host.WriteWarning("The password in -Credential is ignored: systemd starts units as a user without any password.");
            }
        }

        private LogonRight LogonRightOf(LogonAccount account) => account.IsBuiltInServiceAccount ? LogonRight.Granted : _backend.GetLogonRight(account);

        private static string DescribeRight(LogonAccount account, LogonRight right) => right switch
        {
            LogonRight.Granted => $"{account.Name} may log on as a service",
            LogonRight.Missing => $"{account.Name} lacks 'Log on as a service'",
            LogonRight.Denied => $"{account.Name} is denied 'Log on as a service'",
            _ => "the platform has no 'log on as a service' right",
        };

        private LogonAccount? TryResolve(string name)
        {
            try
            {
                return _backend.ResolveAccount(name);
            }
            catch (VmQuiesceException failure) when (failure.ErrorId == "AccountNotFound")
            {
                return null;
            }
        }
    }

    /// <summary>What one Set has changed so far: what a rollback undoes, and what it reports.</summary>
    internal sealed class SetChanges
    {
        public SetChanges(ServiceEntry service, LogonAccount account, bool wasRunning)
        {
            Service = service;
            Account = account;
            WasRunning = wasRunning;
        }

        public ServiceEntry Service { get; }

        public LogonAccount Account { get; }

        public bool WasRunning { get; }

        /// <summary>Each change made, in order.</summary>
        public List<string> Actions { get; } = new List<string>();

        /// <summary>Changes a rollback leaves in place (the logon right).</summary>
        public List<string> Kept { get; } = new List<string>();

        /// <summary>The folder entries added, as the backend recorded them.</summary>
        public List<FolderGrant> FolderGrants { get; } = new List<FolderGrant>();

        /// <summary>The account to put back; null until the account was changed.</summary>
        public PreviousLogon? Previous { get; set; }

        /// <summary>True while the service restarts under the new account.</summary>
        public bool Restarting { get; set; }

        public bool Restarted { get; set; }

        /// <summary>Whether a failure now leaves anything to undo.</summary>
        public bool CanBeUndone => Previous != null || FolderGrants.Any(grant => grant.CanBeUndone);
    }
}
