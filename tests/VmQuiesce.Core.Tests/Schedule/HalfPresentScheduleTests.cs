using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Schedule;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Schedule
{
    /// <summary>
    /// A schedule of which one unit is left (a crash between the two writes of Install, a half removal by hand) is
    /// a schedule still: listed as incomplete, replaced whole by Install, removed whole by Remove. systemd "runs" here
    /// as a stand-in systemctl (as in SystemdLogonBackendTests) that records each call and, like systemd, refuses to
    /// disable and stop a unit whose file is gone.
    /// </summary>
    public sealed class HalfPresentScheduleTests : IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-half-schedule-" + Guid.NewGuid().ToString("N"));
        private readonly string _units;
        private readonly string _log;
        private readonly SystemdSchedules _store;

        public HalfPresentScheduleTests()
        {
            _units = Directory.CreateDirectory(Path.Combine(_root, "units")).FullName;
            string bin = Directory.CreateDirectory(Path.Combine(_root, "bin")).FullName;
            _log = Path.Combine(_root, "systemctl.log");
            string script = Path.Combine(bin, "systemctl");
            File.WriteAllText(script,
                "#!/bin/sh\n" +
                $"printf '%s|' \"$@\" >> '{_log}'; echo >> '{_log}'\n" +
                "for unit; do :; done\n" +
                $"if [ \"$1\" = disable ] && [ ! -e '{_units}/'\"$unit\" ]; then echo \"Failed to stop $unit: Unit $unit not loaded.\" >&2; exit 5; fi\n" +
                "exit 0\n");
            if (HostPlatform.IsLinux)
            {
                File.SetUnixFileMode(script, (UnixFileMode)0x1ED); // 0755
            }

            _store = new SystemdSchedules(_units, systemdRunning: true, new HostTools(new[] { bin }, _ => null, checkOwners: false), systemdReadsUnitDirectory: true);
        }

        public void Dispose() => Directory.Delete(_root, recursive: true);

        private string Service => _store.ServicePath("nightly");

        private string Timer => _store.TimerPath("nightly");

        /// <summary>One line per call: each argument followed by '|'.</summary>
        private string[] Log => File.Exists(_log) ? File.ReadAllLines(_log) : Array.Empty<string>();

        private static BackupSchedule Nightly() =>
            new BackupSchedule("nightly", new[] { "web01" }, "/srv/repo") { At = "02:30", PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };

        [LinuxFact]
        public void A_timer_left_without_its_service_is_listed_as_incomplete_and_removed_whole()
        {
            _store.Install(Nightly(), CancellationToken.None);
            File.Delete(Service);

            BackupScheduleInfo left = Assert.Single(_store.List(CancellationToken.None));
            Assert.Equal("nightly", left.Name);
            Assert.False(left.IsComplete);
            Assert.False(left.IsCurrent);
            Assert.Equal("vmquiesce-backup-nightly.service", left.Missing);
            Assert.Equal(Timer, left.Location);
            Assert.Empty(left.Vm);
            Assert.Empty(left.Command);

            File.Delete(_log);
            Assert.True(_store.Remove("nightly", CancellationToken.None));
            Assert.Empty(Directory.GetFiles(_units));
            Assert.Equal(new[] { "disable|--now|vmquiesce-backup-nightly.timer|", "daemon-reload|" }, Log);
            Assert.Empty(_store.List(CancellationToken.None));
        }

        [LinuxFact]
        public void A_service_left_without_its_timer_keeps_its_settings_and_is_removed_though_systemd_knows_no_timer()
        {
            _store.Install(Nightly(), CancellationToken.None);
            File.Delete(Timer);

            BackupScheduleInfo left = Assert.Single(_store.List(CancellationToken.None));
            Assert.False(left.IsComplete);
            Assert.False(left.IsCurrent);
            Assert.Equal("vmquiesce-backup-nightly.timer", left.Missing);
            Assert.Equal(new[] { "web01" }, left.Vm);

            File.Delete(_log);
            Assert.True(_store.Remove("nightly", CancellationToken.None));
            Assert.Empty(Directory.GetFiles(_units));
            Assert.Equal(new[] { "disable|--now|vmquiesce-backup-nightly.timer|", "daemon-reload|" }, Log);
        }

        [LinuxFact]
        public void Installing_again_replaces_what_was_left_whole()
        {
            File.WriteAllText(Timer, "[Timer]\nOnCalendar=*-*-* 05:00:00\n");

            BackupScheduleInfo left = Assert.Single(_store.List(CancellationToken.None));
            Assert.False(left.IsComplete);

            _store.Install(Nightly(), CancellationToken.None);
            BackupScheduleInfo whole = Assert.Single(_store.List(CancellationToken.None));
            Assert.True(whole.IsComplete);
            Assert.True(whole.IsCurrent);
            Assert.Null(whole.Missing);
            Assert.Contains("OnCalendar=*-*-* 02:30:00", File.ReadAllText(Timer), StringComparison.Ordinal);
        }

        [LinuxFact]
        public void A_service_whose_settings_line_is_gone_is_incomplete_and_other_files_are_no_schedule()
        {
            _store.Install(Nightly(), CancellationToken.None);
            File.WriteAllLines(Service, File.ReadAllLines(Service).Where(line => !line.StartsWith("# VmQuiesce schedule: ", StringComparison.Ordinal)));
            File.WriteAllText(Path.Combine(_units, "vmquiesce-backup-a b.timer"), string.Empty);
            File.WriteAllText(Path.Combine(_units, "vmquiesce-backup-nightly.service.tmp-0123"), string.Empty);

            BackupScheduleInfo left = Assert.Single(_store.List(CancellationToken.None));
            Assert.Equal("nightly", left.Name);
            Assert.False(left.IsCurrent);
            Assert.Equal("the settings recorded in vmquiesce-backup-nightly.service", left.Missing);
            Assert.Equal(Service, left.Location);
        }

        [Fact]
        public void A_scheduled_task_whose_description_no_longer_holds_its_settings_is_listed_as_incomplete()
        {
            BackupSchedule nightly = Nightly();
            BackupScheduleInfo whole = ScheduledTaskSchedule.FromTask("nightly", nightly.ToJson(), nightly.PowerShellPath, nightly.JobArgumentLine(), "Ready", null, 0x41303, null);
            Assert.True(whole.IsComplete);
            Assert.True(whole.IsCurrent);
            Assert.Null(whole.LastExitCode);

            foreach (string? description in new[] { null, "edited by hand", new BackupSchedule("other", new[] { "web01" }, "/srv/repo") { PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" }.ToJson() })
            {
                BackupScheduleInfo left = ScheduledTaskSchedule.FromTask("nightly", description, nightly.PowerShellPath, nightly.JobArgumentLine(), "Ready", null, null, null);
                Assert.Equal("nightly", left.Name);
                Assert.Equal("\\VmQuiesce\\nightly", left.Location);
                Assert.False(left.IsComplete);
                Assert.False(left.IsCurrent);
                Assert.Empty(left.Command);
            }
        }

        [LinuxFact]
        public void A_unit_that_is_a_FIFO_is_refused_by_name_instead_of_hanging_the_list()
        {
            // A unit folder given with -UnitDirectory may be writable by another user, who puts a FIFO under a schedule's name.
            _store.Install(Nightly(), CancellationToken.None);
            File.Delete(Timer);
            Fifo.Make(Timer);

            IOException refused = Fifo.Within(Timer, () => Assert.ThrowsAny<IOException>(() => _store.List(CancellationToken.None)));

            Assert.Contains($"'{Timer}' is a FIFO", refused.Message);
        }
    }
}
