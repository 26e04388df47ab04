using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>What Get-BackupVm's VMware parameter set needs: a VMware VM target from a .vmx, or the running ones.</summary>
    public static class VmwareTargets
    {
        /// <summary>Finds vmrun (explicit path first) and checks the host type, host and credential together.</summary>
        public static VmrunConnection Connect(string? vmrunPath, VmwareHostType hostType, string? serverHost, NetworkCredential? credential, TimeSpan? commandTimeout = null)
        {
            string vmrun = VmrunLocator.ForThisHost().Locate(vmrunPath);
            return new VmrunConnection(vmrun, hostType, serverHost, credential) { CommandTimeout = commandTimeout ?? TimeSpan.FromMinutes(10) };
        }

        /// <summary>
        /// A VMware VM target. <paramref name="vmxPath"/> is the .vmx this computer reads (its folder is copied);
        /// <paramref name="vmrunVmPath"/> is how vmrun names it when that differs (VMware Server's "[standard] vm/vm.vmx").
        /// The name is the .vmx's displayName, else the file name.
        /// </summary>
        public static VmwareVm CreateBackupVm(VmrunConnection connection, string vmxPath, string? vmrunVmPath = null, string? name = null,
            bool force = false)
        {
            string full = Path.GetFullPath(vmxPath);
            VmwareConfigDocument vmx = VmwareVmFolder.ReadVmx(full);
            string vmName = name ?? (vmx.GetValue("displayName") is string display && display.Trim().Length > 0 ? display.Trim() : Path.GetFileNameWithoutExtension(full));
            return new VmwareVm(vmName, full, connection, vmrunVmPath, force);
        }

        /// <summary>The running VMs (<c>vmrun list</c>) whose .vmx this computer can read, as targets; the others are reported.</summary>
        public static IReadOnlyList<VmwareVm> FindRunning(VmrunConnection connection, CancellationToken cancel, Action<VmQuiesceException>? unreadable = null,
            bool force = false)
        {
            var targets = new List<VmwareVm>();
            foreach (string path in new VmrunClient(connection).ListRunning(cancel))
            {
                try
                {
                    targets.Add(CreateBackupVm(connection, path, force: force));
                }
                catch (VmQuiesceException e)
                {
                    unreadable?.Invoke(e);
                }
            }

            return targets.OrderBy(t => t.Name, StringComparer.OrdinalIgnoreCase).ToList();
        }
    }
}
