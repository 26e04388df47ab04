using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// A Hyper-V VM of this host, as Hyper-V's WMI classes describe it. It is always backed up through the host's
    /// VSS: the "Microsoft Hyper-V VSS Writer" quiesces the guest, and its component is chosen by the VM's id.
    /// </summary>
    public sealed class HyperVVm : BackupVm, IHostVssTarget
    {
        /// <param name="configuration">The VM's configuration file (.vmcx), its location.</param>
        /// <param name="files">Every file the backup copies: configuration, runtime and guest state, virtual hard disks.</param>
        /// <param name="disks">The virtual hard disks among <paramref name="files"/>.</param>
        public HyperVVm(string name, Guid id, string state, string configuration, IReadOnlyList<string> files, IReadOnlyList<string> disks)
            : this(name, id, state, configuration, files, disks, VssBackupType.Copy)
        {
        }

        private HyperVVm(string name, Guid id, string state, string configuration, IReadOnlyList<string> files, IReadOnlyList<string> disks, VssBackupType backupType)
            : base(name, configuration)
        {
            Id = id;
            State = state;
            Files = files;
            Disks = disks;
            BackupType = backupType;
        }

        public override string Kind => HyperVTargets.SourceKind;

        public Guid Id { get; }

        /// <summary>Msvm_ComputerSystem.EnabledState in words: Running, Off, Saved, ...</summary>
        public string State { get; }

        public IReadOnlyList<string> Files { get; }

        public IReadOnlyList<string> Disks { get; }

        /// <summary>Copy (the default) leaves the guest's application logs alone; Full lets its writers truncate them.</summary>
        public VssBackupType BackupType { get; }

        public BackupVm WithHostVss(VssBackupType backupType) => new HyperVVm(Name, Id, State, Location, Files, Disks, backupType);

        protected override IBackupSource CreateSource(IOperationHost host) =>
            new HostVssSource(Name, HostVssWriter.HyperV, Files, BackupType, host) { WriterComponentName = Id.ToString() };

        protected override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>
        {
            ["Id"] = Id.ToString(),
            ["State"] = State,
            ["Disks"] = string.Join("; ", Disks),
            ["Method"] = HostVssSource.MethodName,
        };
    }
}
