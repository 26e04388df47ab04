using System;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// Who a VM is, asked from the QEMU that serves a monitor: its name (-name, else the libvirt domain or the
    /// socket's name, as discovery names it), its UUID (query-uuid), and its guest agent's socket, read from
    /// that QEMU's own command line (-chardev socket,id=X,path=P wired to -device virtserialport,chardev=X,
    /// name=org.qemu.guest_agent.0) once the process passed the trust checks.
    /// </summary>
    public sealed class QemuIdentity
    {
        private QemuIdentity(string name, Guid? uuid, string? agentSocket, int? processId, string? agentNote)
        {
            Name = name;
            Uuid = uuid;
            AgentSocket = agentSocket;
            ProcessId = processId;
            AgentNote = agentNote;
        }

        public string Name { get; }

        public Guid? Uuid { get; }

        /// <summary>The host side of the guest agent's channel on QEMU's command line, or null.</summary>
        public string? AgentSocket { get; }

        public int? ProcessId { get; }

        /// <summary>Why no agent socket was found (null when one was): for a warning.</summary>
        public string? AgentNote { get; }

        /// <summary>Whether a socket path given by a user is a regular file (a disk, a log), which is never a monitor or an agent. Linux only; false elsewhere.</summary>
        public static bool IsRegularFile(string path) =>
            Platform.HostPlatform.IsLinux && LinuxProcessInspector.Stat(path, followLinks: true) is { IsRegularFile: true };

        /// <summary>Connects to the monitor, checks who serves it and reads what QEMU says about the VM.</summary>
        public static QemuIdentity Ask(string qmpSocket, TimeSpan timeout, CancellationToken cancel) =>
            Ask(qmpSocket, QemuProcessTrust.FromEnvironment(), timeout, cancel);

        internal static QemuIdentity Ask(string qmpSocket, QemuProcessTrust trust, TimeSpan timeout, CancellationToken cancel)
        {
            using QmpClient qmp = QmpClient.Connect(qmpSocket, timeout, cancel);
            QemuPeer? peer = trust.Verify(qmp.FindPeerProcess(), qmpSocket, QmpClient.What);
            QemuProcess? process = peer == null ? null : QemuDiscovery.FromTrustedProcess(peer);
            string? configured = qmp.ExecuteObject("query-name", cancel: cancel).GetOptionalString("name");
            Guid? uuid = QemuDiscovery.ParseUuid(qmp.ExecuteObject("query-uuid", cancel: cancel).GetOptionalString("UUID"));
            string name = !string.IsNullOrEmpty(configured) ? GuestText.Escape(configured) : QemuDiscovery.NameFromSocket(qmpSocket);
            string? note = process?.AgentSocket != null ? null
                : peer == null ? $"which process serves '{qmpSocket}' cannot be told on {Platform.HostPlatform.Name}, so its command line cannot name the guest agent's socket"
                : process == null ? $"the command line of {peer} cannot be read"
                : $"the command line of {peer} has no guest agent channel that QEMU owns (-chardev socket,...,path=<path> wired to a virtserialport named {QemuDiscovery.AgentPortName})";
            return new QemuIdentity(name, uuid, process?.AgentSocket, peer?.ProcessId, note);
        }
    }
}
