using System.Collections.Generic;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// What the *-VssWriterConfig cmdlets share: -Path (folders or files, from the pipeline), each resolved
    /// to its vmvsswriter.cfg and handled on its own, so one bad path does not stop the others.
    /// </summary>
    public abstract class VssWriterConfigCommandBase : VmQuiesceCmdlet
    {
        /// <summary>A folder (holding vmvsswriter.cfg) or a file path; default: VMware Server's install folder.</summary>
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath")]
        [ValidateNotNullOrEmpty]
        public string[]? Path { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string? path in PathsOrDefault())
            {
                try
                {
                    ProcessFile(VssWriterConfigParameters.ResolveFile(this, path));
                }
                catch (VmQuiesceException failure)
                {
                    WriteFailure(failure);
                }
            }
        }

        /// <summary>Handles one resolved vmvsswriter.cfg path (which may not exist yet).</summary>
        protected abstract void ProcessFile(string file);

        /// <summary>The given paths, or one null that stands for "find VMware Server".</summary>
        private IEnumerable<string?> PathsOrDefault() =>
            Path == null || Path.Length == 0 ? new string?[] { null } : Path;
    }

    /// <summary>Set and Test take the same desired state: -OverwriteSnapshots and -Setting.</summary>
    public abstract class VssWriterConfigStateCommandBase : VssWriterConfigCommandBase
    {
        private VssWriterDesiredState? _desired;

        /// <summary>TRUE lets VMware's VSS writer overwrite a VM's existing snapshot (destroying a snapshot made by hand).</summary>
        [Parameter]
        public bool OverwriteSnapshots { get; set; }

        /// <summary>Name/value pairs; a $null value means the setting is absent.</summary>
        [Parameter]
        public System.Collections.Hashtable? Setting { get; set; }

        /// <summary>The state asked for, checked once before any file is touched.</summary>
        protected VssWriterDesiredState Desired => _desired!;

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
    }
}
