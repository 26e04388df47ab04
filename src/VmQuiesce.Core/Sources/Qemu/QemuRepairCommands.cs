using System.Text;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The VmQuiesce commands that remedies name: they need nothing but the module (no socat, no hand-typed
    /// QMP), and work after QEMU died where that matters (an overlay is then merged offline).
    /// </summary>
    internal static class QemuRepairCommands
    {
        /// <summary>Thaws the guest behind an agent socket, whoever froze it.</summary>
        public static string Thaw(string agentSocket) => $"Repair-BackupVm -AgentSocket {PowerShellText.SingleQuoted(agentSocket)} -Thaw";

        /// <summary>Repairs what interrupted backups left on a running VM (overlays, jobs, a guest VmQuiesce froze).</summary>
        public static string Repair(string qmpSocket, string? agentSocket, bool thaw = false)
        {
            var text = new StringBuilder("Repair-BackupVm -QmpSocket ").Append(PowerShellText.SingleQuoted(qmpSocket));
            if (agentSocket != null)
            {
                text.Append(" -AgentSocket ").Append(PowerShellText.SingleQuoted(agentSocket));
            }

            return (thaw ? text.Append(" -Thaw") : text).ToString();
        }

        /// <summary>Merges an overlay into its base while QEMU is not running (qemu-img commit).</summary>
        public static string CommitOffline(string overlayPath) => $"Repair-BackupVm -Overlay {PowerShellText.SingleQuoted(overlayPath)}";
    }
}
