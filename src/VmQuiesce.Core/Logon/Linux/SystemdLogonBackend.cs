using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon.Linux
{
    /// <summary>
    /// systemd: the "service" is a unit; its account is User=/Group= set by a drop-in
    /// (&lt;unit&gt;.d/vmquiesce-logon.conf) that is written atomically. No password is used.
    /// "Administrator" means root or a member of the sudo or wheel group (who may become root).
    /// </summary>
    public sealed class SystemdLogonBackend : IServiceLogonBackend
    {
        public const string DropInFileName = "vmquiesce-logon.conf";
        public const string DefaultUnitDirectory = "/etc/systemd/system";

        /// <summary>Where systemd reads units, highest priority first (systemd.unit(5), system manager).</summary>
        public static readonly IReadOnlyList<string> SystemUnitDirectories = new[]
        {
            "/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
        };

        /// <summary>The largest unit or drop-in file read; real ones are a few kilobytes.</summary>
        private const long MaxUnitFileBytes = 1024 * 1024;

        /// <summary>Units and drop-ins are 0644 and their folders 0755 (less the umask), as systemd's own are.</summary>
        internal const int UnitFileMode = 0x1A4;
        private const int UnitFolderMode = 0x1ED;

        private static readonly Regex UnitName = new Regex(@"^[A-Za-z0-9:_.\\@-]+$", RegexOptions.CultureInvariant);
        private static readonly TimeSpan SystemctlTimeout = TimeSpan.FromMinutes(2);
        private readonly string? _customUnitDirectory;
        private readonly bool _systemdLoadsUnitDirectory;
        private readonly HostTools _tools;

        /// <param name="unitDirectory">Look up units and write drop-ins only here (tests use a temp root); null for systemd's own directories.</param>
        public SystemdLogonBackend(string? unitDirectory = null)
            : this(unitDirectory, Directory.Exists("/run/systemd/system"), systemdLoadsUnitDirectory: false, HostTools.ForThisHost)
        {
        }

        /// <param name="systemdRunning">Whether systemd manages this machine.</param>
        /// <param name="systemdLoadsUnitDirectory">Tests: treat a custom unit directory as one systemd reads.</param>
        /// <param name="tools">Where systemctl is found.</param>
        internal SystemdLogonBackend(string? unitDirectory, bool systemdRunning, bool systemdLoadsUnitDirectory, HostTools tools)
        {
            _tools = tools;
            if (unitDirectory != null && !Directory.Exists(unitDirectory))
            {
                throw new VmQuiesceException("UnitDirectoryNotFound", FailureKind.ObjectNotFound,
                    $"The unit directory '{unitDirectory}' does not exist. Pass an existing folder holding systemd unit files, or omit -UnitDirectory to use {DefaultUnitDirectory}.", unitDirectory);
            }

            _customUnitDirectory = unitDirectory == null ? null : Path.GetFullPath(unitDirectory).TrimEnd('/');
            SystemdRunning = systemdRunning;
            _systemdLoadsUnitDirectory = systemdLoadsUnitDirectory;
        }

        public bool UsesPassword => false;

        public bool SystemdRunning { get; }

        private IReadOnlyList<string> LookupDirectories => _customUnitDirectory != null ? new[] { _customUnitDirectory } : SystemUnitDirectories;

        private string DropInRoot => _customUnitDirectory ?? DefaultUnitDirectory;

        /// <summary>systemd reloads and restarts only units it can see: a custom directory must be one of its own.</summary>
        private bool SystemdSeesUnits => SystemdRunning && (_customUnitDirectory == null || _systemdLoadsUnitDirectory || SystemUnitDirectories.Contains(_customUnitDirectory));

        public ServiceEntry FindService(string? name)
        {
            string unit;
            string unitPath;
            if (name == null)
            {
                (unit, unitPath) = FindByDescription(ServiceLogonManager.DefaultDisplayName);
            }
            else
            {
                unit = name.EndsWith(".service", StringComparison.Ordinal) ? name : name + ".service";
                if (!UnitName.IsMatch(unit))
                {
                    throw new VmQuiesceException("ServiceNameInvalid", FailureKind.InvalidArgument,
                        $"'{name}' is not a systemd unit name: use letters, digits and : _ . \\ @ - only (for example vmware-vss.service).", name);
                }

                unitPath = LookupDirectories.Select(d => Path.Combine(d, unit)).FirstOrDefault(File.Exists)
                    ?? throw new VmQuiesceException("ServiceNotFound", FailureKind.ObjectNotFound,
                        $"No systemd unit '{unit}' was found in {string.Join(", ", LookupDirectories)}.", name)
                    {
                        Remedy = "Check the unit name with 'systemctl list-unit-files', or pass -UnitDirectory where the unit file lives.",
                    };
            }

            Dictionary<string, string> settings = EffectiveServiceSettings(unit, unitPath);
            settings.TryGetValue("User", out string? user);
            settings.TryGetValue("Group", out string? group);
            settings.TryGetValue("Description", out string? description);
            return new ServiceEntry(unit, description ?? unit, string.IsNullOrEmpty(user) ? "root" : user!, StartModeOf(unit), StateOf(unit))
            {
                Group = string.IsNullOrEmpty(group) ? null : group,
                ConfigurationPath = DropInPath(unit),
            };
        }

        public LogonAccount ResolveAccount(string name)
        {
            PosixUser user = FindUser(name);
            return new LogonAccount(user.Name, user.Uid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        public void ResolveGroup(string name)
        {
            if (PosixGroups.FindGid(name) == null)
            {
                throw new VmQuiesceException("GroupNotFound", FailureKind.ObjectNotFound,
                    $"The group '{name}' does not exist on this machine (getgrnam found no entry).", name)
                {
                    Remedy = $"Create it (groupadd {name}) or pass an existing group.",
                };
            }
        }

        public bool VerifyPassword(LogonAccount account, SecureString password) =>
            throw new NotSupportedException("systemd starts units without a password.");

        public LogonRight GetLogonRight(LogonAccount account) => LogonRight.NotApplicable;

        public void GrantLogonRight(LogonAccount account) =>
            throw new NotSupportedException("systemd has no 'log on as a service' right.");

        public bool IsAdministrator(LogonAccount account)
        {
            PosixUser user = FindUser(account.Name);
            if (user.Uid == 0)
            {
                return true;
            }

            return new[] { "sudo", "wheel" }.Select(PosixGroups.FindGid).Any(gid => gid.HasValue && user.InGroup(gid.Value));
        }

        public FolderAccess CheckFolderAccess(LogonAccount account, string folder)
        {
            string path = VmFolders.Existing(folder);
            PosixUser user = FindUser(account.Name);
            try
            {
                // Every parent must be searchable (x) for the folder to be reachable at all.
                for (string? parent = Path.GetDirectoryName(path); !string.IsNullOrEmpty(parent); parent = Path.GetDirectoryName(parent))
                {
                    string? parentDenied = PosixAccess.WhyDenied(user, parent!, PosixAccess.Execute);
                    if (parentDenied != null)
                    {
                        return new FolderAccess(path, false, $"{user.Name} cannot reach the folder: {parentDenied}");
                    }
                }

                string? denied = PosixAccess.WhyDenied(user, path, PosixAccess.Read | PosixAccess.Write | PosixAccess.Execute);
                return denied == null
                    ? new FolderAccess(path, true, $"{user.Name} can read, write and search the folder")
                    : new FolderAccess(path, false, denied);
            }
            catch (IOException e)
            {
                throw new VmQuiesceException("FolderAccessCheckFailed", FailureKind.ReadError, $"Cannot check access to the folder '{path}': {e.Message}", folder, e);
            }
        }

        /// <summary>The entries are widened on every file and folder of the tree: that cannot be taken back exactly, so the grant is kept on rollback, and said so.</summary>
        public FolderGrant GrantFolderAccess(LogonAccount account, string folder)
        {
            string path = VmFolders.Existing(folder);
            PosixUser user = FindUser(account.Name);
            try
            {
                PosixFolderGrant.Grant(path, user.Uid);
                return new FolderGrant(path, account.Name, null);
            }
            catch (Exception e) when (e is IOException || e is NotSupportedException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("FolderAccessGrantFailed", FailureKind.WriteError,
                    $"Cannot give {account.Name} read, write and search access to the folder '{path}': {e.Message}", folder, e);
            }
        }

        /// <summary>Nothing to do: a POSIX ACL grant cannot be undone (see <see cref="GrantFolderAccess"/>).</summary>
        public void RevokeFolderAccess(FolderGrant grant)
        {
        }

        /// <summary>Opens the drop-in folder as <see cref="SetServiceAccount"/> and its rollback do: one they would refuse is UnitFolderUnsafe now.</summary>
        public void CheckCanSetServiceAccount(ServiceEntry service) => OpenUnitFolder(DropInFolder(service.Name), create: false)?.Dispose();

        public PreviousLogon SetServiceAccount(ServiceEntry service, LogonAccount account, SecureString? password, string? group)
        {
            string path = DropInPath(service.Name);
            string? previous = File.Exists(path) ? ReadUnitFile(path) : null;
            var content = new StringBuilder()
                .Append("# Written by VmQuiesce (Set-VssWriterServiceLogon): the account this unit runs as.\n")
                .Append("[Service]\n")
                .Append("User=").Append(account.Name).Append('\n');
            if (group != null)
            {
                content.Append("Group=").Append(group).Append('\n');
            }

            WriteDropIn(path, content.ToString());
            return new PreviousLogon(service.Account, previous);
        }

        public void RestoreServiceAccount(ServiceEntry service, PreviousLogon previous)
        {
            string path = DropInPath(service.Name);
            if (previous.PlatformState is string text)
            {
                WriteDropIn(path, text);
            }
            else
            {
                try
                {
                    using TrustedFolder? folder = OpenUnitFolder(DropInFolder(service.Name), create: false);
                    folder?.Delete(DropInFileName);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    throw new VmQuiesceException("ServiceConfigChangeFailed", FailureKind.WriteError, $"Cannot remove the drop-in '{path}': {e.Message}", path, e);
                }

                ReloadIfSystemdSees();
            }
        }

        public string? WhyRestartIsUnavailable(ServiceEntry service)
        {
            if (!SystemdRunning)
            {
                return "systemd is not managing this machine (/run/systemd/system does not exist)";
            }

            return SystemdSeesUnits ? null : $"systemd does not load units from '{_customUnitDirectory}'";
        }

        public void RestartService(ServiceEntry service, CancellationToken cancel)
        {
            (int exit, string output) = Systemctl(cancel, "restart", service.Name);
            if (exit != 0)
            {
                throw new VmQuiesceException("ServiceRestartFailed", FailureKind.InvalidOperation,
                    $"'systemctl restart {service.Name}' failed (exit code {exit}): {output.Trim()}", service.Name)
                {
                    Remedy = $"See 'journalctl -u {service.Name}'.",
                };
            }
        }

        private static PosixUser FindUser(string name) =>
            PosixUser.Find(name) ?? throw new VmQuiesceException("AccountNotFound", FailureKind.ObjectNotFound,
                $"The user '{name}' does not exist on this machine (getpwnam found no entry).", name)
            {
                Remedy = $"Create it (useradd --system {name}) or pass an existing user in -Credential.",
            };

        private (string Unit, string Path) FindByDescription(string description)
        {
            foreach (string directory in LookupDirectories.Where(Directory.Exists))
            {
                foreach (string file in Directory.EnumerateFiles(directory, "*.service").Where(f => UnitName.IsMatch(Path.GetFileName(f))).OrderBy(f => f, StringComparer.Ordinal))
                {
                    Dictionary<string, string> unitSection;
                    try
                    {
                        unitSection = ReadServiceSettings(file, section: "Unit");
                    }
                    catch (UnexpectedFileException)
                    {
                        continue; // a FIFO or device under a unit's name is no unit to search
                    }

                    if (unitSection.TryGetValue("Description", out string? found) && found == description)
                    {
                        return (Path.GetFileName(file), file);
                    }
                }
            }

            throw new VmQuiesceException("ServiceNotFound", FailureKind.ObjectNotFound,
                $"No systemd unit with Description={description} was found in {string.Join(", ", LookupDirectories)}.", description)
            {
                Remedy = "Pass the unit name with -ServiceName.",
            };
        }

        /// <summary>The unit file's settings, then each drop-in in file-name order (a later one wins; an empty value resets).</summary>
        private Dictionary<string, string> EffectiveServiceSettings(string unit, string unitPath)
        {
            Dictionary<string, string> settings = ReadServiceSettings(unitPath, "Service");
            if (ReadServiceSettings(unitPath, "Unit").TryGetValue("Description", out string? description))
            {
                settings["Description"] = description;
            }

            var dropIns = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (string directory in LookupDirectories.Reverse())
            {
                string folder = Path.Combine(directory, unit + ".d");
                if (Directory.Exists(folder))
                {
                    foreach (string file in Directory.EnumerateFiles(folder, "*.conf"))
                    {
                        dropIns[Path.GetFileName(file)] = file; // the same name in a higher-priority directory replaces it
                    }
                }
            }

            foreach (string file in dropIns.Values)
            {
                foreach (KeyValuePair<string, string> setting in ReadServiceSettings(file, "Service"))
                {
                    settings[setting.Key] = setting.Value;
                }
            }

            return settings;
        }

        /// <summary>
        /// The text of a unit or drop-in file, links followed as systemd follows them; a masked unit (a link to /dev/null)
        /// is empty, as systemd takes it. Anything else that is no regular file is refused unread, naming it (an
        /// <see cref="UnexpectedFileException"/>): whoever can write a unit folder (-UnitDirectory) could put a FIFO there,
        /// whose open would wait for good, or a device, whose read would never end.
        /// </summary>
        internal static string ReadUnitFile(string path) =>
            HostPlatform.IsLinux && Libc.RealPath(path) == "/dev/null" ? string.Empty : RegularFile.ReadAllTextFollowingLinks(path, MaxUnitFileBytes);

        /// <summary>
        /// Opens a folder of units, or a unit's drop-in folder, for root to write, replace and delete in through its
        /// descriptor (<see cref="TrustedFolder.Open"/>: folders root's or this user's, links only theirs, missing ones made
        /// 0755 when <paramref name="create"/>). Refused as UnitFolderUnsafe, before anything changes, when another user
        /// could put a name of theirs in it or swap it, a folder above it or a link on the way (a sticky folder such as /tmp
        /// is fine above it): root's writes and deletes would land where they chose. Null when it is missing and not to be made.
        /// </summary>
        internal static TrustedFolder? OpenUnitFolder(string folder, bool create)
        {
            if (HostPlatform.IsLinux && UnixFiles.DescribeOthersCanAddTo(folder, trusted: null) is string why)
            {
                throw UnitFolderUnsafe(folder, $"The unit folder '{folder}' is not root's alone: {why}.", null);
            }

            try
            {
                return TrustedFolder.Open(folder, owner: null, create, UnitFolderMode);
            }
            catch (FolderTrustException e) when (e.Problem == FolderProblem.Missing && !create)
            {
                return null;
            }
            catch (FolderTrustException e) when (e.Problem == FolderProblem.Link || e.Problem == FolderProblem.ForeignOwner)
            {
                throw UnitFolderUnsafe(e.Folder, e.Message, e);
            }
        }

        private static VmQuiesceException UnitFolderUnsafe(string folder, string why, Exception? inner) =>
            new VmQuiesceException("UnitFolderUnsafe", FailureKind.SecurityError,
                $"{why} VmQuiesce writes, replaces and deletes units there as root: nothing was changed there.", folder, inner)
            {
                Remedy = "Keep units in folders that only root can change, reached through no link another user made, or pass another -UnitDirectory.",
            };

        private static Dictionary<string, string> ReadServiceSettings(string path, string section)
        {
            var settings = new Dictionary<string, string>(StringComparer.Ordinal);
            string? current = null;
            foreach (string raw in ReadUnitFile(path).Split('\n'))
            {
                string line = raw.Trim();
                if (line.Length == 0 || line[0] == '#' || line[0] == ';')
                {
                    continue;
                }

                if (line[0] == '[' && line.EndsWith("]", StringComparison.Ordinal))
                {
                    current = line.Substring(1, line.Length - 2);
                    continue;
                }

                int equals = line.IndexOf('=');
                if (current == section && equals > 0)
                {
                    settings[line.Substring(0, equals).Trim()] = line.Substring(equals + 1).Trim();
                }
            }

            return settings;
        }

        private string DropInFolder(string unit) => Path.Combine(DropInRoot, unit + ".d");

        private string DropInPath(string unit) => Path.Combine(DropInFolder(unit), DropInFileName);

        private void WriteDropIn(string path, string content)
        {
            try
            {
                using TrustedFolder folder = OpenUnitFolder(Path.GetDirectoryName(path)!, create: true)!;
                folder.ReplaceWithText(DropInFileName, content, UnitFileMode);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("ServiceConfigChangeFailed", FailureKind.WriteError, $"Cannot write the drop-in '{path}': {e.Message}", path, e)
                {
                    Remedy = "Run as root, or pass a writable -UnitDirectory.",
                };
            }

            ReloadIfSystemdSees();
        }

        private void ReloadIfSystemdSees()
        {
            if (!SystemdSeesUnits)
            {
                return;
            }

            (int exit, string output) = Systemctl(CancellationToken.None, "daemon-reload");
            if (exit != 0)
            {
                throw new VmQuiesceException("ServiceManagerReloadFailed", FailureKind.InvalidOperation,
                    $"'systemctl daemon-reload' failed (exit code {exit}): {output.Trim()}", "systemd");
            }
        }

        private string StartModeOf(string unit)
        {
            if (SystemdSeesUnits)
            {
                return Capitalize(Systemctl(CancellationToken.None, "is-enabled", unit).Output.Trim());
            }

            bool wanted = LookupDirectories.Where(Directory.Exists)
                .SelectMany(d => Directory.EnumerateDirectories(d, "*.wants").Concat(Directory.EnumerateDirectories(d, "*.requires")))
                .Any(d => File.Exists(Path.Combine(d, unit)) || Directory.Exists(Path.Combine(d, unit)));
            return wanted ? "Enabled" : "Disabled";
        }

        private ServiceRunState StateOf(string unit)
        {
            if (!SystemdSeesUnits)
            {
                return ServiceRunState.Unknown;
            }

            return Systemctl(CancellationToken.None, "is-active", unit).Output.Trim() switch
            {
                "active" => ServiceRunState.Running,
                "reloading" => ServiceRunState.Running,
                "activating" => ServiceRunState.Starting,
                "deactivating" => ServiceRunState.Stopping,
                "inactive" => ServiceRunState.Stopped,
                "failed" => ServiceRunState.Stopped,
                _ => ServiceRunState.Unknown,
            };
        }

        private static string Capitalize(string text) => text.Length == 0 ? "Unknown" : char.ToUpperInvariant(text[0]) + text.Substring(1);

        private (int Exit, string Output) Systemctl(CancellationToken cancel, params string[] arguments)
        {
            ToolResult result = ToolProcess.Run(new ToolCommand(_tools.Find("systemctl"), arguments)
            {
                Timeout = SystemctlTimeout,
                Target = "systemd",
                TimeoutId = "ServiceManagerTimeout",
            }, cancel);
            return (result.ExitCode, result.StandardOutput + result.StandardError);
        }
    }
}
