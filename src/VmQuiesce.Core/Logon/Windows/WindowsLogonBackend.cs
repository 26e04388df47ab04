using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Security;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>
    /// The one call that writes a service's logon (ChangeServiceConfigW's lpServiceStartName and lpPassword): a seam, so
    /// that what the backend asks the Service Control Manager to store is proven on any OS.
    /// </summary>
    internal interface IServiceLogonWriter
    {
        /// <param name="password">A native UTF-16 string (empty for the built-in accounts), or IntPtr.Zero to leave the stored password as it is.</param>
        void ChangeLogon(string serviceName, string account, IntPtr password);
    }

    /// <summary>What a folder grant undoes (<see cref="FolderGrant.UndoState"/>): the account's entry, on the folder it was added to.</summary>
    internal sealed class GrantedEntry
    {
        public GrantedEntry(string sid, string folderId)
        {
            Sid = sid;
            FolderId = folderId;
        }

        public string Sid { get; }

        /// <summary>The granted folder's <see cref="HeldFolder.FolderId"/>: a folder put in its place since is not it.</summary>
        public string FolderId { get; }
    }

    /// <summary>
    /// Windows: the Service Control Manager holds the logon account and password, LSA holds
    /// "Log on as a service", LogonUser checks the password, NetUserGetLocalGroups answers
    /// "administrator?", Authz computes another account's effective rights on a folder.
    /// </summary>
    [SupportedOSPlatform("windows")]
    public sealed class WindowsLogonBackend : IServiceLogonBackend
    {
        private const string ServiceLogonRight = "SeServiceLogonRight";
        private const string DenyServiceLogonRight = "SeDenyServiceLogonRight";
        private static readonly TimeSpan StateChangeTimeout = TimeSpan.FromSeconds(60);

        /// <summary>The service accounts that need no password and hold the logon right implicitly, by the names the SCM accepts.</summary>
        private static readonly Dictionary<string, (string Name, string Sid)> BuiltInAccounts = new Dictionary<string, (string, string)>(StringComparer.OrdinalIgnoreCase)
        {
            ["LocalSystem"] = ("LocalSystem", "S-1-5-18"),
            [@".\LocalSystem"] = ("LocalSystem", "S-1-5-18"),
            [@"NT AUTHORITY\SYSTEM"] = ("LocalSystem", "S-1-5-18"),
            [@"NT AUTHORITY\LocalService"] = (@"NT AUTHORITY\LocalService", "S-1-5-19"),
            [@"NT AUTHORITY\LOCAL SERVICE"] = (@"NT AUTHORITY\LocalService", "S-1-5-19"),
            [@"NT AUTHORITY\NetworkService"] = (@"NT AUTHORITY\NetworkService", "S-1-5-20"),
            [@"NT AUTHORITY\NETWORK SERVICE"] = (@"NT AUTHORITY\NetworkService", "S-1-5-20"),
        };

        private readonly IServiceLogonWriter _logonWriter;
        private readonly IFolderHandles _folderHandles;

        public WindowsLogonBackend()
            : this(new ScmLogonWriter(), new WindowsFolderHandles())
        {
        }

        /// <param name="logonWriter">Tests: records what the Service Control Manager would be asked to store.</param>
        /// <param name="folderHandles">Tests: folders, their reparse tags and DACLs held in memory.</param>
        internal WindowsLogonBackend(IServiceLogonWriter logonWriter, IFolderHandles folderHandles)
        {
            _logonWriter = logonWriter;
            _folderHandles = folderHandles;
        }

        public bool UsesPassword => true;

        public ServiceEntry FindService(string? name)
        {
            using SafeServiceHandle manager = OpenManager();
            using OpenedService service = OpenService(manager, name, Advapi32.ServiceQueryConfig | Advapi32.ServiceQueryStatus);
            (string displayName, string account, uint startType) = QueryConfig(service);
            if (!Advapi32.QueryServiceStatus(service.Handle, out Advapi32.ServiceStatus status))
            {
                throw Win32Failure("ServiceQueryFailed", $"Cannot read the state of the service '{service.Name}'", service.Name);
            }

            return new ServiceEntry(service.Name, displayName, account, StartModeName(startType), StateOf(status.CurrentState));
        }

        public LogonAccount ResolveAccount(string name)
        {
            if (BuiltInAccounts.TryGetValue(name.Trim(), out (string Name, string Sid) builtIn))
            {
                return new LogonAccount(builtIn.Name, builtIn.Sid) { IsBuiltInServiceAccount = true };
            }

            (byte[] Sid, int Use)? found = LookUp(name);
            if (found == null)
            {
                throw AccountNotFound(name);
            }

            (byte[] sid, int use) = found.Value;

            // Other spellings of the built-in service accounts ("SYSTEM", localized names) are well-known SIDs, not users.
            string sidText = WindowsSecurity.SidToString(sid);
            if (sidText is "S-1-5-18" or "S-1-5-19" or "S-1-5-20")
            {
                return ResolveAccount(sidText == "S-1-5-18" ? "LocalSystem" : sidText == "S-1-5-19" ? @"NT AUTHORITY\LocalService" : @"NT AUTHORITY\NetworkService");
            }

            const int SidTypeUser = 1;
            if (use != SidTypeUser)
            {
                throw new VmQuiesceException("AccountNotFound", FailureKind.InvalidArgument, $"'{name}' is not a user account (it is a group, alias or computer): a service logs on as a user.", name);
            }

            // The SID's own name, so a UPN (user@example.com) becomes the DOMAIN\sAMAccountName the SCM stores.
            (string user, string userDomain) = WindowsSecurity.AccountOf(sid);
            string canonical = string.Equals(userDomain, Environment.MachineName, StringComparison.OrdinalIgnoreCase)
                ? @".\" + user
                : userDomain + @"\" + user;
            return new LogonAccount(canonical, sidText);
        }

        public void ResolveGroup(string name) =>
            throw new VmQuiesceException("GroupNotSupported", FailureKind.InvalidArgument,
                "-Group applies to systemd units only: a Windows service runs with its account's own groups.", name);

        public bool VerifyPassword(LogonAccount account, SecureString password)
        {
            (string domain, string user) = Split(account.Name);
            IntPtr secret = Marshal.SecureStringToGlobalAllocUnicode(password);
            try
            {
                if (Advapi32.LogonUserW(user, domain, secret, Advapi32.Logon32LogonService, Advapi32.Logon32ProviderDefault, out IntPtr token))
                {
                    Kernel32.CloseHandle(token);
                    return true;
                }

                int error = Marshal.GetLastWin32Error();
                switch (error)
                {
                    case Win32Error.LogonFailure:
                        return false;
                    case Win32Error.LogonTypeNotGranted:
                        // Windows checks the password before the logon type: the password is right and
                        // the service logon right is missing (granted next) or denied (refused next).
                        return true;
                    default:
                        throw new VmQuiesceException("AccountCannotLogOn", FailureKind.SecurityError,
                            $"'{account.Name}' cannot log on: {Win32Error.Describe(error)}. Nothing was changed.", account.Name)
                        {
                            Remedy = "Enable or unlock the account, or renew its expired password, then try again.",
                        };
                }
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(secret);
            }
        }

        /// <summary>
        /// LsaEnumerateAccountRights lists only rights held by the SID itself, so the account's local
        /// groups, Everyone and Authenticated Users are asked too: a deny right held by any of them wins.
        /// </summary>
        public LogonRight GetLogonRight(LogonAccount account)
        {
            var holders = new List<byte[]>
            {
                WindowsSecurity.StringToSid(account.Identity),
                WindowsSecurity.StringToSid("S-1-1-0"),
                WindowsSecurity.StringToSid("S-1-5-11"),
            };
            foreach (string group in LocalGroupsOf(account))
            {
                if (LookUp(group) is (byte[] Sid, int Use) found)
                {
                    holders.Add(found.Sid);
                }
            }

            using LsaPolicy policy = LsaPolicy.Open(Advapi32.PolicyLookupNames);
            bool granted = false;
            foreach (byte[] holder in holders)
            {
                HashSet<string> rights = RightsOf(policy, holder, account.Name);
                if (rights.Contains(DenyServiceLogonRight))
                {
                    return LogonRight.Denied;
                }

                granted |= rights.Contains(ServiceLogonRight);
            }

            return granted ? LogonRight.Granted : LogonRight.Missing;
        }

        public void GrantLogonRight(LogonAccount account)
        {
            using LsaPolicy policy = LsaPolicy.Open(Advapi32.PolicyLookupNames | Advapi32.PolicyCreateAccount);
            IntPtr buffer = Marshal.StringToHGlobalUni(ServiceLogonRight);
            try
            {
                var right = new Advapi32.LsaUnicodeString
                {
                    Length = (ushort)(ServiceLogonRight.Length * 2),
                    MaximumLength = (ushort)((ServiceLogonRight.Length * 2) + 2),
                    Buffer = buffer,
                };
                uint status = Advapi32.LsaAddAccountRights(policy.Handle, WindowsSecurity.StringToSid(account.Identity), new[] { right }, 1);
                ThrowIfFailed(status, "LogonRightGrantFailed", $"Cannot grant 'Log on as a service' to '{account.Name}'", account.Name);
            }
            finally
            {
                Marshal.FreeHGlobal(buffer);
            }
        }

        public bool IsAdministrator(LogonAccount account)
        {
            if (account.Identity == "S-1-5-18")
            {
                return true;
            }

            if (account.IsBuiltInServiceAccount)
            {
                return false;
            }

            string administrators = WindowsSecurity.AccountOf(WindowsSecurity.StringToSid(WindowsSecurity.AdministratorsSid)).Name;
            return LocalGroupsOf(account).Contains(administrators, StringComparer.OrdinalIgnoreCase);
        }

        public FolderAccess CheckFolderAccess(LogonAccount account, string folder)
        {
            string path = VmFolders.FullPath(folder);
            try
            {
                // Held while Authz reads its permissions by path: no folder on the way can be swapped for a junction meanwhile.
                using HeldFolder held = HoldVmFolder(path, folder, 0);
                uint rights = WindowsSecurity.EffectiveRights(path, WindowsSecurity.StringToSid(account.Identity));
                bool canModify = (rights & WindowsDacl.ModifyRights) == WindowsDacl.ModifyRights;
                return new FolderAccess(path, canModify, canModify
                    ? $"{account.Name} holds Modify (effective rights 0x{rights:X8})"
                    : $"{account.Name}'s effective rights 0x{rights:X8} lack Modify (0x{WindowsDacl.ModifyRights:X8})");
            }
            catch (IOException e)
            {
                throw new VmQuiesceException("FolderAccessCheckFailed", FailureKind.ReadError, $"Cannot check access to the folder '{path}': {e.Message}", folder, e);
            }
        }

        /// <summary>
        /// Adds an explicit allow entry of Modify, inherited by files and folders, for the account's SID, as an entry of its
        /// own: one the account held before is neither merged nor changed, so the rollback can remove exactly this one, from
        /// this very folder (<see cref="GrantedEntry"/>). The DACL is read and written through the handle of the folder that
        /// was checked (<see cref="HeldFolder"/>).
        /// </summary>
        public FolderGrant GrantFolderAccess(LogonAccount account, string folder)
        {
            string path = VmFolders.FullPath(folder);
            try
            {
                using HeldFolder held = HoldVmFolder(path, folder, HeldFolder.DaclAccess);
                byte[]? granted = WindowsDacl.WithAllowEntry(held.Folder.ReadDacl(), WindowsDacl.SidFromString(account.Identity), WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders);
                if (granted == null)
                {
                    // The very entry is there already (a deny entry keeps it from counting): nothing is added, nothing to undo.
                    return new FolderGrant(path, account.Name, null);
                }

                string folderId = held.FolderId;
                held.Folder.WriteDacl(granted);
                return new FolderGrant(path, account.Name, new GrantedEntry(account.Identity, folderId));
            }
            catch (IOException e)
            {
                throw new VmQuiesceException("FolderAccessGrantFailed", FailureKind.WriteError, $"Cannot give {account.Name} Modify access to the folder '{path}': {e.Message}", folder, e);
            }
        }

        public void RevokeFolderAccess(FolderGrant grant)
        {
            if (!(grant.UndoState is GrantedEntry entry))
            {
                return;
            }

            string path = grant.Path;
            try
            {
                using HeldFolder held = HoldVmFolder(path, path, HeldFolder.DaclAccess);
                if (held.FolderId != entry.FolderId)
                {
                    // Moved away since, and another folder put in its place: the entry is still on the one granted, wherever it is now.
                    throw new IOException("it is not the folder the entry was added to (that one was moved or replaced since); nothing was removed from the folder now there");
                }

                byte[]? revoked = WindowsDacl.WithoutAllowEntry(held.Folder.ReadDacl(), WindowsDacl.SidFromString(entry.Sid), WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders);
                // Null: the entry is gone already (someone removed it by hand); nothing else is touched.
                if (revoked != null)
                {
                    held.Folder.WriteDacl(revoked);
                }
            }
            catch (IOException e)
            {
                throw new VmQuiesceException("FolderAccessRevokeFailed", FailureKind.WriteError, $"Cannot remove the Modify entry for {grant.Account} from the folder '{path}': {e.Message}", grant.Path, e)
                {
                    Remedy = $"Remove the entry by hand: icacls \"{path}\" shows it, with (OI)(CI)(M).",
                };
            }
        }

        /// <summary>Nothing to check: the Service Control Manager keeps the account, and no file is written.</summary>
        public void CheckCanSetServiceAccount(ServiceEntry service)
        {
        }

        public PreviousLogon SetServiceAccount(ServiceEntry service, LogonAccount account, SecureString? password, string? group)
        {
            IntPtr secret = NativePassword(account.IsBuiltInServiceAccount ? null : password);
            try
            {
                _logonWriter.ChangeLogon(service.Name, account.Name, secret);
                return new PreviousLogon(service.Account, null);
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(secret);
            }
        }

        /// <summary>
        /// A built-in account is put back with an empty password, which also clears the new account's password from the
        /// service's stored secret (a NULL lpPassword would keep it there). A user account's password is not known: the
        /// stored one is left for the user to set again.
        /// </summary>
        public void RestoreServiceAccount(ServiceEntry service, PreviousLogon previous)
        {
            if (!BuiltInAccounts.ContainsKey(previous.Account.Trim()))
            {
                _logonWriter.ChangeLogon(service.Name, previous.Account, IntPtr.Zero);
                return;
            }

            IntPtr empty = NativePassword(null);
            try
            {
                _logonWriter.ChangeLogon(service.Name, previous.Account, empty);
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(empty);
            }
        }

        /// <summary>The password as ChangeServiceConfigW takes it, in native memory (free it with ZeroFreeGlobalAllocUnicode); null: the empty password of the built-in accounts.</summary>
        private static IntPtr NativePassword(SecureString? password) =>
            password != null ? Marshal.SecureStringToGlobalAllocUnicode(password) : Marshal.StringToHGlobalUni(string.Empty);

        public string? WhyRestartIsUnavailable(ServiceEntry service) => null;

        public void RestartService(ServiceEntry service, CancellationToken cancel)
        {
            using SafeServiceHandle manager = OpenManager();
            using OpenedService handle = OpenService(manager, service.Name, Advapi32.ServiceStart | Advapi32.ServiceStop | Advapi32.ServiceQueryStatus);
            if (!Advapi32.ControlService(handle.Handle, Advapi32.ServiceControlStop, out _) && Marshal.GetLastWin32Error() != Win32Error.ServiceNotActive)
            {
                throw Win32Failure("ServiceRestartFailed", $"Cannot stop the service '{service.Name}'", service.Name);
            }

            WaitFor(handle, service.Name, ServiceRunState.Stopped, cancel);
            if (!Advapi32.StartServiceW(handle.Handle, 0, IntPtr.Zero))
            {
                throw Win32Failure("ServiceRestartFailed", $"The service '{service.Name}' did not start", service.Name);
            }

            WaitFor(handle, service.Name, ServiceRunState.Running, cancel);
        }

        private static void ChangeLogon(string serviceName, string account, IntPtr password)
        {
            using SafeServiceHandle manager = OpenManager();
            using OpenedService service = OpenService(manager, serviceName, Advapi32.ServiceChangeConfig | Advapi32.ServiceQueryConfig);
            if (!Advapi32.ChangeServiceConfigW(service.Handle, Advapi32.ServiceNoChange, Advapi32.ServiceNoChange, Advapi32.ServiceNoChange,
                null, null, IntPtr.Zero, null, account, password, null))
            {
                throw Win32Failure("ServiceConfigChangeFailed", $"Cannot set the logon account of '{serviceName}' to '{account}'", serviceName);
            }
        }

        /// <summary>Polls the real state until it is reached, the service gives up, or the deadline passes.</summary>
        private static void WaitFor(OpenedService service, string name, ServiceRunState wanted, CancellationToken cancel)
        {
            DateTime deadline = DateTime.UtcNow + StateChangeTimeout;
            while (true)
            {
                if (!Advapi32.QueryServiceStatus(service.Handle, out Advapi32.ServiceStatus status))
                {
                    throw Win32Failure("ServiceRestartFailed", $"Cannot read the state of '{name}'", name);
                }

                ServiceRunState state = StateOf(status.CurrentState);
                if (state == wanted)
                {
                    return;
                }

                if (wanted == ServiceRunState.Running && state == ServiceRunState.Stopped)
                {
                    throw new VmQuiesceException("ServiceRestartFailed", FailureKind.InvalidOperation,
                        $"The service '{name}' stopped while starting: {Win32Error.Describe((int)status.Win32ExitCode)}", name)
                    {
                        Remedy = "See the System event log (source Service Control Manager).",
                    };
                }

                if (DateTime.UtcNow > deadline)
                {
                    throw new VmQuiesceException("ServiceRestartFailed", FailureKind.OperationTimeout,
                        $"The service '{name}' did not reach {wanted} within {StateChangeTimeout.TotalSeconds} s (it is {state}).", name);
                }

                if (cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(250)))
                {
                    throw new OperationCanceledException(cancel);
                }
            }
        }

        private static SafeServiceHandle OpenManager()
        {
            SafeServiceHandle manager = Advapi32.OpenSCManagerW(null, null, Advapi32.ScManagerConnect);
            if (manager.IsInvalid)
            {
                VmQuiesceException failure = Win32Failure("ServiceManagerUnavailable", "Cannot connect to the Service Control Manager", null);
                manager.Dispose();
                throw failure;
            }

            return manager;
        }

        private static OpenedService OpenService(SafeServiceHandle manager, string? name, uint access)
        {
            string keyName = name ?? Advapi32.GetServiceKeyName(manager, ServiceLogonManager.DefaultDisplayName)
                ?? throw ServiceNotFound(ServiceLogonManager.DefaultDisplayName, "No service has the display name");
            SafeServiceHandle handle = Advapi32.OpenServiceW(manager, keyName, access);
            if (handle.IsInvalid && Marshal.GetLastWin32Error() == Win32Error.ServiceDoesNotExist && name != null)
            {
                // -ServiceName may also be a display name.
                handle.Dispose();
                keyName = Advapi32.GetServiceKeyName(manager, name) ?? throw ServiceNotFound(name, "No service has the name or display name");
                handle = Advapi32.OpenServiceW(manager, keyName, access);
            }

            if (handle.IsInvalid)
            {
                int error = Marshal.GetLastWin32Error();
                handle.Dispose();
                throw error == Win32Error.AccessDenied
                    ? new VmQuiesceException("ServiceAccessDenied", FailureKind.PermissionDenied, $"Access to the service '{keyName}' was denied.", keyName) { Remedy = "Run PowerShell as Administrator." }
                    : Win32Failure("ServiceOpenFailed", $"Cannot open the service '{keyName}'", keyName, error);
            }

            return new OpenedService(handle, keyName);
        }

        private static (string DisplayName, string Account, uint StartType) QueryConfig(OpenedService service)
        {
            Advapi32.QueryServiceConfigW(service.Handle, IntPtr.Zero, 0, out int needed);
            IntPtr buffer = Marshal.AllocHGlobal(Math.Max(needed, 1));
            try
            {
                if (!Advapi32.QueryServiceConfigW(service.Handle, buffer, needed, out _))
                {
                    throw Win32Failure("ServiceQueryFailed", $"Cannot read the configuration of the service '{service.Name}'", service.Name);
                }

                var config = Marshal.PtrToStructure<Advapi32.QueryServiceConfig>(buffer);
                return (Marshal.PtrToStringUni(config.DisplayName) ?? service.Name, Marshal.PtrToStringUni(config.ServiceStartName) ?? "LocalSystem", config.StartType);
            }
            finally
            {
                Marshal.FreeHGlobal(buffer);
            }
        }

        /// <summary>The SID and SID_NAME_USE of an account name (.\\user, DOMAIN\\user, user@domain); null when no account has the name.</summary>
        private static (byte[] Sid, int Use)? LookUp(string name)
        {
            string lookup = name.StartsWith(@".\", StringComparison.Ordinal) ? Environment.MachineName + name.Substring(1) : name;
            int sidLength = 0;
            int domainLength = 0;
            Advapi32.LookupAccountNameW(null, lookup, null, ref sidLength, null, ref domainLength, out _);
            int error = Marshal.GetLastWin32Error();
            if (error == Win32Error.NoneMapped)
            {
                return null;
            }

            byte[] sid = new byte[sidLength];
            var domain = new StringBuilder(domainLength);
            if (!Advapi32.LookupAccountNameW(null, lookup, sid, ref sidLength, domain, ref domainLength, out int use))
            {
                error = Marshal.GetLastWin32Error();
                return error == Win32Error.NoneMapped ? ((byte[], int)?)null : throw Win32Failure("AccountLookupFailed", $"Cannot look up the account '{name}'", name, error);
            }

            return (sid, use);
        }

        /// <summary>The local groups the account belongs to, directly or through other groups (NetUserGetLocalGroups, LG_INCLUDE_INDIRECT).</summary>
        private static List<string> LocalGroupsOf(LogonAccount account)
        {
            (string domain, string user) = Split(account.Name);
            string name = domain == "." ? user : domain + @"\" + user;
            int result = Netapi32.NetUserGetLocalGroups(null, name, 0, Netapi32.LgIncludeIndirect, out IntPtr buffer, -1, out int read, out _);
            try
            {
                if (result == Netapi32.NerrUserNotFound)
                {
                    throw AccountNotFound(account.Name);
                }

                if (result != 0)
                {
                    throw Win32Failure("AdministratorCheckFailed", $"Cannot list the local groups of '{account.Name}'", account.Name, result);
                }

                var groups = new List<string>(read);
                for (int i = 0; i < read; i++)
                {
                    groups.Add(Marshal.PtrToStringUni(Marshal.ReadIntPtr(buffer, i * IntPtr.Size)) ?? string.Empty);
                }

                return groups;
            }
            finally
            {
                if (buffer != IntPtr.Zero)
                {
                    Netapi32.NetApiBufferFree(buffer);
                }
            }
        }

        private static HashSet<string> RightsOf(LsaPolicy policy, byte[] sid, string accountName)
        {
            var held = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            uint status = Advapi32.LsaEnumerateAccountRights(policy.Handle, sid, out IntPtr rights, out uint count);
            if (status == Advapi32.StatusObjectNameNotFound)
            {
                return held; // the SID holds no rights at all
            }

            ThrowIfFailed(status, "LogonRightQueryFailed", $"Cannot read the rights of '{accountName}'", accountName);
            try
            {
                int size = Marshal.SizeOf<Advapi32.LsaUnicodeString>();
                for (int i = 0; i < count; i++)
                {
                    var right = Marshal.PtrToStructure<Advapi32.LsaUnicodeString>(IntPtr.Add(rights, i * size));
                    held.Add(Marshal.PtrToStringUni(right.Buffer, right.Length / 2));
                }

                return held;
            }
            finally
            {
                Advapi32.LsaFreeMemory(rights);
            }
        }

        private static (string Domain, string User) Split(string account)
        {
            int slash = account.IndexOf('\\');
            return slash < 0 ? (".", account) : (account.Substring(0, slash), account.Substring(slash + 1));
        }

        private static string StartModeName(uint startType) => startType switch
        {
            0 => "Boot",
            1 => "System",
            2 => "Automatic",
            3 => "Manual",
            4 => "Disabled",
            _ => "Unknown",
        };

        private static ServiceRunState StateOf(uint state) => state switch
        {
            1 => ServiceRunState.Stopped,
            2 => ServiceRunState.Starting,
            3 => ServiceRunState.Stopping,
            4 => ServiceRunState.Running,
            5 => ServiceRunState.Starting,
            6 => ServiceRunState.Stopping,
            7 => ServiceRunState.Paused,
            _ => ServiceRunState.Unknown,
        };

        private static VmQuiesceException AccountNotFound(string name) =>
            new VmQuiesceException("AccountNotFound", FailureKind.ObjectNotFound, $"The account '{name}' does not exist (LookupAccountName found no match).", name)
            {
                Remedy = @"Use .\user for a local account or DOMAIN\user for a domain account.",
            };

        private static VmQuiesceException ServiceNotFound(string name, string what) =>
            new VmQuiesceException("ServiceNotFound", FailureKind.ObjectNotFound, $"{what} '{name}' on this machine.", name)
            {
                Remedy = "Check the name with Get-Service, or pass the service name with -ServiceName.",
            };

        /// <summary>
        /// <see cref="HeldFolder.Open"/> for a VM folder: its refusals are FolderNotFound and FolderIsLink, naming
        /// <paramref name="folder"/> as given.
        /// </summary>
        private HeldFolder HoldVmFolder(string path, string folder, uint folderAccess)
        {
            try
            {
                return HeldFolder.Open(_folderHandles, path, folderAccess);
            }
            catch (FolderTrustException e) when (e.ReparseTag is uint tag)
            {
                throw VmFolders.IsLink(folder, e.Folder, e.Folder == path, ReparsePoints.Describe(tag));
            }
            catch (FolderTrustException)
            {
                throw VmFolders.NotFound(folder);
            }
        }

        private static VmQuiesceException Win32Failure(string errorId, string what, object? target, int? error = null)
        {
            int code = error ?? Marshal.GetLastWin32Error();
            FailureKind kind = code == Win32Error.AccessDenied ? FailureKind.PermissionDenied : FailureKind.InvalidOperation;
            return new VmQuiesceException(errorId, kind, $"{what}: {Win32Error.Describe(code)}.", target)
            {
                Remedy = code == Win32Error.AccessDenied ? "Run PowerShell as Administrator." : null,
            };
        }

        private static void ThrowIfFailed(uint ntStatus, string errorId, string what, object target)
        {
            if (ntStatus != 0)
            {
                throw Win32Failure(errorId, what, target, (int)Advapi32.LsaNtStatusToWinError(ntStatus));
            }
        }

        /// <summary>The logon change as the Service Control Manager makes it (ChangeServiceConfigW).</summary>
        private sealed class ScmLogonWriter : IServiceLogonWriter
        {
            public void ChangeLogon(string serviceName, string account, IntPtr password) => WindowsLogonBackend.ChangeLogon(serviceName, account, password);
        }

        /// <summary>A service handle and the service's key name.</summary>
        private sealed class OpenedService : IDisposable
        {
            public OpenedService(SafeServiceHandle handle, string name)
            {
                Handle = handle;
                Name = name;
            }

            public SafeServiceHandle Handle { get; }

            public string Name { get; }

            public void Dispose() => Handle.Dispose();
        }

        private sealed class LsaPolicy : IDisposable
        {
            private LsaPolicy(IntPtr handle) => Handle = handle;

            public IntPtr Handle { get; }

            public static LsaPolicy Open(uint access)
            {
                var attributes = new Advapi32.LsaObjectAttributes { Length = Marshal.SizeOf<Advapi32.LsaObjectAttributes>() };
                uint status = Advapi32.LsaOpenPolicy(IntPtr.Zero, ref attributes, access, out IntPtr handle);
                ThrowIfFailed(status, "LocalSecurityPolicyUnavailable", "Cannot open the local security policy (LSA)", "LSA");
                return new LsaPolicy(handle);
            }

            public void Dispose() => Advapi32.LsaClose(Handle);
        }
    }
}
