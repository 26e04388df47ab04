using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using VmQuiesce.Core;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>Completes -Name of Get-BackupVm with the names of the QEMU VMs running on this host.</summary>
    public sealed class RunningVmNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            if (!HostPlatform.IsLinux)
            {
                return Enumerable.Empty<CompletionResult>();
            }

            var pattern = new WildcardPattern(WildcardPattern.Escape(wordToComplete.Trim('\'', '"')) + "*", WildcardOptions.IgnoreCase);
            IReadOnlyList<QemuProcess> running;
            try
            {
                running = QemuDiscovery.FindRunning();
            }
            catch (VmQuiesceException)
            {
                return Enumerable.Empty<CompletionResult>();
            }

            return running.Select(p => p.Name).Where(pattern.IsMatch).Distinct()
                .Select(name => new CompletionResult(name.IndexOfAny(new[] { ' ', '\'', '"', '$', '`' }) >= 0 ? "'" + name.Replace("'", "''") + "'" : name,
                    name, CompletionResultType.ParameterValue, name));
        }
    }
}
