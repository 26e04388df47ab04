using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources.WindowsVss;

namespace VmQuiesce.Commands
{
    /// <summary>Lists the host's VSS writers with state, last error and hosting service, as the HostVss method sees them.</summary>
    [Cmdlet(VerbsCommon.Get, "VssWriter")]
    [OutputType(typeof(VssWriterInfo))]
    public sealed class GetVssWriterCommand : VmQuiesceCmdlet
    {
        /// <summary>Writer names to show (wildcards allowed); all writers when omitted.</summary>
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        public string[]? Name { get; set; }

        private readonly List<string> _names = new List<string>();

        protected override void ProcessRecord()
        {
            if (Name != null)
            {
                _names.AddRange(Name);
            }
        }

        // Writers are gathered once, after every name has arrived: each gathering asks every writer on the machine.
        protected override void EndProcessing()
        {
            IReadOnlyList<VssWriterInfo> writers;
            try
            {
                writers = HostVssSource.GetWriters(CreateHost(), CancelToken);
            }
            catch (VmQuiesceException failure)
            {
                ThrowFailure(failure);
                return;
            }

            List<WildcardPattern> patterns = _names.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            foreach (VssWriterInfo writer in writers.OrderBy(w => w.Name, System.StringComparer.OrdinalIgnoreCase))
            {
                if (patterns.Count == 0 || patterns.Any(p => p.IsMatch(writer.Name)))
                {
                    WriteObject(writer);
                }
            }

            foreach (string name in _names.Where(n => !WildcardPattern.ContainsWildcardCharacters(n)))
            {
                if (!writers.Any(w => string.Equals(w.Name, name, System.StringComparison.OrdinalIgnoreCase)))
                {
                    WriteFailure(new VmQuiesceException("VssWriterNotFound", FailureKind.ObjectNotFound,
                        $"No VSS writer named '{name}' is registered on this machine; 'Get-VssWriter' without -Name lists those that are.", name));
                }
            }
        }
    }
}
