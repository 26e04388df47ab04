using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Schedule;
using Xunit;

namespace VmQuiesce.Core.Tests.Schedule
{
    public sealed class BackupScheduleTests
    {
        private static BackupSchedule Valid() =>
            new BackupSchedule("nightly", new[] { "web01", "/run/vms/db.qmp" }, "/srv/repo")
            {
                At = "02:30",
                KeepDaily = 7,
                PowerShellPath = "/usr/bin/pwsh",
                ModulePath = "/usr/local/share/powershell/Modules/VmQuiesce",
            };

        [Theory]
        [InlineData("../evil", "02:30", "ScheduleNameInvalid")]
        [InlineData("a b", "02:30", "ScheduleNameInvalid")]
        [InlineData("nightly", "25:00", "ScheduleTimeInvalid")]
        [InlineData("nightly", "3:00pm", "ScheduleTimeInvalid")]
        public void Settings_that_cannot_make_a_job_are_refused_with_their_own_error(string name, string at, string errorId)
        {
            var schedule = new BackupSchedule(name, new[] { "web01" }, "/srv/repo") { At = at, PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };

            Assert.Equal(errorId, Assert.Throws<VmQuiesceException>(schedule.Validate).ErrorId);
        }

        [Fact]
        public void A_relative_powershell_path_and_a_line_break_in_a_vm_are_refused()
        {
            var relative = new BackupSchedule("n", new[] { "web01" }, "/srv/repo") { PowerShellPath = "pwsh", ModulePath = "/m" };
            Assert.Equal("SchedulePathNotAbsolute", Assert.Throws<VmQuiesceException>(relative.Validate).ErrorId);
            var broken = new BackupSchedule("n", new[] { "web01\nrm -rf /" }, "/srv/repo") { PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };
            Assert.Equal("ScheduleTextInvalid", Assert.Throws<VmQuiesceException>(broken.Validate).ErrorId);
        }

        [Fact]
        public void A_line_break_in_the_s3_endpoint_or_profile_is_refused_before_a_unit_is_written()
        {
            // An Import-Csv cell may hold line breaks, and [Uri] keeps them: in the unit it would be a directive of its own.
            var endpoint = new BackupSchedule("offsite", new[] { "web01" }, "s3://backups/host-1")
            {
                S3Endpoint = new Uri("http://rgw.example.net:7480/x\nExecStart=/usr/bin/chmod 4755 /usr/bin/bash\n#"),
                PowerShellPath = "/usr/bin/pwsh",
                ModulePath = "/m",
            };
            var profile = new BackupSchedule("offsite", new[] { "web01" }, "s3://backups/host-1") { S3ProfileName = "p\nExecStart=/bin/true", PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };

            Assert.Equal("ScheduleTextInvalid", Assert.Throws<VmQuiesceException>(endpoint.Validate).ErrorId);
            Assert.Equal("ScheduleTextInvalid", Assert.Throws<VmQuiesceException>(profile.Validate).ErrorId);
            Assert.Throws<InvalidOperationException>(() => SystemdSchedules.Quote("a\nExecStart=/bin/true"));
        }

        [Fact]
        public void The_job_imports_the_module_by_path_and_exits_with_the_job_s_exit_code()
        {
            BackupSchedule schedule = Valid();
            schedule.Validate();

            Assert.Equal(
                "Import-Module -Name '/usr/local/share/powershell/Modules/VmQuiesce' -ErrorAction Stop; " +
                "exit (Invoke-VmBackupJob -Name 'nightly' -Vm 'web01','/run/vms/db.qmp' -Repository '/srv/repo' -Consistency FileSystem -KeepDaily 7).ExitCode",
                schedule.JobScript());
            Assert.Equal(new[] { "-NoProfile", "-NonInteractive", "-Command", schedule.JobScript() }, schedule.JobArguments());
        }

        [Fact]
        public void A_job_into_an_s3_repository_carries_its_endpoint_and_no_secret()
        {
            var schedule = new BackupSchedule("offsite", new[] { "web01" }, "s3://backups/host-1")
            {
                S3Endpoint = new Uri("http://rgw.example.net:7480"),
                PowerShellPath = "/usr/bin/pwsh",
                ModulePath = "/usr/local/share/powershell/Modules/VmQuiesce",
            };
            schedule.Validate();

            Assert.Contains("-Repository 's3://backups/host-1' -Consistency", schedule.JobScript(), StringComparison.Ordinal);
            Assert.Contains("-S3Endpoint 'http://rgw.example.net:7480'", schedule.JobScript(), StringComparison.Ordinal);
            Assert.Equal(schedule.JobScript(), BackupSchedule.FromJson(schedule.ToJson())!.JobScript());
            var withPassword = new BackupSchedule("offsite", new[] { "web01" }, "s3://backups/host-1")
            {
                S3Endpoint = new Uri("http://writer:secret-in-url@rgw.example.net"),
                PowerShellPath = "/usr/bin/pwsh",
                ModulePath = "/usr/local/share/powershell/Modules/VmQuiesce",
            };
            var refused = Assert.Throws<VmQuiesceException>(withPassword.Validate);
            Assert.Equal("ScheduleS3EndpointInvalid", refused.ErrorId);
            Assert.DoesNotContain("secret-in-url", refused.Message, StringComparison.Ordinal);
            Assert.Equal("InvalidS3Repository", Assert.Throws<VmQuiesceException>(new BackupSchedule("offsite", new[] { "web01" }, "s3://Not_A_Bucket") { PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" }.Validate).ErrorId);
        }

        [Fact]
        public void A_change_tracked_schedule_runs_the_job_with_change_tracking_and_its_verification_interval()
        {
            var schedule = new BackupSchedule("nightly", new[] { "web01" }, "/srv/repo") { VerifyChangeTrackingEvery = 7, PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };
            schedule.Validate();

            Assert.EndsWith("-Consistency FileSystem -ChangeTracking -VerifyChangeTrackingEvery 7).ExitCode", schedule.JobScript(), StringComparison.Ordinal);
            BackupSchedule back = BackupSchedule.FromJson(schedule.ToJson())!;
            Assert.True(back.TracksChanges);
            Assert.Equal(7, back.VerifyChangeTrackingEvery);
            Assert.Equal(schedule.JobScript(), back.JobScript());
            Assert.EndsWith("-ChangeTracking).ExitCode", (new BackupSchedule("n", new[] { "web01" }, "/srv/repo") { ChangeTracking = true }).JobScript(), StringComparison.Ordinal);
            Assert.DoesNotContain("ChangeTracking", Valid().JobScript(), StringComparison.Ordinal);
            // A schedule without it records what it recorded before change tracking existed: installed units stay current.
            Assert.DoesNotContain("changeTracking", Valid().ToJson(), StringComparison.Ordinal);

            var negative = new BackupSchedule("n", new[] { "web01" }, "/srv/repo") { VerifyChangeTrackingEvery = -1, PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };
            Assert.Equal("ScheduleVerifyIntervalInvalid", Assert.Throws<VmQuiesceException>(negative.Validate).ErrorId);
        }

        [Fact]
        public void Verification_is_due_every_nth_tracked_backup_counted_from_the_last_verified_point()
        {
            // Newest last: day 1 verified, then days 2 and 3 tracked, day 4 untracked (not counted).
            var points = new[] { Point(1, verified: true), Point(2, verified: false), Point(3, verified: false), Point(4, verified: null) };

            Assert.False(BackupSchedule.IsVerificationDue(points, 4)); // 2 tracked since the verified one; the 4th backup verifies
            Assert.True(BackupSchedule.IsVerificationDue(points, 3));
            Assert.True(BackupSchedule.IsVerificationDue(points, 1));
            Assert.False(BackupSchedule.IsVerificationDue(points, 0));
            Assert.False(BackupSchedule.IsVerificationDue(points.Take(1), 2)); // the verified point is the newest
            Assert.True(BackupSchedule.IsVerificationDue(points.Skip(1), 3)); // never verified: counted from the first
            Assert.False(BackupSchedule.IsVerificationDue(Array.Empty<RestorePoint>(), 2));
        }

        /// <summary>A restore point of day <paramref name="day"/> with one disk: tracked (verified or not), or untracked when null.</summary>
        private static RestorePoint Point(int day, bool? verified)
        {
            var file = new RestorePointFile("disk0.qcow2", "/vm/disk0.qcow2", 0, Array.Empty<string?>())
            {
                ChangeTrackingValue = verified == null ? null : new ChangeTrackingRecord("disk0", "/vm/disk0.qcow2", 0, "vmquiesce-b", persistent: true) { Verified = verified.Value },
            };
            return new RestorePoint("p" + day, "web01", "host", "Qemu", new DateTime(2026, 3, day, 1, 0, 0, DateTimeKind.Utc), new DateTime(2026, 3, day, 1, 1, 0, DateTimeKind.Utc),
                null, new QuiesceRecord(Consistency.FileSystem, Array.Empty<string>(), 0, "None"), true, null, 1024 * 1024, 0, 0, new[] { file });
        }

        [Fact]
        public void Every_quote_powershell_knows_is_doubled()
        {
            Assert.Equal("'a''b\u2018\u2018c\u201B\u201Bd'", PowerShellText.SingleQuoted("a'b\u2018c\u201Bd"));
        }

        [Fact]
        public void The_recorded_settings_read_back_whole_and_other_text_is_no_schedule()
        {
            BackupSchedule schedule = Valid();
            BackupSchedule back = BackupSchedule.FromJson(schedule.ToJson())!;

            Assert.Equal(schedule.Vm, back.Vm);
            Assert.Equal(schedule.JobScript(), back.JobScript());
            Assert.Equal(7, back.KeepDaily);
            Assert.Null(BackupSchedule.FromJson("{\"name\": 1}"));
            Assert.Null(BackupSchedule.FromJson("not json"));
        }

        [Fact]
        public void The_job_finds_an_installed_powershell_or_says_where_it_looked()
        {
            string last = JobEnvironment.PowerShellCandidates().Last();
            Assert.Equal(last, JobEnvironment.FindPowerShell(path => path == last));

            var error = Assert.Throws<VmQuiesceException>(() => JobEnvironment.FindPowerShell(_ => false));
            Assert.Equal("PowerShellNotFound", error.ErrorId);
            Assert.Contains(JobEnvironment.PowerShellCandidates()[0], error.Message);
        }

        [Theory]
        [InlineData("/usr/local/share/powershell/Modules/VmQuiesce/1.2.0", "/usr/local/share/powershell/Modules/VmQuiesce")]
        [InlineData("/usr/local/share/powershell/Modules/VmQuiesce/1.2.0/", "/usr/local/share/powershell/Modules/VmQuiesce")]
        [InlineData("/src/vmquiesce/out/build", "/src/vmquiesce/out/build")]
        [InlineData("/opt/Other/1.0.0", "/opt/Other/1.0.0")]
        public void The_job_imports_the_module_folder_above_its_version_so_an_update_is_what_runs_next(string moduleBase, string expected)
        {
            Assert.Equal(expected, JobEnvironment.ModuleImportPath(moduleBase));
        }

        [Fact]
        public void A_module_in_a_user_s_home_is_named_as_installed_for_that_user_only()
        {
            Assert.Contains("current user only", JobEnvironment.WhyNotForJobAccount("/home/alice/.local/share/powershell/Modules/VmQuiesce", "/home/alice", windows: false));
            Assert.Null(JobEnvironment.WhyNotForJobAccount("/usr/local/share/powershell/Modules/VmQuiesce", "/home/alice", windows: false));
            Assert.Null(JobEnvironment.WhyNotForJobAccount("/root/.local/share/powershell/Modules/VmQuiesce", "/root", windows: false));
            Assert.Contains("SYSTEM", JobEnvironment.WhyNotForJobAccount(@"C:\Users\alice\Documents\PowerShell\Modules\VmQuiesce", @"C:\Users\alice", windows: true));
        }

        [Fact]
        public void The_exit_code_is_0_only_when_every_vm_made_it_and_retention_succeeded()
        {
            var clean = new BackupJobResult("n", DateTime.Now);
            clean.SetRetention(true, "0 removed");
            clean.Finish();
            Assert.Equal(0, clean.ExitCode);

            var vmFailed = new BackupJobResult("n", DateTime.Now);
            BackupJobFailure failure = vmFailed.AddFailure("web01", "ConsistencyNotReached", "reached Crash\nbelow FileSystem");
            vmFailed.SetRetention(false, "locked");
            Assert.Equal(BackupSchedule.ExitVmFailed, vmFailed.ExitCode);
            Assert.Equal("FAILED web01: ConsistencyNotReached: reached Crash below FileSystem", failure.ToString());

            var retentionFailed = new BackupJobResult("n", DateTime.Now);
            retentionFailed.SetRetention(false, "RepositoryLocked: held by another process");
            Assert.Equal(BackupSchedule.ExitRetentionFailed, retentionFailed.ExitCode);
        }

        [Fact]
        public void Systemd_s_run_state_gives_last_run_exit_code_and_next_run()
        {
            string timer = "UnitFileState=enabled\nLastTriggerUSec=@1764817200\nNextElapseUSecRealtime=@1764903600\n";
            string service = "ExecMainStatus=2\nExecMainExitTimestamp=@1764817260\n";

            BackupScheduleInfo info = SystemdSchedules.FromShow(Valid(), "/etc/systemd/system/vmquiesce-backup-nightly.service", true, new[] { "/usr/bin/pwsh" }, timer, service);

            Assert.True(info.Enabled);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1764817200).LocalDateTime, info.LastRunTime);
            Assert.Equal(2, info.LastExitCode);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1764903600).LocalDateTime, info.NextRunTime);

            BackupScheduleInfo never = SystemdSchedules.FromShow(Valid(), "x", true, new[] { "/usr/bin/pwsh" },
                "UnitFileState=disabled\nLastTriggerUSec=n/a\nNextElapseUSecRealtime=\n", "ExecMainStatus=0\nExecMainExitTimestamp=\n");
            Assert.False(never.Enabled);
            Assert.Null(never.LastRunTime);
            Assert.Null(never.LastExitCode);
            Assert.Null(never.NextRunTime);
        }

        [Fact]
        public void Units_in_a_folder_systemd_does_not_read_are_written_listed_and_removed_without_systemctl()
        {
            string folder = Path.Combine(Path.GetTempPath(), "vmq-units-" + Guid.NewGuid().ToString("N"));
            try
            {
                // systemd "runs", but not for this folder; and no systemctl can be found: none may be run.
                var store = new SystemdSchedules(folder, systemdRunning: true, new HostTools(new[] { folder + "/none" }, _ => null, checkOwners: false));
                Assert.False(store.SystemdManages);

                store.Install(Valid(), CancellationToken.None);
                BackupScheduleInfo listed = Assert.Single(store.List(CancellationToken.None));
                Assert.True(listed.IsCurrent);
                Assert.Null(listed.Enabled);
                Assert.Equal(new DateTime(1, 1, 1, 2, 30, 0).TimeOfDay, listed.NextRunTime!.Value.TimeOfDay);

                Assert.True(store.Remove("nightly", CancellationToken.None));
                Assert.False(store.Remove("nightly", CancellationToken.None));
                Assert.Empty(Directory.GetFiles(folder));
            }
            finally
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
            }
        }

        [Fact]
        public void The_next_daily_run_is_today_when_the_time_is_still_ahead_else_tomorrow()
        {
            var now = new DateTime(2026, 12, 4, 2, 0, 0);
            Assert.Equal(new DateTime(2026, 12, 4, 2, 30, 0), BackupScheduleInfo.NextDaily(TimeSpan.FromMinutes(150), now));
            Assert.Equal(new DateTime(2026, 12, 5, 1, 0, 0), BackupScheduleInfo.NextDaily(TimeSpan.FromHours(1), now));
        }
    }
}
