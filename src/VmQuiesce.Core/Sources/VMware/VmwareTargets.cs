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
        public static BackupVm CreateBackupVm(VmrunConnection connection, string vmxPath, string? vmrunVmPath = null, string? name = null,
            bool removeSnapshot = false, bool force = false)
        {
            string full = Path.GetFullPath(vmxPath);
            VmwareConfigDocument vmx = VmwareVmFolder.ReadVmx(full);
            string vmName = name ?? (vmx.GetValue("displayName") is string display && display.Trim().Length > 0 ? display.Trim() : Path.GetFileNameWithoutExtension(full));
            var details = new Dictionary<string, string>
            {
                ["VmxPath"] = full,
                ["HostType"] = connection.HostType.ToString(),
                ["Vmrun"] = connection.VmrunPath,
            };
            if (vmrunVmPath != null)
            {
                details["DatastorePath"] = vmrunVmPath;
            }

            if (connection.ServerUrl != null)
            {
                details["Host"] = connection.ServerUrl;
                details["User"] = connection.Credential!.UserName;
            }

            return new BackupVm(vmName, VmwareSource.SourceKind, full, details, host => new VmwareSource(
                new VmwareSourceOptions(vmName, full, new VmrunClient(connection, host.WriteVerbose, host.WriteWarning))
                {
                    VmrunVmPath = vmrunVmPath,
                    RemoveSnapshot = removeSnapshot,
                    Force = force,
                },
                host));
        }

        /// <summary>The running VMs (<c>vmrun list</c>) whose .vmx this computer can read, as targets; the others are reported.</summary>
        public static IReadOnlyList<BackupVm> FindRunning(VmrunConnection connection, CancellationToken cancel, Action<VmQuiesceException>? unreadable = null,
            bool removeSnapshot = false, bool force = false)
        {
            var targets = new List<BackupVm>();
            foreach (string path in new VmrunClient(connection).ListRunning(cancel))
            {
                try
                {
                    targets.Add(CreateBackupVm(connection, path, removeSnapshot: removeSnapshot, force: force));
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
