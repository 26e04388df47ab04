using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// A VM target as Get-BackupVm finds it: what the user sees (name, kind, where it lives) plus how to
    /// open its backup source. Backup, readiness and snapshot cmdlets take it from the pipeline.
    /// </summary>
    public sealed class BackupVm
    {
        private readonly Func<IOperationHost, IBackupSource> _openSource;

        public BackupVm(string name, string kind, string location, IReadOnlyDictionary<string, string> details, Func<IOperationHost, IBackupSource> openSource)
        {
            Name = name;
            Kind = kind;
            Location = location;
            Details = details;
            _openSource = openSource;
        }

        public string Name { get; }

        /// <summary>"Qemu", "VMware", "HostVss".</summary>
        public string Kind { get; }

        /// <summary>Where the VM is reached: a QMP socket, a .vmx path.</summary>
        public string Location { get; }

        /// <summary>Connection details shown to the user (never secrets), e.g. QmpSocket, AgentSocket.</summary>
        public IReadOnlyDictionary<string, string> Details { get; }

        /// <summary>A source for one backup, reporting its warnings and verbose lines to <paramref name="host"/>.</summary>
        public IBackupSource OpenSource(IOperationHost? host = null) => _openSource(host ?? OperationHost.None);

        public override string ToString() => Name;
    }
}
