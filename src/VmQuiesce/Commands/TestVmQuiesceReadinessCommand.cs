using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Checks, without changing anything, whether each VM can be backed up consistently: one row per
    /// check (QMP reachable, agent answering, freeze supported, disks snapshotable, overlay space, leftovers).
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Test, "VmQuiesceReadiness")]
    [OutputType(typeof(ReadinessCheck))]
    public sealed class TestVmQuiesceReadinessCommand : VmQuiesceCmdlet
    {
        /// <summary>VMs from Get-BackupVm.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
        [ValidateNotNull]
        [BackupVmTransformation]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public BackupVm[] Vm { get; set; } = System.Array.Empty<BackupVm>();

        protected override void ProcessRecord()
        {
            BackupVmTransformationAttribute.WriteSaidWhileFound(this, Vm);
            foreach (BackupVm vm in Vm)
            {
                if (!(vm is IReadinessCheckable checkable))
                {
                    WriteFailure(new VmQuiesceException("ReadinessNotSupported", FailureKind.NotSupported,
                        $"Test-VmQuiesceReadiness checks QEMU VMs; '{vm.Name}' is a {vm.Kind} VM.", vm));
                    continue;
                }

                WriteVerbose($"Checking VM '{vm.Name}' at '{vm.Location}'.");
                WriteObject(checkable.CheckReadiness(CancelToken), enumerateCollection: true);
            }
        }
    }
}
