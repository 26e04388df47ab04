using System.Management.Automation;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Says whether vmvsswriter.cfg is in the desired state ($true/$false), or lists each difference.</summary>
    [Cmdlet(VerbsDiagnostic.Test, "VssWriterConfig")]
    [OutputType(typeof(bool))]
    [OutputType(typeof(VssWriterConfigDifference))]
    public sealed class TestVssWriterConfigCommand : VssWriterConfigStateCommandBase
    {
        /// <summary>Output one object per difference instead of a single boolean.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void ProcessFile(string file)
        {
            var differences = Desired.Compare(file, VmwareConfigFile.TryRead(file));
            if (Detailed)
            {
                WriteObject(differences, enumerateCollection: true);
            }
            else
            {
                WriteObject(differences.Count == 0);
            }
        }
    }
}
