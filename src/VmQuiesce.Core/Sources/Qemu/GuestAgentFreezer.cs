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
        private readonly IReadOnlyList<GuestFileSystem> _fileSystems;
        private readonly TimeSpan _callTimeout;

        /// <param name="fileSystems">guest-get-fsinfo taken before the freeze, to name what was frozen.</param>
        public GuestAgentFreezer(GuestAgentClient agent, IReadOnlyList<GuestFileSystem> fileSystems, TimeSpan callTimeout)
        {
            _agent = agent;
            _fileSystems = fileSystems;
            _callTimeout = callTimeout;
        }

        public string Target => $"the guest agent at '{_agent.Address}'";

        public string ManualThawCommand => QemuRepairCommands.Thaw(_agent.Address) + "   (under libvirt: virsh domfsthaw <domain>)";

        public IReadOnlyList<string> Freeze(Action beforeSend, CancellationToken cancel)
        {
            int count = _agent.Freeze(_callTimeout, cancel, beforeSend);
            if (count == 0)
            {
                return Array.Empty<string>();
            }

            // The agent freezes every mounted file system that supports it; fsinfo names them.
            List<string> names = _fileSystems.Select(fs => fs.MountPoint.Length > 0 ? fs.MountPoint : fs.Name).Distinct().ToList();
            return names.Count > 0 ? names : new[] { $"{count} file system(s)" };
        }

        public void Thaw() => _agent.Thaw(_callTimeout);
    }
}
