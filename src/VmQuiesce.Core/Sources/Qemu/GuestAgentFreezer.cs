using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Quiesce;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>Freezes a guest's file systems through qemu-ga (fsfreeze on Linux, VSS on Windows).</summary>
    public sealed class GuestAgentFreezer : IGuestFreezer
    {
        private readonly GuestAgentClient _agent;
        private readonly bool _canName;
        private readonly TimeSpan _callTimeout;

        /// <param name="canName">Whether the agent offers guest-get-fsinfo, which <see cref="NameFrozen"/> asks.</param>
        public GuestAgentFreezer(GuestAgentClient agent, bool canName, TimeSpan callTimeout)
        {
            _agent = agent;
            _canName = canName;
            _callTimeout = callTimeout;
        }

        public string Target => $"the guest agent at '{_agent.Address}'";

        public string ManualThawCommand => QemuRepairCommands.Thaw(_agent.Address) + "   (under libvirt: virsh domfsthaw <domain>)";

        /// <summary>What the agent froze, by count: <see cref="NameFrozen"/> names them once the guest runs again.</summary>
        public IReadOnlyList<string> Freeze(Action beforeSend, CancellationToken cancel)
        {
            int count = _agent.Freeze(_callTimeout, cancel, beforeSend);
            return count == 0 ? Array.Empty<string>() : new[] { $"{count} file system(s)" };
        }

        public void Thaw() => _agent.Thaw(_callTimeout);

        /// <summary>
        /// The mounted file systems (guest-get-fsinfo), which the freeze froze (the agent freezes every one that supports it),
        /// in place of <paramref name="frozen"/>'s count. Asked after the thaw, not before the freeze: the question costs
        /// the guest milliseconds the freeze would otherwise wait for, and the names are only for the record. The count
        /// stays when the agent cannot name them, its answer is unusable or <paramref name="cancel"/> ends the wait: the
        /// guest runs again, and the backup goes on to where it observes the cancel.
        /// </summary>
        public IReadOnlyList<string> NameFrozen(IReadOnlyList<string> frozen, CancellationToken cancel)
        {
            if (!_canName || frozen.Count == 0)
            {
                return frozen;
            }

            try
            {
                List<string> names = _agent.GetFileSystems(cancel).Select(fs => fs.MountPoint.Length > 0 ? fs.MountPoint : fs.Name).Distinct().ToList();
                return names.Count > 0 ? names : frozen;
            }
            catch (Exception e) when (e is VmQuiesceException || e is OperationCanceledException)
            {
                // A cancel ends the question, not the open: what the snapshot made is released by the view's owner.
                return frozen;
            }
        }
    }
}
