using System;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A connection to a VM's guest agent started before the backup needs it (<see cref="QemuVm.StartAhead"/>): qemu-ga
    /// looks at a channel nobody has open only every 100 ms, so the sooner the connection exists, the sooner it answers.
    /// Nothing is sent on it until the source has verified that the monitor's QEMU serves it. The source's open takes it;
    /// disposing closes it when no open did.
    /// </summary>
    internal sealed class GuestAgentAhead : IDisposable
    {
        private readonly object _gate = new object();
        private Task<GuestAgentClient>? _connecting;

        private GuestAgentAhead(string socket, Task<GuestAgentClient> connecting)
        {
            Socket = socket;
            _connecting = connecting;
        }

        /// <summary>The agent socket it connects to.</summary>
        public string Socket { get; }

        public static GuestAgentAhead Start(string socket, TimeSpan callTimeout) =>
            new GuestAgentAhead(socket, OwnThread.Start(() => GuestAgentClient.Connect(socket, callTimeout)));

        /// <summary>The connection (its failure, if it failed), once; null after that, and after <see cref="Dispose"/>.</summary>
        public Task<GuestAgentClient>? Take()
        {
            lock (_gate)
            {
                Task<GuestAgentClient>? connecting = _connecting;
                _connecting = null;
                return connecting;
            }
        }

        public void Dispose()
        {
            Task<GuestAgentClient>? left = Take();
            if (left == null)
            {
                return;
            }

            OwnThread.WaitEnded(left);
            if (left.Status == TaskStatus.RanToCompletion)
            {
                left.Result.Dispose();
            }
        }
    }
}
