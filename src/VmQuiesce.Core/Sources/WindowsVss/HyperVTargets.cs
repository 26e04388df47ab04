using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// Hyper-V VMs as backup targets, from Hyper-V's WMI classes (namespace root\virtualization\v2), which
    /// the caller reads through CIM and hands over as property bags. A Hyper-V VM is always backed up
    /// through the host's VSS: the "Microsoft Hyper-V VSS Writer" quiesces the guest (through the guest's
    /// own VSS when integration services run, else by saving the VM's state) and the VM's files are read
    /// from the shadow copies.
    /// </summary>
    public static class HyperVTargets
    {
        public const string SourceKind = "HyperV";
        public const string WmiNamespace = @"root\virtualization\v2";
        public const string ComputerSystemClass = "Msvm_ComputerSystem";
        public const string SettingsClass = "Msvm_VirtualSystemSettingData";
        public const string StorageClass = "Msvm_StorageAllocationSettingData";

        /// <summary>The WMI filter for each VM's current settings (not its checkpoints').</summary>
        public const string RealizedSettingsFilter = "VirtualSystemType = '" + RealizedType + "'";

        /// <summary>The WMI filter for virtual hard disks (ResourceType 31, "Logical Disk"), leaving out DVD images.</summary>
        public const string VirtualDiskFilter = "ResourceType = 31";

        private const string RealizedType = "Microsoft:Hyper-V:System:Realized";

        /// <summary>
        /// One target per VM (each Msvm_ComputerSystem whose Name is a GUID; the host's own entry is not),
        /// with its configuration file, runtime and guest state files beside it, and its virtual hard disks.
        /// A VM that cannot be backed up whole goes to <paramref name="failed"/> and the others are returned.
        /// </summary>
        /// <param name="fileExists">Whether a host file exists (the .vmrs and .vmgs beside the configuration are optional).</param>
        public static IReadOnlyList<HyperVVm> FromWmi(
            IEnumerable<IReadOnlyDictionary<string, object?>> systems,
            IEnumerable<IReadOnlyDictionary<string, object?>> settings,
            IEnumerable<IReadOnlyDictionary<string, object?>> storage,
            Func<string, bool> fileExists,
            Action<VmQuiesceException> failed)
        {
            List<IReadOnlyDictionary<string, object?>> settingsList = settings.ToList();
            List<IReadOnlyDictionary<string, object?>> storageList = storage.ToList();
            var vms = new List<HyperVVm>();
            foreach (IReadOnlyDictionary<string, object?> system in systems)
            {
                if (!Guid.TryParse(Text(system, "Name"), out Guid id))
                {
                    continue;
                }

                string name = Text(system, "ElementName") ?? id.ToString();
                try
                {
                    vms.Add(CreateBackupVm(id, name, State(system), settingsList, storageList, fileExists));
                }
                catch (VmQuiesceException failure)
                {
                    failed(failure);
                }
            }

            return vms;
        }

        private static HyperVVm CreateBackupVm(Guid id, string name, string state, IEnumerable<IReadOnlyDictionary<string, object?>> settings,
            IEnumerable<IReadOnlyDictionary<string, object?>> storage, Func<string, bool> fileExists)
        {
            IReadOnlyDictionary<string, object?>? realized = settings.FirstOrDefault(s =>
                Guid.TryParse(Text(s, "VirtualSystemIdentifier"), out Guid owner) && owner == id
                && string.Equals(Text(s, "VirtualSystemType"), RealizedType, StringComparison.OrdinalIgnoreCase));
            string? root = realized == null ? null : Text(realized, "ConfigurationDataRoot");
            string? file = realized == null ? null : Text(realized, "ConfigurationFile");
            if (root == null || file == null)
            {
                throw new VmQuiesceException("HyperVConfigurationNotFound", FailureKind.ObjectNotFound,
                    $"Hyper-V reports no configuration file for the VM '{name}' ({{{id}}}); its {SettingsClass} with ConfigurationDataRoot and ConfigurationFile was expected.", name);
            }

            string configuration = HostVssSource.IsFullWindowsPath(file) ? file : root.TrimEnd('\\') + "\\" + file.TrimStart('\\');
            int extension = configuration.LastIndexOf('.');
            string stem = extension > configuration.LastIndexOf('\\') ? configuration.Substring(0, extension) : configuration;
            var files = new List<string> { configuration };
            files.AddRange(new[] { stem + ".vmrs", stem + ".vmgs" }.Where(fileExists));

            // The VM's own disks: their settings' InstanceID is "Microsoft:<VM id>\..."; a checkpoint's carry the checkpoint's id.
            string prefix = "Microsoft:" + id.ToString() + "\\";
            List<string> disks = storage
                .Where(s => Text(s, "InstanceID")?.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) == true)
                .SelectMany(s => Texts(s, "HostResource"))
                .Where(path => path.Length > 0)
                .Distinct(StringComparer.OrdinalIgnoreCase)
                .ToList();
            string? differencing = disks.FirstOrDefault(IsCheckpointDisk);
            if (differencing != null)
            {
                throw new VmQuiesceException("HyperVCheckpointDisk", FailureKind.NotSupported,
                    $"The VM '{name}' runs on the checkpoint disk '{differencing}', a differencing disk whose parents VmQuiesce does not follow; a backup of it alone could not be restored.", name)
                {
                    Remedy = $"Merge the VM's checkpoints first (Get-VMSnapshot -VMName '{name}' | Remove-VMSnapshot), then list it again.",
                };
            }

            files.AddRange(disks);
            return new HyperVVm(name, id, state, configuration, files, disks);
        }

        private static bool IsCheckpointDisk(string path) =>
            path.EndsWith(".avhdx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".avhd", StringComparison.OrdinalIgnoreCase);

        /// <summary>Msvm_ComputerSystem.EnabledState in words.</summary>
        private static string State(IReadOnlyDictionary<string, object?> system)
        {
            object? value = system.TryGetValue("EnabledState", out object? raw) ? raw : null;
            int state = value == null ? 0 : Convert.ToInt32(value, CultureInfo.InvariantCulture);
            return state switch
            {
                2 => "Running",
                3 => "Off",
                6 => "Saved",
                9 => "Paused",
                10 => "Starting",
                32768 => "Paused",
                32769 => "Saved",
                32770 => "Starting",
                32773 => "Saving",
                32774 => "Stopping",
                32776 => "Pausing",
                32777 => "Resuming",
                _ => "Other (" + state.ToString(CultureInfo.InvariantCulture) + ")",
            };
        }

        private static string? Text(IReadOnlyDictionary<string, object?> bag, string property) =>
            bag.TryGetValue(property, out object? value) && value is string text && text.Length > 0 ? text : null;

        private static IEnumerable<string> Texts(IReadOnlyDictionary<string, object?> bag, string property) =>
            (bag.TryGetValue(property, out object? value) ? value : null) switch
            {
                string text => new[] { text },
                System.Collections.IEnumerable items => items.OfType<string>(),
                _ => Array.Empty<string>(),
            };
    }
}
