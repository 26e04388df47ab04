using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Net;
using VmQuiesce.Core;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources.PlainImage;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Sources.WindowsVss;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Gets VM targets for backup: a QEMU VM named by its QMP socket, or the QEMU VMs running on this
    /// (Linux) host, found from their command lines; a VMware VM named by its .vmx, or the VMware VMs
    /// that vmrun lists as running; the Hyper-V VMs of this (Windows) host, from Hyper-V's WMI classes.
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "BackupVm", DefaultParameterSetName = DiscoverSet)]
    [OutputType(typeof(BackupVm))]
    public sealed class GetBackupVmCommand : VmQuiesceCmdlet
    {
        public const string DiscoverSet = "Discover";
        public const string QmpSocketSet = "QmpSocket";
        public const string VmxPathSet = "VmxPath";
        public const string VmwareRunningSet = "VmwareRunning";
        public const string HyperVSet = "HyperV";
        public const string PathSet = "Path";

        private static readonly TimeSpan IdentityQueryTimeout = TimeSpan.FromSeconds(5);

        /// <summary>The VM's QMP monitor: a unix socket path, or tcp:host:port.</summary>
        [Parameter(Mandatory = true, ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Alias("QmpSocketPath")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public string QmpSocket { get; set; } = "";

        /// <summary>The host side of the guest agent's channel.</summary>
        [Parameter(ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Alias("AgentSocketPath")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public string? AgentSocket { get; set; }

        /// <summary>With -QmpSocket or -VmxPath: the name to give the VM (one). Otherwise: which running VMs to list (several, wildcards allowed).</summary>
        [Parameter(ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(ParameterSetName = PathSet)]
        [Parameter(ParameterSetName = DiscoverSet, Position = 0)]
        [Parameter(ParameterSetName = VmwareRunningSet, Position = 0)]
        [Parameter(ParameterSetName = HyperVSet, Position = 0)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public string[]? Name { get; set; }

        /// <summary>The one name -QmpSocket and -VmxPath give their VM, or null; several is an error.</summary>
        private string? GivenName
        {
            get
            {
                if (Name != null && Name.Length > 1)
                {
                    ThrowInvalidArgument("NameNotSingle", $"-Name gives the VM at -{ParameterSetName} its name: one name, not {Name.Length} ({string.Join(", ", Name)}).", Name);
                }

                return Name?.FirstOrDefault();
            }
        }

        /// <summary>The VMware VM's configuration file as this computer reads it (its folder is what the backup copies).</summary>
        [Parameter(Mandatory = true, ParameterSetName = VmxPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string VmxPath { get; set; } = "";

        /// <summary>The VMware product vmrun drives (-T ws|player|fusion|server).</summary>
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(Mandatory = true, ParameterSetName = VmwareRunningSet)]
        public VmwareHostType HostType { get; set; } = VmwareHostType.Workstation;

        /// <summary>The vmrun program; without it VmQuiesce looks in the registry, on PATH and in the usual locations.</summary>
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(ParameterSetName = VmwareRunningSet)]
        [ValidateNotNullOrEmpty]
        public string? VmrunPath { get; set; }

        /// <summary>VMware Server 2.0: the host (name, name:port or https://name:port/sdk).</summary>
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(ParameterSetName = VmwareRunningSet)]
        [ValidateNotNullOrEmpty]
        public string? VmrunHost { get; set; }

        /// <summary>VMware Server 2.0: the account vmrun signs in with.</summary>
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(ParameterSetName = VmwareRunningSet)]
        [Credential]
        public PSCredential? Credential { get; set; }

        /// <summary>VMware Server 2.0: how the server names the VM, e.g. '[standard] vm/vm.vmx'.</summary>
        [Parameter(ParameterSetName = VmxPathSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? DatastorePath { get; set; }

        /// <summary>VMware Server 2.0: backups of this VM may overwrite its one existing snapshot even when vmvsswriter.cfg does not allow it.</summary>
        [Parameter(ParameterSetName = VmxPathSet)]
        [Parameter(ParameterSetName = VmwareRunningSet)]
        public SwitchParameter Force { get; set; }

        /// <summary>Image files, or a folder of them (a stopped VM's disks): one VM of plain files, copied as they are.</summary>
        [Parameter(Mandatory = true, ParameterSetName = PathSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; } = Array.Empty<string>();

        /// <summary>With -Path: take files another process has open (a running VM's disks copy as they are, inconsistent).</summary>
        [Parameter(ParameterSetName = PathSet)]
        public SwitchParameter AllowInUse { get; set; }

        /// <summary>Lists the Hyper-V VMs of this host; they are backed up through the host's VSS and the Hyper-V writer.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HyperVSet)]
        public SwitchParameter HyperV { get; set; }

        private VmrunConnection? _vmrun;

        protected override void ProcessRecord()
        {
            switch (ParameterSetName)
            {
                case QmpSocketSet:
                    WriteQmpSocketVm();
                    break;
                case VmxPathSet:
                    WriteVmxPathVm();
                    break;
                case VmwareRunningSet:
                    WriteRunningVmwareVms();
                    break;
                case HyperVSet:
                    WriteHyperVVms();
                    break;
                case PathSet:
                    WritePlainImageVm();
                    break;
                default:
                    WriteDiscoveredVms();
                    break;
            }
        }

        /// <summary>vmrun is found and the host type, host and credential checked once, for every pipeline item.</summary>
        private VmrunConnection ConnectVmrun()
        {
            if (_vmrun == null)
            {
                NetworkCredential? credential = Credential == null ? null : new NetworkCredential(Credential.UserName, Credential.Password);
                _vmrun = VmwareTargets.Connect(VmrunPath == null ? null : ResolveFileSystemPath(VmrunPath, nameof(VmrunPath)), HostType, VmrunHost, credential);
                WriteVerbose($"vmrun: '{_vmrun.VmrunPath}' (-T {HostType}{(_vmrun.ServerUrl == null ? string.Empty : ", host " + _vmrun.ServerUrl)}).");
                if (credential != null)
                {
                    WriteWarning(VmrunConnection.PasswordOnCommandLineWarning);
                }
            }

            return _vmrun;
        }

        private void WriteVmxPathVm()
        {
            if (DatastorePath != null && HostType != VmwareHostType.Server)
            {
                ThrowInvalidArgument("DatastorePathNotSupported", $"-DatastorePath applies only to -HostType Server; {HostType} names VMs by their .vmx path.", DatastorePath);
            }

            VmrunConnection vmrun;
            try
            {
                vmrun = ConnectVmrun();
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            // A VM that cannot be read is this item's failure; the other pipeline items go on.
            try
            {
                WriteObject(VmwareTargets.CreateBackupVm(vmrun, ResolveItemFileSystemPath(VmxPath, nameof(VmxPath)), DatastorePath, GivenName, Force));
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }

        private void WriteRunningVmwareVms()
        {
            System.Collections.Generic.IReadOnlyList<BackupVm> running;
            try
            {
                running = VmwareTargets.FindRunning(ConnectVmrun(), CancelToken, WriteFailure, Force);
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            WriteMatching(running, "running VMware VM");
        }

        private void WriteHyperVVms()
        {
            IReadOnlyList<BackupVm> vms;
            try
            {
                if (InvokeCommand.GetCommand("Get-CimInstance", CommandTypes.Function | CommandTypes.Cmdlet) == null)
                {
                    throw HyperVNotAvailable("this PowerShell has no Get-CimInstance: Hyper-V runs on Windows only");
                }

                vms = HyperVTargets.FromWmi(
                    QueryHyperV(HyperVTargets.ComputerSystemClass, null),
                    QueryHyperV(HyperVTargets.SettingsClass, HyperVTargets.RealizedSettingsFilter),
                    QueryHyperV(HyperVTargets.StorageClass, HyperVTargets.VirtualDiskFilter),
                    File.Exists,
                    WriteFailure);
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            WriteMatching(vms, "Hyper-V VM");
        }

        /// <summary>
        /// Instances of a Hyper-V WMI class as property bags, read with Get-CimInstance, which both Windows
        /// PowerShell and PowerShell 7 have on Windows (and which a test can stand in for).
        /// </summary>
        private IReadOnlyList<IReadOnlyDictionary<string, object?>> QueryHyperV(string className, string? filter)
        {
            const string Query = "param($namespace, $class, $filter) $query = @{ Namespace = $namespace; ClassName = $class; ErrorAction = 'Stop' }; " +
                "if ($filter) { $query.Filter = $filter }; Get-CimInstance @query";
            try
            {
                return InvokeCommand.InvokeScript(Query, HyperVTargets.WmiNamespace, className, filter)
                    .Where(result => result != null)
                    .Select(result => (IReadOnlyDictionary<string, object?>)result.Properties.ToDictionary(
                        property => property.Name,
                        property => property.Value is PSObject wrapped ? wrapped.BaseObject : property.Value,
                        StringComparer.OrdinalIgnoreCase))
                    .ToList();
            }
            catch (RuntimeException e)
            {
                throw HyperVNotAvailable($"reading {className} failed: {e.Message}");
            }
        }

        private static VmQuiesceException HyperVNotAvailable(string why) =>
            new VmQuiesceException("HyperVNotAvailable", FailureKind.NotSupported,
                $"The Hyper-V VMs of this host cannot be listed from WMI namespace {HyperVTargets.WmiNamespace}: {why}.", HyperVTargets.WmiNamespace)
            {
                Remedy = "Run on a Windows host with the Hyper-V role, in an elevated PowerShell (Hyper-V's WMI classes need administrator rights).",
            };

        /// <summary>
        /// The VMs whose name matches any -Name, in the order found; each name without wildcards that matches
        /// none is an error of its own.
        /// </summary>
        private void WriteMatching(IReadOnlyList<BackupVm> vms, string what)
        {
            var patterns = (Name ?? new[] { "*" }).Select(name => (Name: name, Pattern: new WildcardPattern(name, WildcardOptions.IgnoreCase))).ToList();
            foreach (BackupVm vm in vms.Where(vm => patterns.Any(p => p.Pattern.IsMatch(vm.Name))))
            {
                if (vm is QemuVm qemu)
                {
                    WriteVerbose($"QEMU process {qemu.ProcessId}: VM '{qemu.Name}', QMP '{qemu.QmpSocket}', agent '{qemu.AgentSocket ?? "(none)"}'.");
                }

                WriteObject(vm);
            }

            const int named = 10;
            string found = vms.Count == 0 ? "none was found"
                : $"found {vms.Count}: {string.Join(", ", vms.Take(named).Select(vm => $"'{vm.Name}'"))}{(vms.Count > named ? $" and {vms.Count - named} more" : string.Empty)}";
            foreach (string missing in patterns.Where(p => !WildcardPattern.ContainsWildcardCharacters(p.Name) && !vms.Any(vm => p.Pattern.IsMatch(vm.Name))).Select(p => p.Name))
            {
                WriteFailure(new VmQuiesceException("VmNotFound", FailureKind.ObjectNotFound,
                    $"No {what} named '{missing}'; {found}.", missing));
            }
        }

        /// <summary>
        /// The files (a folder stands for the regular files in it) as one VM of plain images. A file another process
        /// has open would be copied while it changes: refused unless -AllowInUse.
        /// </summary>
        private void WritePlainImageVm()
        {
            var files = new List<string>();
            foreach (string given in Path)
            {
                string path;
                try
                {
                    path = ResolveItemFileSystemPath(given, nameof(Path));
                }
                catch (VmQuiesceException e)
                {
                    WriteFailure(e);
                    return;
                }

                if (Directory.Exists(path))
                {
                    files.AddRange(Directory.EnumerateFiles(path).Where(file => !Links.IsLink(file)).OrderBy(file => file, StringComparer.Ordinal));
                }
                else if (File.Exists(path))
                {
                    files.Add(path);
                }
                else
                {
                    WriteFailure(new VmQuiesceException("ImageNotFound", FailureKind.ObjectNotFound, $"-Path '{path}' is neither an image file nor a folder.", path));
                    return;
                }
            }

            if (files.Count == 0)
            {
                WriteFailure(new VmQuiesceException("ImageNotFound", FailureKind.ObjectNotFound, $"-Path '{string.Join("', '", Path)}' holds no file to back up.", Path));
                return;
            }

            foreach (string file in files.Where(_ => !AllowInUse))
            {
                if (HostFileUsageProbe.Instance.FindUser(file, CancelToken) is string user)
                {
                    WriteFailure(new VmQuiesceException("ImageInUse", FailureKind.ResourceBusy,
                        $"'{file}' is in use by {user}: copied while it changes, its backup would be inconsistent.", file)
                    {
                        Remedy = "Shut the VM down first, back it up through its hypervisor (-QmpSocket, -VmxPath), or give -AllowInUse to copy it as it is.",
                    });
                    return;
                }
            }

            string first = Path[0].TrimEnd('/', '\\');
            string name = GivenName ?? (Directory.Exists(ResolveFileSystemPath(first, nameof(Path)))
                ? System.IO.Path.GetFileName(ResolveFileSystemPath(first, nameof(Path)).TrimEnd('/', '\\'))
                : System.IO.Path.GetFileNameWithoutExtension(files[0]));
            WriteObject(new PlainImageVm(name, files.ToArray()));
        }

        private void WriteQmpSocketVm()
        {
            string qmp = ResolveSocket(QmpSocket, nameof(QmpSocket), "QmpSocketNotFound", "QMP socket");
            string? agent = AgentSocket == null ? null : ResolveSocket(AgentSocket, nameof(AgentSocket), "AgentSocketNotFound", "guest agent socket");
            if (qmp.Length == 0 || agent?.Length == 0)
            {
                return;
            }

            // QEMU itself says who the VM is and where its agent listens, so a VM named by its socket is the same VM
            // discovery finds (one name, one UUID) and reaches the same consistency.
            QemuIdentity identity;
            try
            {
                identity = QemuIdentity.Ask(qmp, IdentityQueryTimeout, CancelToken);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(new VmQuiesceException(e.ErrorId, e.Kind, e.Message, qmp, e) { Remedy = e.Remedy });
                return;
            }

            if (agent == null && identity.AgentSocket == null)
            {
                WriteWarning($"VM '{GivenName ?? identity.Name}': no guest agent socket: {identity.AgentNote}. Without -AgentSocket its backups reach only Crash consistency.");
            }
            else if (agent == null)
            {
                WriteVerbose($"VM '{GivenName ?? identity.Name}': the guest agent's socket '{identity.AgentSocket}' comes from the command line of QEMU process {identity.ProcessId}.");
            }

            WriteObject(new QemuVm(GivenName ?? identity.Name, qmp, agent ?? identity.AgentSocket, identity.ProcessId, identity.Uuid));
        }

        private void WriteDiscoveredVms()
        {
            System.Collections.Generic.IReadOnlyList<QemuProcess> running;
            try
            {
                var refused = new System.Collections.Generic.List<string>();
                running = QemuDiscovery.FindRunning(QemuProcessTrust.FromEnvironment(), refused);
                refused.ForEach(WriteWarning);
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            WriteMatching(running.Select(p => (BackupVm)new QemuVm(p.Name, p.QmpSocket, p.AgentSocket, p.ProcessId, p.Uuid)).ToList(), "running QEMU VM with a QMP unix socket");
        }

        /// <summary>A unix socket path made absolute and checked to exist; tcp addresses pass as they are. "" after a written error.</summary>
        private string ResolveSocket(string address, string parameterName, string errorId, string what)
        {
            if (address.StartsWith("tcp:", StringComparison.Ordinal))
            {
                return address;
            }

            string path;
            try
            {
                path = ResolveItemFileSystemPath(address.StartsWith("unix:", StringComparison.Ordinal) ? address.Substring(5) : address, parameterName);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return "";
            }

            if (!File.Exists(path))
            {
                WriteFailure(new VmQuiesceException(errorId, FailureKind.ObjectNotFound,
                    $"There is no {what} at '{path}': is the VM running, and is this the path from its command line?", path));
                return "";
            }

            // A regular file (a disk, a log) is never a monitor: refused here, not later by a backup that fails to connect.
            if (QemuIdentity.IsRegularFile(path))
            {
                WriteFailure(new VmQuiesceException("SocketPathNotASocket", FailureKind.InvalidArgument,
                    $"-{parameterName} '{path}' is a regular file, not a socket; expected the {what} from the VM's command line (-qmp unix:<path> or -chardev socket,path=<path>).", path));
                return "";
            }

            return path;
        }
    }
}
