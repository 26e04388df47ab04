using System;
using System.IO;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Gets VM targets for backup: a QEMU VM named by its QMP socket, or the QEMU VMs running on this
    /// (Linux) host, found from their command lines.
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "BackupVm", DefaultParameterSetName = DiscoverSet)]
    [OutputType(typeof(BackupVm))]
    public sealed class GetBackupVmCommand : VmQuiesceCmdlet
    {
        public const string DiscoverSet = "Discover";
        public const string QmpSocketSet = "QmpSocket";

        private static readonly TimeSpan NameQueryTimeout = TimeSpan.FromSeconds(5);

        /// <summary>The VM's QMP monitor: a unix socket path, or tcp:host:port.</summary>
        [Parameter(Mandatory = true, ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Alias("QmpSocketPath")]
        [ValidateNotNullOrEmpty]
        public string QmpSocket { get; set; } = "";

        /// <summary>The host side of the guest agent's channel.</summary>
        [Parameter(ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Alias("AgentSocketPath")]
        [ValidateNotNullOrEmpty]
        public string? AgentSocket { get; set; }

        /// <summary>With -QmpSocket: the name to give the VM. Without: which running VMs to list (wildcards allowed).</summary>
        [Parameter(ParameterSetName = QmpSocketSet, ValueFromPipelineByPropertyName = true)]
        [Parameter(ParameterSetName = DiscoverSet, Position = 0)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(RunningVmNameCompleter))]
        public string? Name { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == QmpSocketSet)
            {
                WriteQmpSocketVm();
            }
            else
            {
                WriteDiscoveredVms();
            }
        }

        private void WriteQmpSocketVm()
        {
            string qmp = ResolveSocket(QmpSocket, "QmpSocketNotFound", "QMP socket");
            string? agent = AgentSocket == null ? null : ResolveSocket(AgentSocket, "AgentSocketNotFound", "guest agent socket");
            if (qmp.Length == 0 || agent?.Length == 0)
            {
                return;
            }

            string? name = Name;
            if (name == null)
            {
                try
                {
                    using QmpClient client = QmpClient.Connect(qmp, NameQueryTimeout, CancelToken);
                    name = (client.ExecuteObject("query-name", cancel: CancelToken).GetOptionalString("name") is string known && known.Length > 0)
                        ? known
                        : Path.GetFileNameWithoutExtension(qmp);
                }
                catch (VmQuiesceException e)
                {
                    WriteFailure(new VmQuiesceException(e.ErrorId, e.Kind, e.Message + " Give -Name to get the VM without asking QEMU for its name.", qmp, e) { Remedy = e.Remedy });
                    return;
                }
            }

            WriteObject(QemuDiscovery.CreateBackupVm(name, qmp, agent));
        }

        private void WriteDiscoveredVms()
        {
            System.Collections.Generic.IReadOnlyList<QemuProcess> running;
            try
            {
                running = QemuDiscovery.FindRunning();
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            WildcardPattern? pattern = Name == null ? null : new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            var matches = running.Where(p => pattern == null || pattern.IsMatch(p.Name)).ToList();
            foreach (QemuProcess process in matches)
            {
                WriteVerbose($"QEMU process {process.ProcessId}: VM '{process.Name}', QMP '{process.QmpSocket}', agent '{process.AgentSocket ?? "(none)"}'.");
                WriteObject(QemuDiscovery.CreateBackupVm(process.Name, process.QmpSocket, process.AgentSocket, process.ProcessId));
            }

            if (matches.Count == 0 && Name != null && !WildcardPattern.ContainsWildcardCharacters(Name))
            {
                WriteFailure(new VmQuiesceException("VmNotFound", FailureKind.ObjectNotFound,
                    $"No running QEMU VM named '{Name}' with a QMP unix socket was found on this host ({running.Count} found in all).", Name));
            }
        }

        /// <summary>A unix socket path made absolute and checked to exist; tcp addresses pass as they are. "" after a written error.</summary>
        private string ResolveSocket(string address, string errorId, string what)
        {
            if (address.StartsWith("tcp:", StringComparison.Ordinal))
            {
                return address;
            }

            string path = GetUnresolvedProviderPathFromPSPath(address.StartsWith("unix:", StringComparison.Ordinal) ? address.Substring(5) : address);
            if (!File.Exists(path))
            {
                WriteFailure(new VmQuiesceException(errorId, FailureKind.ObjectNotFound,
                    $"There is no {what} at '{path}': is the VM running, and is this the path from its command line?", path));
                return "";
            }

            return path;
        }
    }
}
