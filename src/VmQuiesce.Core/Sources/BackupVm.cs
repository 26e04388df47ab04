using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// A VM target as Get-BackupVm finds it: what the user sees (name, kind, where it lives) and how to open its
    /// backup source. Each hypervisor has its own type with typed connection details (QemuVm, VmwareVm, HyperVVm,
    /// PlainImageVm); what a target can do besides a backup is a capability interface it implements
    /// (<see cref="IReadinessCheckable"/>, <see cref="ISnapshotListable"/>, WindowsVss.IHostVssTarget), which
    /// callers ask for with 'is', never by kind. Backup, readiness and snapshot cmdlets take it from the pipeline.
    /// </summary>
    public abstract class BackupVm
    {
        protected BackupVm(string name, string location)
        {
            Name = name;
            Location = location;
        }

        public string Name { get; }

        /// <summary>What users see and restore points record as the source: "Qemu", "VMware", "HyperV", "Files".</summary>
        public abstract string Kind { get; }

        /// <summary>Where the VM is reached: a QMP socket, a .vmx path, a configuration file, a folder of images.</summary>
        public string Location { get; }

        /// <summary>The connection details in words, for display (never secrets), e.g. QmpSocket, AgentSocket.</summary>
        public IReadOnlyDictionary<string, string> Details => Describe();

        /// <summary>
        /// A source for one backup, reporting its warnings and verbose lines to <paramref name="host"/>; it takes what
        /// <paramref name="ahead"/> (<see cref="StartAhead"/> of this VM) started.
        /// </summary>
        public IBackupSource OpenSource(IOperationHost? host = null, IDisposable? ahead = null) =>
            ahead == null ? CreateSource(host ?? OperationHost.None) : CreateSource(host ?? OperationHost.None, ahead);

        /// <summary>
        /// Starts, ahead of a backup, the connections it will need (checked as the backup would; nothing is sent to the
        /// guest), so that they are ready when it starts: a QEMU guest agent, for one, notices a new connection only after
        /// up to 100 ms. Give the result to <see cref="OpenSource"/>, and dispose it afterwards: that closes what no source
        /// took. Null when there is nothing to start.
        /// </summary>
        public virtual IDisposable? StartAhead() => null;

        public override string ToString() => Name;

        protected abstract IBackupSource CreateSource(IOperationHost host);

        /// <summary>A source that takes what <see cref="StartAhead"/> started.</summary>
        protected virtual IBackupSource CreateSource(IOperationHost host, IDisposable ahead) => CreateSource(host);

        /// <summary>The typed details as name/value pairs, leaving out those that are not set.</summary>
        protected abstract IReadOnlyDictionary<string, string> Describe();
    }
}
