using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
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
            (List<BackupVm> found, string? why, _) = Resolve(engineIntrinsics.SessionState, target);
            if (why != null)
            {
                throw new ArgumentTransformationMetadataException(
                    $"'{target}' is not a VM that Get-BackupVm can find ({why}). Give the name of a running VM, a QMP socket or a .vmx path, or pipe Get-BackupVm.");
            }

            return found.ToArray();
        }

        /// <summary>
        /// The VMs Get-BackupVm finds for a text: a .vmx path, a QMP socket (tcp:, a path, or an existing file),
        /// else a VM name (wildcards allowed). Why none was found and Get-BackupVm's error id, or nulls.
        /// </summary>
        internal static (List<BackupVm> Found, string? Why, string? ErrorId) Resolve(SessionState session, string target)
        {
            using var powerShell = PowerShell.Create(RunspaceMode.CurrentRunspace);
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
                powerShell.AddCommand("VmQuiesce\\Get-BackupVm").AddParameter("VmxPath", target);
            }
            else if (target.StartsWith("tcp:", StringComparison.Ordinal) || target.IndexOfAny(new[] { '/', '\\' }) >= 0 || (fullPath.Length > 0 && File.Exists(fullPath)))
            {
                powerShell.AddCommand("VmQuiesce\\Get-BackupVm").AddParameter("QmpSocket", target);
            }
            else
            {
                powerShell.AddCommand("VmQuiesce\\Get-BackupVm").AddParameter("Name", target);
            }

            List<BackupVm> found;
            try
            {
                found = powerShell.Invoke().Select(result => result.BaseObject).OfType<BackupVm>().ToList();
            }
            catch (RuntimeException e)
            {
                return (new List<BackupVm>(), e.Message, e.ErrorRecord.FullyQualifiedErrorId.Split(',')[0]);
            }

            ErrorRecord? error = powerShell.Streams.Error.FirstOrDefault();
            return powerShell.HadErrors || found.Count == 0
                ? (found, error?.ToString() ?? "no VM has that name", error?.FullyQualifiedErrorId.Split(',')[0] ?? "VmNotFound")
                : (found, null, null);
        }
    }
}
