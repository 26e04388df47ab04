using System;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A VM's monitor and guest agent connections started before the backup needs them (<see cref="QemuVm.StartAhead"/>),
    /// while the repository opens. The monitor is connected, its process checked (<see cref="QemuSource.ConnectVerifiedQmp"/>)
    /// and asked what every open asks first (queries only: nothing changes); the agent is only connected: qemu-ga looks at
    /// a channel nobody has open only every 100 ms, so the sooner the connection exists, the sooner it answers, and nothing
    /// is sent on it until the source has checked that the monitor's QEMU serves it. The source's open takes both;
    /// disposing closes what no open took.
    /// </summary>
    internal sealed class QemuAhead : IDisposable
    {
        private readonly object _gate = new object();
        private Task<QmpClient>? _monitor;
        private Task<GuestAgentClient>? _agent;

        private QemuAhead(QemuSourceOptions options)
        {
            Options = options;
            _monitor = OwnThread.Start(() => ConnectAndAsk(options));
            string? agentSocket = options.AgentSocket;
            _agent = agentSocket == null ? null : OwnThread.Start(() => GuestAgentClient.Connect(agentSocket, options.AgentTimeout));
        }

        /// <summary>What it connects to, and how.</summary>
        public QemuSourceOptions Options { get; }

        public static QemuAhead Start(QemuSourceOptions options) => new QemuAhead(options);

        /// <summary>The monitor's connection (its failure, if it failed), once; null after that, and after <see cref="Dispose"/>.</summary>
        public Task<QmpClient>? TakeMonitor() => Take(ref _monitor);

        /// <summary>The agent's connection, as <see cref="TakeMonitor"/>; null without an agent socket.</summary>
        public Task<GuestAgentClient>? TakeAgent() => Take(ref _agent);

        /// <summary>Closes the agent's connection if no open took it (a dead run's repair needs the channel).</summary>
        public void CloseAgent() => Close(TakeAgent());

        public void Dispose()
        {
            Close(TakeMonitor());
            CloseAgent();
        }

        /// <summary>The verified monitor, asked what every open asks first (<see cref="QemuSource.OpenQueries"/>): QEMU answers while the repository opens.</summary>
        private static QmpClient ConnectAndAsk(QemuSourceOptions options)
        {
            QmpClient qmp = QemuSource.ConnectVerifiedQmp(options, CancellationToken.None);
            try
            {
                qmp.AskAhead(QemuSource.OpenQueries(tracking: false));
                return qmp;
            }
            catch
            {
                qmp.Dispose();
                throw;
            }
        }

        private static void Close<T>(Task<T>? connecting)
            where T : class, IDisposable
        {
            if (connecting == null)
            {
                return;
            }

            OwnThread.WaitEnded(connecting);
            if (connecting.Status == TaskStatus.RanToCompletion)
            {
                connecting.Result.Dispose();
            }
        }

        private Task<T>? Take<T>(ref Task<T>? connecting)
        {
            lock (_gate)
            {
                Task<T>? taken = connecting;
                connecting = null;
                return taken;
            }
        }
    }
}
