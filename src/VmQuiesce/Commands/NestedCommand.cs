using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// A command of this module run from inside a cmdlet or a parameter's transformation, in the same runspace. Run as
    /// it is, a nested command writes its warnings and verbose lines to the host itself, past the caller's
    /// -WarningAction, -WarningVariable, -Verbose and redirection: here they come back as records, in the order written,
    /// for the caller to write as its own (<see cref="Write"/>). Its errors stay in its error stream for the caller to
    /// report per item: the caller's $ErrorActionPreference 'Stop' would end it at its first failure.
    /// </summary>
    internal static class NestedCommand
    {
        public static PowerShell Create(string command)
        {
            PowerShell nested = PowerShell.Create(RunspaceMode.CurrentRunspace).AddCommand(command)
                .AddParameter("ErrorAction", ActionPreference.Continue)
                .AddParameter("WarningAction", ActionPreference.Continue)
                .AddParameter("Verbose", true);
            nested.Commands.Commands[0].MergeMyResults(PipelineResultTypes.Warning, PipelineResultTypes.Output);
            nested.Commands.Commands[0].MergeMyResults(PipelineResultTypes.Verbose, PipelineResultTypes.Output);
            return nested;
        }

        /// <summary>
        /// Runs <paramref name="nested"/> (from <see cref="Create"/>) and returns its output; its warnings and verbose lines
        /// are added to <paramref name="said"/>, and a terminating error to its error stream.
        /// </summary>
        public static List<object> Invoke(PowerShell nested, List<InformationalRecord> said)
        {
            var output = new List<object>();
            try
            {
                foreach (object? item in nested.Invoke().Select(item => item?.BaseObject))
                {
                    switch (item)
                    {
                        case InformationalRecord record:
                            said.Add(record);
                            break;
                        case object result:
                            output.Add(result);
                            break;
                    }
                }
            }
            catch (RuntimeException e)
            {
                nested.Streams.Error.Add(e.ErrorRecord);
            }

            return output;
        }

        /// <summary>A warning or verbose line of a nested command, written as <paramref name="cmdlet"/>'s own: its preferences decide on it.</summary>
        public static void Write(Cmdlet cmdlet, InformationalRecord record)
        {
            if (record is WarningRecord)
            {
                cmdlet.WriteWarning(record.Message);
            }
            else
            {
                cmdlet.WriteVerbose(record.Message);
            }
        }
    }
}
