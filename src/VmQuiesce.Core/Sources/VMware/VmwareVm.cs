using System;
using System.Collections.Generic;
using System.Linq;
using VmQuiesce.Core.Sources.WindowsVss;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// A VMware VM driven by vmrun (Workstation, Player, Fusion, VMware Server 2.0), named by its .vmx. On a Windows
    /// host the "VMware VSS Writer" can also quiesce it for a backup through the host's VSS.
    /// </summary>
    public sealed class VmwareVm : BackupVm, IHostVssTarget
    {
        /// <param name="vmxPath">The .vmx as this computer reads it: its folder holds the files the backup copies.</param>
        /// <param name="datastorePath">How vmrun names the VM when that differs (VMware Server's "[standard] vm/vm.vmx").</param>
        /// <param name="force">VMware Server: backups may overwrite the VM's one existing snapshot even when vmvsswriter.cfg does not allow it.</param>
        public VmwareVm(string name, string vmxPath, VmrunConnection connection, string? datastorePath = null, bool force = false)
            : base(name, System.IO.Path.GetFullPath(vmxPath))
        {
            Connection = connection;
            DatastorePath = datastorePath;
            Force = force;
        }

        private VmwareVm(VmwareVm vm, VssBackupType hostVss)
            : this(vm.Name, vm.VmxPath, vm.Connection, vm.DatastorePath, vm.Force)
        {
            HostVss = hostVss;
        }

        public override string Kind => VmwareSource.SourceKind;

        public string VmxPath => Location;

        public VmrunConnection Connection { get; }

        public string? DatastorePath { get; }

        public bool Force { get; }

        /// <summary>Set when the host's VSS backs the VM up (<see cref="WithHostVss"/>) instead of vmrun: the kind of VSS backup.</summary>
        public VssBackupType? HostVss { get; }

        /// <summary>
        /// The VM with the HostVss method: its folder (less logs and locks) read from shadow copies while the
        /// "VMware VSS Writer" quiesces it, as the classic VMware Server recipe did. Windows only.
        /// </summary>
        public BackupVm WithHostVss(VssBackupType backupType)
        {
            HostVssSource.RequireWindows("The HostVss backup method");
            return new VmwareVm(this, backupType);
        }

        protected override IBackupSource CreateSource(IOperationHost host)
        {
            if (HostVss is VssBackupType backupType)
            {
                IReadOnlyList<string> files = VmwareVmFolder.FrozenFiles(Name, VmxPath, Array.Empty<string>(), host).Select(file => file.Full).ToList();
                return new HostVssSource(Name, HostVssWriter.VMware, files, backupType, host);
            }

            return new VmwareSource(
                new VmwareSourceOptions(Name, VmxPath, new VmrunClient(Connection, host.WriteVerbose, host.WriteWarning))
                {
                    VmrunVmPath = DatastorePath,
                    Force = Force,
                },
                host);
        }

        protected override IReadOnlyDictionary<string, string> Describe()
        {
            var details = new Dictionary<string, string>
            {
                ["VmxPath"] = VmxPath,
                ["HostType"] = Connection.HostType.ToString(),
                ["Vmrun"] = Connection.VmrunPath,
            };
            if (DatastorePath != null)
            {
                details["DatastorePath"] = DatastorePath;
            }

            if (Connection.ServerUrl != null)
            {
                details["Host"] = Connection.ServerUrl;
                details["User"] = Connection.Credential!.UserName;
            }

            if (HostVss != null)
            {
                details["Method"] = HostVssSource.MethodName;
            }

            return details;
        }
    }
}
