using System.Collections;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Says whether vmvsswriter.cfg is in the desired state ($true/$false), or lists each difference.</summary>
    [Cmdlet(VerbsDiagnostic.Test, "VssWriterConfig")]
    [OutputType(typeof(bool))]
    [OutputType(typeof(VssWriterConfigDifference))]
    public sealed class TestVssWriterConfigCommand : VmQuiesceCmdlet
    {
        private VssWriterDesiredState? _desired;

        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath")]
        [ValidateNotNullOrEmpty]
        public string[]? Path { get; set; }

        [Parameter]
        public bool OverwriteSnapshots { get; set; }

        /// <summary>Name/value pairs to expect; a $null value expects the setting to be absent.</summary>
        [Parameter]
        public Hashtable? Setting { get; set; }

        /// <summary>Output one object per difference instead of a single boolean.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void BeginProcessing()
        {
            try
            {
                bool? overwrite = MyInvocation.BoundParameters.ContainsKey(nameof(OverwriteSnapshots)) ? OverwriteSnapshots : (bool?)null;
                _desired = new VssWriterDesiredState(overwrite, VssWriterConfigParameters.Settings(Setting));
            }
            catch (VmQuiesceException failure)
            {
                ThrowFailure(failure);
            }
        }

        protected override void ProcessRecord()
        {
            foreach (string? path in VssWriterConfigParameters.PathsOrDefault(Path))
            {
                try
                {
                    string file = VssWriterConfigParameters.ResolveFile(this, path);
                    var differences = _desired!.Compare(file, VmwareConfigFile.TryRead(file));
                    if (Detailed)
                    {
                        WriteObject(differences, enumerateCollection: true);
                    }
                    else
                    {
                        WriteObject(differences.Count == 0);
                    }
                }
                catch (VmQuiesceException failure)
                {
                    WriteFailure(failure);
                }
            }
        }
    }
}
