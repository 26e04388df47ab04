using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Lists the snapshots of a VM (from Get-BackupVm, asked online) or of disk images (offline). Hyper-V's own calls
    /// (-VMName, or the Hyper-V module's VM objects) go to the Hyper-V module's Get-VMSnapshot.
    /// </summary>
    [Cmdlet(VerbsCommon.Get, "VmSnapshot", DefaultParameterSetName = VmSet)]
    [OutputType(typeof(VmSnapshot))]
    public sealed class GetVmSnapshotCommand : VmQuiesceCmdlet
    {
        public const string VmSet = "Vm";
        public const string PathSet = "Path";
        public const string HyperVNameSet = "HyperVVMName";

        /// <summary>A VM target from Get-BackupVm, or a VM object of the Hyper-V module (handed to Hyper-V's Get-VMSnapshot).</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = VmSet)]
        [ValidateNotNull]
        [HyperVVirtualMachineTransformation]
        public BackupVm? Vm { get; set; }

        /// <summary>Hyper-V: the names of the VMs whose checkpoints Hyper-V's Get-VMSnapshot lists.</summary>
        [Parameter(Mandatory = true, ParameterSetName = HyperVNameSet)]
        [ValidateNotNullOrEmpty]
        public string[]? VMName { get; set; }

        /// <summary>Hyper-V: the Hyper-V hosts to ask.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNullOrEmpty]
        public string[]? ComputerName { get; set; }

        /// <summary>Hyper-V: the accounts for -ComputerName.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNull]
        public PSCredential[]? Credential { get; set; }

        /// <summary>Hyper-V: CIM sessions to the Hyper-V hosts.</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNull]
        public object[]? CimSession { get; set; }

        /// <summary>Hyper-V: only checkpoints of this type (Standard, Recovery, Planned, Missing, Replica, AppConsistentReplica, SyncedReplica).</summary>
        [Parameter(ParameterSetName = HyperVNameSet)]
        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNullOrEmpty]
        public string? SnapshotType { get; set; }

        /// <summary>Disk images (qcow2) to read offline.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = PathSet)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; } = Array.Empty<string>();

        /// <summary>Only snapshots whose name matches (wildcards allowed).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string? Name { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == HyperVNameSet || Vm is HyperVModuleObject)
            {
                HyperVModule.Forward(this, "Get-VMSnapshot", Array.Empty<string>());
                return;
            }

            if (new object?[] { ComputerName, Credential, CimSession, SnapshotType }.Any(value => value != null))
            {
                ThrowInvalidArgument("HyperVParameterNeedsHyperVVm", $"-ComputerName, -Credential, -CimSession and -SnapshotType are Hyper-V's: they apply with -VMName or a VM object of the Hyper-V module, not to VM '{Vm?.Name}'.", Vm);
            }

            if (ParameterSetName == VmSet)
            {
                Write(() => VmSnapshotCatalog.ForVm(Vm!, CancelToken));
                return;
            }

            foreach (string path in Path)
            {
                string full;
                try
                {
                    full = ResolveItemFileSystemPath(path, nameof(Path));
                }
                catch (VmQuiesceException e)
                {
                    WriteFailure(e);
                    continue;
                }

                if (!File.Exists(full))
                {
                    WriteFailure(new VmQuiesceException("ImageNotFound", FailureKind.ObjectNotFound, $"The disk image '{full}' does not exist.", path));
                    continue;
                }

                Write(() => VmSnapshotCatalog.ForImage(full, CancelToken));
            }
        }

        private void Write(Func<IReadOnlyList<VmSnapshot>> list)
        {
            var pattern = Name == null ? null : new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            try
            {
                foreach (VmSnapshot snapshot in list())
                {
                    if (pattern == null || pattern.IsMatch(snapshot.Name))
                    {
                        WriteObject(snapshot);
                    }
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }
}
