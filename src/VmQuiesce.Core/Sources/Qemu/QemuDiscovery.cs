using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A running QEMU process whose command line names a QMP unix socket.</summary>
    public sealed class QemuProcess
    {
        public QemuProcess(int processId, string name, string qmpSocket, string? agentSocket, Guid? uuid = null)
        {
            ProcessId = processId;
            Name = name;
            QmpSocket = qmpSocket;
            AgentSocket = agentSocket;
            Uuid = uuid;
        }

        /// <summary>The VM's -uuid (what query-uuid answers); null when QEMU was given none (it then reports all zeroes).</summary>
        public Guid? Uuid { get; }

        public int ProcessId { get; }

        public string Name { get; }

        public string QmpSocket { get; }

        public string? AgentSocket { get; }
    }

    /// <summary>Finds QEMU VMs running on this host (Linux: /proc/*/cmdline).</summary>
    public static class QemuDiscovery
    {
        public const string AgentPortName = "org.qemu.guest_agent.0";

        /// <summary>QEMU processes of this host with a QMP unix socket on their command line that pass the trust checks. Linux only.</summary>
        public static IReadOnlyList<QemuProcess> FindRunning() => FindRunning(QemuProcessTrust.FromEnvironment(), null);

        /// <summary>
        /// QEMU processes of this host with a QMP unix socket on their command line, kept only when
        /// <paramref name="trust"/> believes them and their sockets are their own (owned by their user or root);
        /// every process that looked like QEMU but was refused is added to <paramref name="refused"/> with why. Linux only.
        /// <paramref name="cancel"/> stops the look between processes (a stuck process can hold a read of its /proc files).
        /// </summary>
        public static IReadOnlyList<QemuProcess> FindRunning(QemuProcessTrust trust, ICollection<string>? refused, CancellationToken cancel = default)
        {
            if (!HostPlatform.IsLinux)
            {
                throw new VmQuiesceException("DiscoveryNotSupported", FailureKind.NotSupported,
                    $"Finding running QEMU VMs reads /proc and works on Linux only; this host runs {HostPlatform.Name}. Give the VM's QMP socket instead.", HostPlatform.Name);
            }

            var found = new List<QemuProcess>();
            foreach (int pid in Repository.ProcessIdentity.ProcessIds())
            {
                cancel.ThrowIfCancellationRequested();
                string folder = "/proc/" + pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (!(ReadCommandLine(folder) is string[] arguments))
                {
                    continue; // The process ended meanwhile, or is not ours to read.
                }

                // Candidates by either name; the checks below decide by what the kernel runs.
                string? exe = UnixFiles.ReadLink(Path.Combine(folder, "exe"));
                if (arguments.Length == 0 || !(QemuProcessTrust.LooksLikeQemu(Path.GetFileName(arguments[0])) || (exe != null && QemuProcessTrust.LooksLikeQemu(Path.GetFileName(exe)))))
                {
                    continue;
                }

                if (!(ParseCommandLine(pid, arguments, UnixFiles.ReadLink(Path.Combine(folder, "cwd"))) is QemuProcess process))
                {
                    continue;
                }

                string? why = trust.WhyUntrusted(pid, out QemuPeer? peer)
                    ?? QemuProcessTrust.WhySocketUntrusted(process.QmpSocket, peer!)
                    ?? (process.AgentSocket == null ? null : QemuProcessTrust.WhySocketUntrusted(process.AgentSocket, peer!));
                if (why != null)
                {
                    refused?.Add($"Process {pid} ({GuestText.Quote(arguments[0])}, VM {GuestText.Quote(process.Name)}) was not taken for a QEMU VM: {why}.");
                    continue;
                }

                found.Add(process);
            }

            return found.OrderBy(p => p.Name, StringComparer.OrdinalIgnoreCase).ThenBy(p => p.ProcessId).ToList();
        }

        /// <summary>
        /// What the command line of process <paramref name="peer"/> (a QEMU that passed the trust checks) says about
        /// its VM: name, sockets and UUID. The agent socket is kept only when that QEMU owns it; null when the command
        /// line names no QMP unix socket (a tcp monitor) or cannot be read. Linux only.
        /// </summary>
        internal static QemuProcess? FromTrustedProcess(QemuPeer peer)
        {
            string folder = "/proc/" + peer.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!(ReadCommandLine(folder) is string[] arguments))
            {
                return null;
            }

            QemuProcess? process = ParseCommandLine(peer.ProcessId, arguments, UnixFiles.ReadLink(Path.Combine(folder, "cwd")));
            if (process?.AgentSocket != null && QemuProcessTrust.WhySocketUntrusted(process.AgentSocket, peer) != null)
            {
                return new QemuProcess(process.ProcessId, process.Name, process.QmpSocket, null, process.Uuid);
            }

            return process;
        }

        /// <summary>
        /// The name of a VM whose QEMU has no -name: the libvirt domain its monitor lives under
        /// (.../domain-&lt;id&gt;-&lt;name&gt;/monitor.sock), else the monitor socket's file name without extension.
        /// Discovery and Get-BackupVm -QmpSocket both name a VM this way, so one VM keeps one name.
        /// </summary>
        public static string NameFromSocket(string qmpSocket)
        {
            string path = qmpSocket.StartsWith("unix:", StringComparison.Ordinal) ? qmpSocket.Substring(5) : qmpSocket;
            string folder = Path.GetFileName(Path.GetDirectoryName(path) ?? string.Empty);
            System.Text.RegularExpressions.Match libvirt = System.Text.RegularExpressions.Regex.Match(folder, "^domain-[0-9]+-(.+)$");
            if (libvirt.Success)
            {
                return libvirt.Groups[1].Value;
            }

            string name = Path.GetFileNameWithoutExtension(path);
            return name.Length > 0 ? name : path;
        }

        /// <summary>A UUID QEMU reported or was given, or null for none (QEMU answers all zeroes when it was given none).</summary>
        public static Guid? ParseUuid(string? text) =>
            Guid.TryParse(text, out Guid uuid) && uuid != Guid.Empty ? uuid : (Guid?)null;

        /// <summary>
        /// Reads the VM's name, QMP socket and guest-agent socket from a QEMU command line (-name, -qmp,
        /// -mon + -chardev, -device virtserialport name=org.qemu.guest_agent.0); null without a QMP unix socket.
        /// </summary>
        public static QemuProcess? ParseCommandLine(int processId, IReadOnlyList<string> arguments, string? workingDirectory)
        {
            string? name = null;
            string? uuid = null;
            string? qmp = null;
            var socketChardevs = new Dictionary<string, string>(StringComparer.Ordinal);
            var monitorChardevs = new List<string>();
            string? agentChardev = null;
            for (int i = 1; i + 1 < arguments.Count; i++)
            {
                string option = arguments[i].StartsWith("--", StringComparison.Ordinal) ? arguments[i].Substring(1) : arguments[i];
                string value = arguments[i + 1];
                Dictionary<string, string> properties = Properties(value, out string first);
                switch (option)
                {
                    case "-name":
                        name = properties.TryGetValue("guest", out string? guest) ? guest : first;
                        break;
                    case "-uuid":
                        uuid = value;
                        break;
                    case "-qmp":
                    case "-qmp-pretty":
                        if (first.StartsWith("unix:", StringComparison.Ordinal))
                        {
                            qmp ??= first.Substring(5);
                        }

                        break;
                    case "-mon":
                        if (properties.TryGetValue("mode", out string? mode) && mode == "control" && properties.TryGetValue("chardev", out string? monitor))
                        {
                            monitorChardevs.Add(monitor);
                        }

                        break;
                    case "-chardev":
                        if (first == "socket" && properties.TryGetValue("id", out string? id) && properties.TryGetValue("path", out string? path))
                        {
                            socketChardevs[id] = path;
                        }

                        break;
                    case "-device":
                        if (first == "virtserialport" && properties.TryGetValue("name", out string? port) && port == AgentPortName && properties.TryGetValue("chardev", out string? chardev))
                        {
                            agentChardev = chardev;
                        }

                        break;
                }
            }

            qmp ??= monitorChardevs.Select(id => socketChardevs.TryGetValue(id, out string? path) ? path : null).FirstOrDefault(path => path != null);
            if (qmp == null)
            {
                return null;
            }

            string? agent = agentChardev != null && socketChardevs.TryGetValue(agentChardev, out string? agentPath) ? agentPath : null;
            qmp = Absolute(qmp, workingDirectory);
            return new QemuProcess(processId, string.IsNullOrEmpty(name) ? NameFromSocket(qmp) : name!, qmp, agent == null ? null : Absolute(agent, workingDirectory), ParseUuid(uuid));
        }

        /// <summary>A process's arguments from /proc/&lt;pid&gt;/cmdline; null when it ended or is not ours to read.</summary>
        private static string[]? ReadCommandLine(string processFolder)
        {
            try
            {
                return File.ReadAllText(Path.Combine(processFolder, "cmdline")).Split(new[] { '\0' }, StringSplitOptions.RemoveEmptyEntries);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }

        private static string Absolute(string path, string? workingDirectory) =>
            Path.IsPathRooted(path) || workingDirectory == null ? path : Path.Combine(workingDirectory, path);

        /// <summary>QEMU's "a,b=c,d=e" option syntax (",," is a literal comma); the first bare word comes back in <paramref name="first"/>.</summary>
        private static Dictionary<string, string> Properties(string value, out string first)
        {
            var parts = new List<string>();
            var current = new StringBuilder();
            for (int i = 0; i < value.Length; i++)
            {
                if (value[i] == ',' && i + 1 < value.Length && value[i + 1] == ',')
                {
                    current.Append(',');
                    i++;
                }
                else if (value[i] == ',')
                {
                    parts.Add(current.ToString());
                    current.Clear();
                }
                else
                {
                    current.Append(value[i]);
                }
            }

            parts.Add(current.ToString());
            first = parts[0];
            var properties = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string part in parts)
            {
                int equals = part.IndexOf('=');
                if (equals > 0)
                {
                    properties[part.Substring(0, equals)] = part.Substring(equals + 1);
                }
            }

            return properties;
        }
    }
}
