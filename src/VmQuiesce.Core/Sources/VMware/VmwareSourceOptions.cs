namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>A VMware VM as the source sees it, and how its backup behaves.</summary>
    public sealed class VmwareSourceOptions
    {
        public VmwareSourceOptions(string name, string vmxPath, VmrunClient vmrun)
        {
            if (string.IsNullOrWhiteSpace(vmxPath))
            {
                throw new VmQuiesceException("VmxPathInvalid", FailureKind.InvalidArgument, "The .vmx path is empty; expected the path of the VM's configuration file.", vmxPath);
            }

            Name = name;
            VmxPath = System.IO.Path.GetFullPath(vmxPath);
            Vmrun = vmrun;
        }

        public string Name { get; }

        /// <summary>The .vmx as this computer reads it: its folder holds the files the backup copies.</summary>
        public string VmxPath { get; }

        /// <summary>
        /// How vmrun names the VM: the .vmx path for local products; for VMware Server the datastore path
        /// (e.g. "[standard] vm/vm.vmx"). Null: <see cref="VmxPath"/>.
        /// </summary>
        public string? VmrunVmPath { get; init; }

        public VmrunClient Vmrun { get; }

        /// <summary>VMware Server: overwrite the VM's one existing snapshot even when vmvsswriter.cfg does not allow it.</summary>
        public bool Force { get; init; }

        /// <summary>vmvsswriter.cfg to consult for VMware Server; null: the VMware Server install folder's (Windows), if any.</summary>
        public string? WriterConfigPath { get; init; }

        internal string VmPathForVmrun => VmrunVmPath ?? VmxPath;
    }
}
