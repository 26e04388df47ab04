using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>Lists the snapshots of a VM (from Get-BackupVm, asked online) or of disk images (offline).</summary>
    [Cmdlet(VerbsCommon.Get, "VmSnapshot", DefaultParameterSetName = VmSet)]
    [OutputType(typeof(VmSnapshot))]
    public sealed class GetVmSnapshotCommand : VmQuiesceCmdlet
    {
        public const string VmSet = "Vm";
        public const string PathSet = "Path";

        /// <summary>A VM target from Get-BackupVm.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = VmSet)]
        [ValidateNotNull]
        public BackupVm? Vm { get; set; }

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
            if (ParameterSetName == VmSet)
            {
                Write(() => VmSnapshotCatalog.ForVm(Vm!, CancelToken));
                return;
            }

            foreach (string path in Path)
            {
                string full = ResolveFileSystemPath(path, nameof(Path));
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
