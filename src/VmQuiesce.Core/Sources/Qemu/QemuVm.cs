using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A running QEMU/KVM VM, reached through its QMP monitor and, for quiescing, its guest agent.</summary>
    public sealed class QemuVm : BackupVm, IReadinessCheckable, ISnapshotListable
    {
        /// <param name="qmpSocket">The QMP monitor: a unix socket path, or tcp:host:port.</param>
        /// <param name="agentSocket">The host side of the guest agent's channel; null or empty: nothing can be frozen.</param>
        /// <param name="processId">The QEMU process, when discovery found it.</param>
        /// <param name="uuid">The VM's UUID, when QEMU has one (-uuid; query-uuid).</param>
        public QemuVm(string name, string qmpSocket, string? agentSocket, int? processId = null, System.Guid? uuid = null)
            : base(name, qmpSocket)
        {
            AgentSocket = string.IsNullOrEmpty(agentSocket) ? null : agentSocket;
            ProcessId = processId;
            Uuid = uuid;
        }

        public override string Kind => QemuSource.SourceKind;

        public string QmpSocket => Location;

        public string? AgentSocket { get; }

        public int? ProcessId { get; }

        /// <summary>The VM's own UUID, which its restore points record; null when QEMU was started without -uuid.</summary>
        public System.Guid? Uuid { get; }

        /// <summary>How the source reaches this VM.</summary>
        internal QemuSourceOptions Options => new QemuSourceOptions(Name, QmpSocket) { AgentSocket = AgentSocket };

        public IReadOnlyList<ReadinessCheck> CheckReadiness(CancellationToken cancel) => QemuReadiness.Check(Options, cancel);

        /// <summary>The internal snapshots of every disk, asked from the running QEMU (query-block).</summary>
        public IReadOnlyList<VmSnapshot> ListSnapshots(CancellationToken cancel)
        {
            QemuSourceOptions options = Options;
            using QmpClient qmp = QmpClient.Connect(options.QmpSocket, options.QmpTimeout, cancel);
            var snapshots = new List<VmSnapshot>();
            foreach (JsonObject device in qmp.ExecuteArray(QemuBlockOperations.DisksQuery, cancel).OfType<JsonObject>())
            {
                JsonObject? image = device.GetOptionalObject("inserted")?.GetOptionalObject("image");
                if (image == null)
                {
                    continue;
                }

                string disk = device.GetOptionalString("device") is string name && name.Length > 0 ? name : device.GetOptionalString("qdev") ?? image.GetString("filename");
                foreach (JsonObject snapshot in (image.GetOptionalArray("snapshots") ?? new JsonArray()).OfType<JsonObject>())
                {
                    snapshots.Add(VmSnapshot.FromQemuJson(Name, disk, snapshot));
                }
            }

            return snapshots;
        }

        /// <summary>The monitor's connection and the guest agent's (<see cref="QemuAhead"/>).</summary>
        public override IDisposable? StartAhead() => QemuAhead.Start(Options);

        protected override IBackupSource CreateSource(IOperationHost host) => new QemuSource(Options, host);

        protected override IBackupSource CreateSource(IOperationHost host, IDisposable ahead) => new QemuSource(Options, host) { Ahead = ahead as QemuAhead };

        protected override IReadOnlyDictionary<string, string> Describe()
        {
            var details = new Dictionary<string, string> { ["QmpSocket"] = QmpSocket };
            if (AgentSocket != null)
            {
                details["AgentSocket"] = AgentSocket;
            }

            if (Uuid != null)
            {
                details["Uuid"] = Uuid.Value.ToString();
            }

            if (ProcessId != null)
            {
                details["ProcessId"] = ProcessId.Value.ToString(CultureInfo.InvariantCulture);
            }

            return details;
        }
    }
}
