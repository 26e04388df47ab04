using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Get-VmSnapshot and Restore-VmSnapshot have the names of Hyper-V's Get-VMSnapshot and Restore-VMSnapshot
    /// (command names ignore case), so after Import-Module VmQuiesce they answer Hyper-V's calls too. They accept
    /// Hyper-V's parameter sets and objects and hand those calls, unchanged, to the Hyper-V module's own cmdlets.
    /// </summary>
    internal static class HyperVModule
    {
        public const string ModuleName = "Hyper-V";
        public const string VirtualMachineType = "Microsoft.HyperV.PowerShell.VirtualMachine";
        public const string SnapshotType = "Microsoft.HyperV.PowerShell.VMSnapshot";

        /// <summary>Whether <paramref name="value"/> is one of the Hyper-V module's objects of <paramref name="typeName"/> (or a type derived from it).</summary>
        public static bool Is(object? value, string typeName) =>
            value is PSObject wrapped
                ? wrapped.TypeNames.Any(name => name == typeName || name.StartsWith(typeName, StringComparison.Ordinal))
                : value != null && Is(PSObject.AsPSObject(value), typeName);

        /// <summary>
        /// Runs <c>Hyper-V\<paramref name="command"/></c> with the parameters the caller bound (VmQuiesce's own left out),
        /// writing its output, errors and warnings as the caller's.
        /// </summary>
        public static void Forward(PSCmdlet cmdlet, string command, IEnumerable<string> vmQuiesceOnly)
        {
            var skip = new HashSet<string>(vmQuiesceOnly, StringComparer.OrdinalIgnoreCase);
            using var powerShell = PowerShell.Create(RunspaceMode.CurrentRunspace);
            powerShell.AddCommand(ModuleName + "\\" + command);
            foreach (KeyValuePair<string, object> parameter in cmdlet.MyInvocation.BoundParameters.Where(p => !skip.Contains(p.Key)))
            {
                powerShell.AddParameter(parameter.Key, Unwrap(parameter.Value));
            }

            // Hyper-V's warnings come back among its output, in order, to be written as the caller's: a nested command writes
            // them to the host itself, past the caller's 3> redirection (its -WarningAction and -WarningVariable are handed on).
            powerShell.Commands.Commands[0].MergeMyResults(PipelineResultTypes.Warning, PipelineResultTypes.Output);
            try
            {
                foreach (PSObject result in powerShell.Invoke())
                {
                    if (result.BaseObject is WarningRecord warning)
                    {
                        NestedCommand.Write(cmdlet, warning);
                    }
                    else
                    {
                        cmdlet.WriteObject(result);
                    }
                }
            }
            catch (CommandNotFoundException e)
            {
                cmdlet.ThrowTerminatingError(new ErrorRecord(
                    new VmQuiesceException("HyperVModuleNotFound", FailureKind.NotSupported,
                        $"These are the parameters of Hyper-V's {command}, but the Hyper-V module is not installed: {e.Message}", command, e)
                    {
                        Remedy = "Install the Hyper-V PowerShell module (Windows: Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-Management-PowerShell), or use VmQuiesce's own parameters (Get-Help " + command + ").",
                    },
                    "HyperVModuleNotFound", ErrorCategory.NotInstalled, command));
            }

            foreach (ErrorRecord error in powerShell.Streams.Error)
            {
                cmdlet.WriteError(error);
            }
        }

        /// <summary>A Hyper-V object that went through a BackupVm-typed parameter comes back out as itself.</summary>
        private static object? Unwrap(object? value) => value is HyperVModuleObject vm ? vm.Original : value;
    }

    /// <summary>
    /// A Hyper-V module object (a VirtualMachine) that reached a VmQuiesce parameter of type BackupVm, carried as it is
    /// so the call can be handed to the Hyper-V module. It cannot be backed up through VmQuiesce's own sources: for
    /// that, Get-BackupVm -HyperV.
    /// </summary>
    public sealed class HyperVModuleObject : BackupVm
    {
        internal HyperVModuleObject(PSObject original)
            : base(original.Properties["Name"]?.Value?.ToString() ?? original.ToString(), original.Properties["ComputerName"]?.Value?.ToString() ?? ".")
        {
            Original = original;
        }

        public override string Kind => "HyperVModule";

        /// <summary>The Hyper-V module's object.</summary>
        public PSObject Original { get; }

        protected override IBackupSource CreateSource(IOperationHost host) =>
            throw new VmQuiesceException("HyperVModuleObjectNotBackedUp", FailureKind.InvalidArgument,
                $"'{Name}' is a VM object of the Hyper-V module; VmQuiesce backs Hyper-V VMs up from Get-BackupVm -HyperV.", this);

        protected override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string> { ["HyperVObject"] = VmTypeName };

        private string VmTypeName => Original.TypeNames.FirstOrDefault() ?? HyperVModule.VirtualMachineType;
    }

    /// <summary>Lets a BackupVm parameter take the Hyper-V module's VirtualMachine objects (as Hyper-V's -VM does), to hand them on.</summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class HyperVVirtualMachineTransformationAttribute : ArgumentTransformationAttribute
    {
        public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
        {
            if (HyperVModule.Is(inputData, HyperVModule.VirtualMachineType))
            {
                return new HyperVModuleObject(PSObject.AsPSObject(inputData));
            }

            return inputData;
        }
    }
}
