using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
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

        internal SystemdSchedules(string? unitDirectory, bool systemdRunning, HostTools tools)
        {
            UnitDirectory = unitDirectory == null ? SystemdLogonBackend.DefaultUnitDirectory : Path.GetFullPath(unitDirectory).TrimEnd('/');
            SystemdManages = systemdRunning && SystemdLogonBackend.SystemUnitDirectories.Contains(UnitDirectory, StringComparer.Ordinal);
            _tools = tools;
        }

        public string UnitDirectory { get; }

        /// <summary>Whether systemd reads <see cref="UnitDirectory"/> (and so is told to reload, enable, disable, and asked for run times).</summary>
        public bool SystemdManages { get; }

        public string ServicePath(string name) => Path.Combine(UnitDirectory, UnitPrefix + name + ".service");

        public string TimerPath(string name) => Path.Combine(UnitDirectory, UnitPrefix + name + ".timer");

        /// <summary>Writes both units (atomically, each replacing the old one whole), then reloads systemd and enables the timer.</summary>
        public void Install(BackupSchedule schedule, CancellationToken cancel)
        {
            schedule.Validate();
            try
            {
                Directory.CreateDirectory(UnitDirectory);
                foreach (KeyValuePair<string, string> unit in UnitFiles(schedule))
                {
                    string temporary = unit.Key + ".tmp-" + Guid.NewGuid().ToString("N");
                    File.WriteAllText(temporary, unit.Value, new UTF8Encoding(false));
                    Logon.StateFiles.ReplaceAtomically(temporary, unit.Key);
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

        /// <summary>Stops and removes both units; false when there was nothing to remove.</summary>
        public bool Remove(string name, CancellationToken cancel)
        {
            string[] paths = { TimerPath(name), ServicePath(name) };
            if (!paths.Any(File.Exists))
            {
                return false;
            }

            if (SystemdManages)
            {
                Systemctl(cancel, "disable", "--now", UnitPrefix + name + ".timer");
            }

            foreach (string path in paths.Where(File.Exists))
            {
                File.Delete(path);
            }

            if (SystemdManages)
            {
                Systemctl(cancel, "daemon-reload");
            }

            return true;
        }

        /// <summary>Every schedule whose service unit records its settings, by name.</summary>
        public IReadOnlyList<BackupScheduleInfo> List(CancellationToken cancel)
        {
            if (!Directory.Exists(UnitDirectory))
            {
                return Array.Empty<BackupScheduleInfo>();
            }

            var found = new List<BackupScheduleInfo>();
            foreach (string service in Directory.EnumerateFiles(UnitDirectory, UnitPrefix + "*.service").OrderBy(p => p, StringComparer.Ordinal))
            {
                string text = File.ReadAllText(service);
                string? line = text.Split('\n').FirstOrDefault(l => l.StartsWith(SettingsMarker, StringComparison.Ordinal));
                if (line == null || !(BackupSchedule.FromJson(line.Substring(SettingsMarker.Length)) is BackupSchedule settings))
                {
                    continue;
                }

                string timer = TimerPath(settings.Name);
                IReadOnlyDictionary<string, string> expected = UnitFiles(settings);
                bool current = File.Exists(timer) && expected[service] == text && expected[timer] == File.ReadAllText(timer);
                found.Add(SystemdManages ? WithRunState(settings, service, current, cancel) : new BackupScheduleInfo(settings, "systemd", service, Command(settings))
                {
                    IsCurrent = current,
                    NextRunTime = BackupScheduleInfo.NextDaily(settings.TimeOfDay, DateTime.Now),
                });
            }

            return found;
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
        internal static BackupScheduleInfo FromShow(BackupSchedule settings, string location, bool current, IReadOnlyList<string> command, string timerShow, string serviceShow)
        {
            IReadOnlyDictionary<string, string> timer = ParseShow(timerShow);
            IReadOnlyDictionary<string, string> service = ParseShow(serviceShow);
            DateTime? lastRun = ParseTimestamp(timer, "LastTriggerUSec");
            bool ran = lastRun != null && ParseTimestamp(service, "ExecMainExitTimestamp") != null;
            return new BackupScheduleInfo(settings, "systemd", location, command)
            {
                IsCurrent = current,
                Enabled = timer.TryGetValue("UnitFileState", out string? state) ? state == "enabled" : (bool?)null,
                LastRunTime = lastRun,
                LastExitCode = ran && service.TryGetValue("ExecMainStatus", out string? status) && int.TryParse(status, NumberStyles.None, CultureInfo.InvariantCulture, out int code) ? code : (int?)null,
                NextRunTime = ParseTimestamp(timer, "NextElapseUSecRealtime"),
            };
        }

        private BackupScheduleInfo WithRunState(BackupSchedule settings, string service, bool current, CancellationToken cancel) =>
            FromShow(settings, service, current, Command(settings),
                Systemctl(cancel, "show", "--timestamp=unix", "--property=UnitFileState,LastTriggerUSec,NextElapseUSecRealtime", UnitPrefix + settings.Name + ".timer"),
                Systemctl(cancel, "show", "--timestamp=unix", "--property=ExecMainStatus,ExecMainExitTimestamp", UnitPrefix + settings.Name + ".service"));

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
            ToolResult result = ToolProcess.Run(new ToolCommand(_tools.Find("systemctl"), arguments)
            {
                Timeout = SystemctlTimeout,
                Target = "systemd",
                TimeoutId = "ServiceManagerTimeout",
            }, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("ScheduleSystemctlFailed", FailureKind.InvalidOperation,
                    $"'systemctl {string.Join(" ", arguments)}' failed (exit code {result.ExitCode}): {result.Message}", "systemd");
            }

            return result.StandardOutput;
        }
    }
}
