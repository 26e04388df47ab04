using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Runtime.CompilerServices;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Lets -Vm take what a user types (the name of a running VM, a QMP socket, a .vmx path) as well as
    /// BackupVm objects: each text goes through Get-BackupVm, so there is one way a target is found.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class BackupVmTransformationAttribute : ArgumentTransformationAttribute
    {
        /// <summary>What Get-BackupVm said while it found a VM for a text, with the first VM found, until a cmdlet writes it (<see cref="WriteSaidWhileFound"/>).</summary>
        private static readonly ConditionalWeakTable<BackupVm, List<InformationalRecord>> SaidWhileFound = new ConditionalWeakTable<BackupVm, List<InformationalRecord>>();

        public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
        {
            object value = inputData is PSObject wrapped ? wrapped.BaseObject : inputData;
            if (value is string text)
            {
                return Find(engineIntrinsics, text);
            }

            if (value is IEnumerable items && !(value is BackupVm))
            {
                var list = items.Cast<object>().Select(item => item is PSObject w ? w.BaseObject : item).ToList();
                if (list.Any(item => item is string))
                {
                    return list.SelectMany(item => item is string name ? Find(engineIntrinsics, name) : new[] { (BackupVm)item }).ToArray();
                }
            }

            return inputData;
        }

        private static BackupVm[] Find(EngineIntrinsics engineIntrinsics, string target)
        {
            (List<BackupVm> found, string? why, _, List<InformationalRecord> said) = Resolve(engineIntrinsics.SessionState, target);
            if (why != null)
            {
                // Its warnings say why (a process that looked like the VM but was refused): part of the error, not lost.
                string warned = string.Concat(said.OfType<WarningRecord>().Select(warning => $" Get-BackupVm warned: {warning.Message}"));
                throw new ArgumentTransformationMetadataException(
                    $"'{target}' is not a VM that Get-BackupVm can find ({why}).{warned} Give the name of a running VM, a QMP socket or a .vmx path, or pipe Get-BackupVm.");
            }

            if (said.Count > 0)
            {
                SaidWhileFound.Add(found[0], said);
            }

            return found.ToArray();
        }

        /// <summary>
        /// Writes, once and as <paramref name="cmdlet"/>'s own, what Get-BackupVm warned (and said verbosely) while it found
        /// <paramref name="vms"/> for a text. A transformation runs before the cmdlet's -WarningAction, $WarningPreference,
        /// -Verbose and redirection apply, and PowerShell may run it more than once, so it only keeps what was said with the
        /// first VM it found; the cmdlet writes that as soon as it has the VMs (at the start of BeginProcessing for -Vm given
        /// as an argument, when it can refuse other parameters there, and of ProcessRecord).
        /// </summary>
        internal static void WriteSaidWhileFound(Cmdlet cmdlet, IEnumerable<BackupVm> vms)
        {
            foreach (BackupVm vm in vms)
            {
                if (SaidWhileFound.TryGetValue(vm, out List<InformationalRecord>? said))
                {
                    SaidWhileFound.Remove(vm);
                    said.ForEach(record => NestedCommand.Write(cmdlet, record));
                }
            }
        }

        /// <summary>
        /// The VMs Get-BackupVm finds for a text: a .vmx path, a QMP socket (tcp:, a path, or an existing file),
        /// else a VM name (wildcards allowed). Why none was found and Get-BackupVm's error id, or nulls; and its
        /// warnings and verbose lines, in order, for the caller to write as its own (<see cref="NestedCommand"/>).
        /// </summary>
        internal static (List<BackupVm> Found, string? Why, string? ErrorId, List<InformationalRecord> Said) Resolve(SessionState session, string target)
        {
            using PowerShell powerShell = NestedCommand.Create("VmQuiesce\\Get-BackupVm");
            string fullPath = string.Empty;
            try
            {
                fullPath = session.Path.GetUnresolvedProviderPathFromPSPath(target);
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException || e is RuntimeException)
            {
                // Not a path: a VM name.
            }

            if (target.EndsWith(".vmx", StringComparison.OrdinalIgnoreCase))
            {
                powerShell.AddParameter("VmxPath", target);
            }
            else if (target.StartsWith("tcp:", StringComparison.Ordinal) || target.IndexOfAny(new[] { '/', '\\' }) >= 0 || (fullPath.Length > 0 && File.Exists(fullPath)))
            {
                powerShell.AddParameter("QmpSocket", target);
            }
            else
            {
                powerShell.AddParameter("Name", target);
            }

            var said = new List<InformationalRecord>();
            List<BackupVm> found = NestedCommand.Invoke(powerShell, said).OfType<BackupVm>().ToList();
            ErrorRecord? error = powerShell.Streams.Error.FirstOrDefault();
            return powerShell.HadErrors || found.Count == 0
                ? (found, error?.ToString() ?? "no VM has that name", error?.FullyQualifiedErrorId.Split(',')[0] ?? "VmNotFound", said)
                : (found, null, null, said);
        }
    }
}
