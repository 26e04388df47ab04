using System;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A VM's monitor and guest agent connections started before the backup needs them (<see cref="QemuVm.StartAhead"/>),
    /// while the repository opens. The monitor is connected, its process checked (<see cref="QemuSource.ConnectVerifiedQmp"/>)
    /// and asked what every open asks first (queries only: nothing changes). The agent is connected at once: qemu-ga looks
    /// at a channel nobody has open only every 100 ms, so the sooner the connection exists, the sooner it answers. Only
    /// once the monitor's verified QEMU is seen to serve the agent's channel too is anything sent on it, and then only the
    /// sync (<see cref="ConnectAndSync"/>). The source's open takes both and checks again; disposing closes what no open took.
    /// </summary>
    internal sealed class QemuAhead : IDisposable
    {
        private readonly object _gate = new object();
        private readonly CancellationTokenSource _closing = new CancellationTokenSource();
        private Task<QmpClient>? _monitor;
        private Task<GuestAgentClient>? _agent;

        private QemuAhead(QemuSourceOptions options)
        {
            Options = options;
            Task<QmpClient> monitor = OwnThread.Start(() => ConnectAndAsk(options));
            _monitor = monitor;
            string? agentSocket = options.AgentSocket;
            CancellationToken closing = _closing.Token;
            _agent = agentSocket == null ? null : OwnThread.Start(() => ConnectAndSync(agentSocket, options, monitor, closing));
        }

        /// <summary>What it connects to, and how.</summary>
        public QemuSourceOptions Options { get; }

        public static QemuAhead Start(QemuSourceOptions options) => new QemuAhead(options);

        /// <summary>The monitor's connection (its failure, if it failed), once; null after that, and after <see cref="Dispose"/>.</summary>
        public Task<QmpClient>? TakeMonitor() => Take(ref _monitor);

        /// <summary>The agent's connection, as <see cref="TakeMonitor"/>; null without an agent socket.</summary>
        public Task<GuestAgentClient>? TakeAgent() => Take(ref _agent);

        /// <summary>Closes the agent's connection if no open took it (a dead run's repair needs the channel), without waiting for its sync.</summary>
        public void CloseAgent()
        {
            Task<GuestAgentClient>? agent = TakeAgent();
            if (agent != null)
            {
                _closing.Cancel();
                Close(agent);
            }
        }

        // _closing is not disposed: an open that took the agent may still be waiting for its sync (it has no timer to free).
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

        /// <summary>
        /// The agent's connection, synchronised once the monitor's verified QEMU is seen to serve it too: the sync's answer
        /// comes when qemu-ga next looks at its channel, and the freeze waits for it. When the monitor failed, was not
        /// verified, or another process serves the channel, it is only connected (the open says why); a sync that fails fails it.
        /// </summary>
        private static GuestAgentClient ConnectAndSync(string agentSocket, QemuSourceOptions options, Task<QmpClient> monitor, CancellationToken closing)
        {
            GuestAgentClient agent = GuestAgentClient.Connect(agentSocket, options.AgentTimeout);
            try
            {
                OwnThread.WaitEnded(monitor);
                if (monitor.Status == TaskStatus.RanToCompletion && monitor.Result.VerifiedPeer is QemuPeer qemu && agent.FindPeerProcess() == qemu.ProcessId)
                {
                    agent.Sync(options.AgentTimeout, closing);
                }

                return agent;
            }
            catch (OperationCanceledException) when (closing.IsCancellationRequested)
            {
                // Closed before the open took it: nobody waits for the sync.
                return agent;
            }
            catch
            {
                agent.Dispose();
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
