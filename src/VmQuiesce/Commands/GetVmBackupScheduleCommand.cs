using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Schedule;

namespace VmQuiesce.Commands
{
    /// <summary>Lists the backup schedules VmQuiesce registered: settings, command, last run, its exit code, next run.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackupSchedule")]
    [OutputType(typeof(BackupScheduleInfo))]
    public sealed class GetVmBackupScheduleCommand : ScheduleCommandBase
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[]? Name { get; set; }

        protected override void ProcessRecord()
        {
            IScheduleStore store = OpenStore();
            try
            {
                var all = store.List(CancelToken);
                foreach (BackupScheduleInfo schedule in ScheduleNames.Match(all, Name, WriteFailure))
                {
                    WriteObject(schedule);
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
        }
    }

    /// <summary>
    /// Schedules by -Name with wildcards, ignoring case; a name without wildcards that names none is a ScheduleNotFound error.
    /// A name without wildcards that one schedule has exactly names that one alone: systemd unit names are case-sensitive,
    /// so 'Nightly' and 'nightly' can be two schedules, and removing one must leave the other.
    /// </summary>
    internal static class ScheduleNames
    {
        public static System.Collections.Generic.IEnumerable<BackupScheduleInfo> Match(
            System.Collections.Generic.IReadOnlyList<BackupScheduleInfo> all, string[]? names, System.Action<VmQuiesceException> notFound)
        {
            var patterns = (names ?? new[] { "*" }).Select(name => (Name: name, Pattern: new WildcardPattern(name, WildcardOptions.IgnoreCase),
                Exact: !WildcardPattern.ContainsWildcardCharacters(name) && all.Any(s => string.Equals(s.Name, name, System.StringComparison.Ordinal)))).ToList();
            foreach (var missing in patterns.Where(p => !WildcardPattern.ContainsWildcardCharacters(p.Name) && !all.Any(s => p.Pattern.IsMatch(s.Name))))
            {
                notFound(new VmQuiesceException("ScheduleNotFound", FailureKind.ObjectNotFound, $"No backup schedule named '{missing.Name}' is registered ({all.Count} in all).", missing.Name));
            }

            return all.Where(s => patterns.Any(p => p.Exact ? string.Equals(s.Name, p.Name, System.StringComparison.Ordinal) : p.Pattern.IsMatch(s.Name)));
        }
    }
}
