using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>
    /// Backup schedules as systemd units: vmquiesce-backup-&lt;Name&gt;.service (Type=oneshot, ExecStart= the job) and
    /// a .timer that starts it daily (Persistent=true: a run missed while the host was off starts at boot). The
    /// service unit records the settings on a comment line. systemctl runs only when systemd reads the unit
    /// directory; a custom directory (tests, staging) gets the same files and nothing else.
    /// </summary>
    public sealed class SystemdSchedules : IScheduleStore
    {
        public const string UnitPrefix = "vmquiesce-backup-";
        internal const string SettingsMarker = "# VmQuiesce schedule: ";
        private static readonly TimeSpan SystemctlTimeout = TimeSpan.FromMinutes(2);

        private readonly HostTools _tools;

        /// <param name="unitDirectory">Where the units go; null for /etc/systemd/system.</param>
        public SystemdSchedules(string? unitDirectory)
            : this(unitDirectory, Directory.Exists("/run/systemd/system"), HostTools.ForThisHost)
        {
        }

        /// <param name="systemdReadsUnitDirectory">Tests: treat a custom unit directory as one systemd reads.</param>
        internal SystemdSchedules(string? unitDirectory, bool systemdRunning, HostTools tools, bool systemdReadsUnitDirectory = false)
        {
            UnitDirectory = unitDirectory == null ? SystemdLogonBackend.DefaultUnitDirectory : Path.GetFullPath(unitDirectory).TrimEnd('/');
            SystemdManages = systemdRunning && (systemdReadsUnitDirectory || SystemdLogonBackend.SystemUnitDirectories.Contains(UnitDirectory, StringComparer.Ordinal));
            _tools = tools;
        }

        public string UnitDirectory { get; }

        /// <summary>Whether systemd reads <see cref="UnitDirectory"/> (and so is told to reload, enable, disable, and asked for run times).</summary>
        public bool SystemdManages { get; }

        public string ServicePath(string name) => Path.Combine(UnitDirectory, UnitPrefix + name + ".service");

        public string TimerPath(string name) => Path.Combine(UnitDirectory, UnitPrefix + name + ".timer");

        /// <summary>
        /// Writes both units (atomically, each replacing the old one whole, whatever was left of them, a link at its name
        /// itself), then reloads systemd and enables the timer. The unit folder is opened once and written through
        /// (<see cref="SystemdLogonBackend.OpenUnitFolder"/>): UnitFolderUnsafe, before anything is written, when another
        /// user could redirect the writes.
        /// </summary>
        public void Install(BackupSchedule schedule, CancellationToken cancel)
        {
            schedule.Validate();
            try
            {
                using TrustedFolder folder = SystemdLogonBackend.OpenUnitFolder(UnitDirectory, create: true)!;
                foreach (KeyValuePair<string, string> unit in UnitFiles(schedule))
                {
                    folder.ReplaceWithText(Path.GetFileName(unit.Key), unit.Value, SystemdLogonBackend.UnitFileMode);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("ScheduleWriteFailed", FailureKind.WriteError, $"Cannot write the units of schedule '{schedule.Name}' in '{UnitDirectory}': {e.Message}", schedule.Name, e)
                {
                    Remedy = "Run as root, or give a writable -UnitDirectory.",
                };
            }

            if (SystemdManages)
            {
                Systemctl(cancel, "daemon-reload");
                Systemctl(cancel, "enable", "--now", UnitPrefix + schedule.Name + ".timer");
            }
        }

        /// <summary>
        /// Stops and removes both units, or the one that is left (a link at a unit's name itself); false when there was
        /// nothing to remove. UnitFolderUnsafe, before systemd is told anything, when another user could redirect the deletes.
        /// </summary>
        public bool Remove(string name, CancellationToken cancel)
        {
            using TrustedFolder? folder = SystemdLogonBackend.OpenUnitFolder(UnitDirectory, create: false);
            string timer = UnitPrefix + name + ".timer";
            string service = UnitPrefix + name + ".service";
            bool timerThere = folder != null && HoldsUnit(folder, timer);
            bool serviceThere = folder != null && HoldsUnit(folder, service);
            if (!timerThere && !serviceThere)
            {
                return false;
            }

            if (SystemdManages)
            {
                // systemd disables and stops a timer by its own unit, whatever became of the service it starts. A timer
                // whose file is gone may still be enabled or loaded, so it is asked too; systemd may then answer that it
                // knows no such unit, which is no reason to keep the service.
                string[] disable = { "disable", "--now", timer };
                if (timerThere)
                {
                    Systemctl(cancel, disable);
                }
                else
                {
                    _ = RunSystemctl(cancel, disable);
                }
            }

            // The timer first: removal cut short leaves a service that starts nothing (and that List shows as incomplete).
            if (timerThere)
            {
                folder!.Delete(timer);
            }

            if (serviceThere)
            {
                folder!.Delete(service);
            }

            if (SystemdManages)
            {
                Systemctl(cancel, "daemon-reload");
            }

            return true;
        }

        /// <summary>Whether a unit (a file, or a link in its place) stands at <paramref name="name"/>: a folder of that name is none.</summary>
        private static bool HoldsUnit(TrustedFolder folder, string name) => folder.Exists(name) && folder.Stat(name)?.IsDirectory != true;

        /// <summary>
        /// Every schedule of which a unit is installed, by name. One whose other unit or recorded settings are missing
        /// (a crash between the two writes of <see cref="Install"/>, a half removal by hand) is listed too, as
        /// incomplete (<see cref="BackupScheduleInfo.Missing"/>): Register replaces it whole and Unregister removes it.
        /// </summary>
        public IReadOnlyList<BackupScheduleInfo> List(CancellationToken cancel)
        {
            if (!Directory.Exists(UnitDirectory))
            {
                return Array.Empty<BackupScheduleInfo>();
            }

            return Directory.EnumerateFiles(UnitDirectory, UnitPrefix + "*")
                .Select(path => ScheduleNameOf(Path.GetFileName(path)))
                .OfType<string>()
                .Distinct(StringComparer.Ordinal)
                .OrderBy(name => name, StringComparer.Ordinal)
                .Select(name => Read(name, cancel))
                .ToList();
        }

        /// <summary>The schedule a unit file name (vmquiesce-backup-&lt;Name&gt;.service or .timer) belongs to; null for other files.</summary>
        private static string? ScheduleNameOf(string fileName)
        {
            foreach (string suffix in new[] { ".service", ".timer" })
            {
                if (fileName.EndsWith(suffix, StringComparison.Ordinal) && fileName.Length > UnitPrefix.Length + suffix.Length)
                {
                    string name = fileName.Substring(UnitPrefix.Length, fileName.Length - UnitPrefix.Length - suffix.Length);
                    return BackupSchedule.IsValidName(name) ? name : null;
                }
            }

            return null;
        }

        /// <summary>The schedule <paramref name="name"/> as its units are (at least one of them is there).</summary>
        private BackupScheduleInfo Read(string name, CancellationToken cancel)
        {
            string service = ServicePath(name);
            string timer = TimerPath(name);
            string? serviceText = File.Exists(service) ? SystemdLogonBackend.ReadUnitFile(service) : null;
            string? timerText = File.Exists(timer) ? SystemdLogonBackend.ReadUnitFile(timer) : null;
            string? line = serviceText?.Split('\n').FirstOrDefault(l => l.StartsWith(SettingsMarker, StringComparison.Ordinal));
            BackupSchedule? settings = line == null ? null : BackupSchedule.FromJson(line.Substring(SettingsMarker.Length));
            if (settings != null && settings.Name != name)
            {
                settings = null; // another schedule's record, copied by hand: it does not describe these units
            }

            string? missing = serviceText == null ? Path.GetFileName(service)
                : timerText == null ? Path.GetFileName(timer)
                : settings == null ? "the settings recorded in " + Path.GetFileName(service)
                : null;
            BackupSchedule shown = settings ?? BackupSchedule.Unrecorded(name);
            IReadOnlyList<string> command = settings == null ? Array.Empty<string>() : Command(settings);
            string location = serviceText != null ? service : timer;
            bool current = false;
            if (missing == null)
            {
                IReadOnlyDictionary<string, string> expected = UnitFiles(settings!);
                current = expected[service] == serviceText && expected[timer] == timerText;
            }

            if (SystemdManages)
            {
                return WithRunState(shown, location, current, command, missing, cancel);
            }

            return new BackupScheduleInfo(shown, "systemd", location, command)
            {
                IsCurrent = current,
                Missing = missing,
                // Nothing starts a service without its timer, and a timer without recorded settings has no known time.
                NextRunTime = settings != null && timerText != null ? BackupScheduleInfo.NextDaily(settings.TimeOfDay, DateTime.Now) : (DateTime?)null,
            };
        }

        /// <summary>Path -> exact content of the service and timer units.</summary>
        internal IReadOnlyDictionary<string, string> UnitFiles(BackupSchedule schedule)
        {
            string exec = string.Join(" ", Command(schedule).Select(Quote));
            string service = $"[Unit]\nDescription=VmQuiesce backup {schedule.Name}\n{SettingsMarker}{schedule.ToJson()}\n\n" +
                $"[Service]\nType=oneshot\nExecStart={exec}\n";
            string timer = $"[Unit]\nDescription=Daily VmQuiesce backup {schedule.Name} at {schedule.At}\n\n" +
                $"[Timer]\nOnCalendar=*-*-* {schedule.At}:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
            return new Dictionary<string, string> { [ServicePath(schedule.Name)] = service, [TimerPath(schedule.Name)] = timer };
        }

        /// <summary>
        /// What `systemctl show --timestamp=unix` says of one unit, as name/value pairs (timestamps "@&lt;seconds&gt;",
        /// "n/a" or empty when there is none).
        /// </summary>
        internal static IReadOnlyDictionary<string, string> ParseShow(string output)
        {
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string line in output.Split('\n'))
            {
                int equals = line.IndexOf('=');
                if (equals > 0)
                {
                    values[line.Substring(0, equals)] = line.Substring(equals + 1).TrimEnd('\r');
                }
            }

            return values;
        }

        /// <summary>A "@&lt;unix seconds&gt;" timestamp as local time; null for none.</summary>
        internal static DateTime? ParseTimestamp(IReadOnlyDictionary<string, string> values, string name) =>
            values.TryGetValue(name, out string? text) && text.StartsWith("@", StringComparison.Ordinal)
                && long.TryParse(text.Substring(1), NumberStyles.None, CultureInfo.InvariantCulture, out long seconds) && seconds > 0
                ? DateTimeOffset.FromUnixTimeSeconds(seconds).LocalDateTime
                : (DateTime?)null;

        /// <summary>The run state systemd keeps: the timer's last and next start, the service's last exit code.</summary>
        internal static BackupScheduleInfo FromShow(BackupSchedule settings, string location, bool current, IReadOnlyList<string> command, string timerShow, string serviceShow, string? missing = null)
        {
            IReadOnlyDictionary<string, string> timer = ParseShow(timerShow);
            IReadOnlyDictionary<string, string> service = ParseShow(serviceShow);
            DateTime? lastRun = ParseTimestamp(timer, "LastTriggerUSec");
            bool ran = lastRun != null && ParseTimestamp(service, "ExecMainExitTimestamp") != null;
            return new BackupScheduleInfo(settings, "systemd", location, command)
            {
                IsCurrent = current,
                Missing = missing,
                Enabled = timer.TryGetValue("UnitFileState", out string? state) ? state == "enabled" : (bool?)null,
                LastRunTime = lastRun,
                LastExitCode = ran && service.TryGetValue("ExecMainStatus", out string? status) && int.TryParse(status, NumberStyles.None, CultureInfo.InvariantCulture, out int code) ? code : (int?)null,
                NextRunTime = ParseTimestamp(timer, "NextElapseUSecRealtime"),
            };
        }

        private BackupScheduleInfo WithRunState(BackupSchedule settings, string location, bool current, IReadOnlyList<string> command, string? missing, CancellationToken cancel) =>
            FromShow(settings, location, current, command,
                Systemctl(cancel, "show", "--timestamp=unix", "--property=UnitFileState,LastTriggerUSec,NextElapseUSecRealtime", UnitPrefix + settings.Name + ".timer"),
                Systemctl(cancel, "show", "--timestamp=unix", "--property=ExecMainStatus,ExecMainExitTimestamp", UnitPrefix + settings.Name + ".service"),
                missing);

        private static IReadOnlyList<string> Command(BackupSchedule schedule) => new[] { schedule.PowerShellPath }.Concat(schedule.JobArguments()).ToList();

        /// <summary>
        /// One ExecStart argument: double-quoted, with systemd's specifiers (%) and variables ($) kept literal. A line break
        /// (it would start a directive of its own) or NUL is refused: <see cref="BackupSchedule"/> refuses
        /// such text first, so this only stops text that reached here some other way.
        /// </summary>
        internal static string Quote(string text) =>
            text.IndexOfAny(BackupSchedule.LineBreaks) >= 0
                ? throw new InvalidOperationException($"A unit file argument holds a line break or NUL: '{text.Replace("\r", "\\r").Replace("\n", "\\n")}'.")
                : "\"" + text.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("%", "%%").Replace("$", "$$") + "\"";

        private string Systemctl(CancellationToken cancel, params string[] arguments)
        {
            ToolResult result = RunSystemctl(cancel, arguments);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("ScheduleSystemctlFailed", FailureKind.InvalidOperation,
                    $"'systemctl {string.Join(" ", arguments)}' failed (exit code {result.ExitCode}): {result.Message}", "systemd");
            }

            return result.StandardOutput;
        }

        /// <summary>Runs systemctl and returns what it did, a failure included.</summary>
        private ToolResult RunSystemctl(CancellationToken cancel, params string[] arguments) =>
            ToolProcess.Run(new ToolCommand(_tools.Find("systemctl"), arguments)
            {
                Timeout = SystemctlTimeout,
                Target = "systemd",
                TimeoutId = "ServiceManagerTimeout",
            }, cancel);
    }
}
