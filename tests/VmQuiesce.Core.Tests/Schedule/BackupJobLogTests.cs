using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Schedule;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Schedule
{
    /// <summary>A job's log is written as root into a folder a user named (-LogFolder), which may lie in a folder others can write.</summary>
    public sealed class BackupJobLogTests : IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-joblog-" + Guid.NewGuid().ToString("N"));

        public BackupJobLogTests() => Directory.CreateDirectory(_root);

        public void Dispose() => Directory.Delete(_root, recursive: true);

        [LinuxFact]
        public void The_log_is_made_private_in_a_folder_made_for_it()
        {
            var run = new BackupJobResult("nightly", new DateTime(2026, 12, 6, 2, 30, 0, DateTimeKind.Utc));
            run.Finish();
            string folder = Path.Combine(_root, "logs", "nightly");

            run.WriteLog(folder);

            Assert.Equal(Path.Combine(folder, "nightly-20261206T023000Z.log"), run.LogPath);
            Assert.Equal(0x180, RegularFile.StatNoFollow(run.LogPath!)!.Value.Permissions);
            Assert.Equal(0x1C0, RegularFile.StatNoFollow(folder)!.Value.Permissions);
            Assert.Contains(" Done: 0 restore point(s)", File.ReadAllLines(run.LogPath!).Last(), StringComparison.Ordinal);
        }

        [ThrowawayUserFact]
        public void A_log_folder_reached_through_a_link_another_user_made_is_not_written_through()
        {
            using var user = ThrowawayUser.Create();
            File.SetUnixFileMode(_root, (UnixFileMode)0x3FF); // 01777, like /tmp
            string rootOnly = Path.Combine(_root, "root-only");
            Directory.CreateDirectory(rootOnly);
            File.SetUnixFileMode(rootOnly, (UnixFileMode)0x1C0);
            string logs = Path.Combine(_root, "logs");
            Assert.Equal(0, user.Run("/bin/ln", "-s", rootOnly, logs).ExitCode);
            var run = new BackupJobResult("nightly", DateTime.Now);

            var e = Assert.Throws<VmQuiesceException>(() => run.WriteLog(Path.Combine(logs, "nightly")));

            Assert.Equal("JobLogWriteFailed", e.ErrorId);
            Assert.Contains($"made by user id {user.Uid}", e.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.EnumerateFileSystemEntries(rootOnly));
            Assert.Null(run.LogPath);
        }

        [ThrowawayUserFact]
        public void A_log_folder_yet_to_be_made_in_a_folder_of_another_user_is_made_there_for_them()
        {
            // Their home or USB stick: the folder of theirs that exists decides whose the missing ones on the way are.
            using var user = ThrowawayUser.Create();
            string theirs = Path.Combine(_root, "theirs");
            Directory.CreateDirectory(theirs);
            user.Own(theirs);
            string folder = Path.Combine(theirs, "logs", "nightly");
            var run = new BackupJobResult("nightly", new DateTime(2026, 12, 6, 2, 30, 0, DateTimeKind.Utc));
            run.Finish();

            run.WriteLog(folder);

            Assert.Equal(Path.Combine(folder, "nightly-20261206T023000Z.log"), run.LogPath);
            FileStatus log = RegularFile.StatNoFollow(run.LogPath!)!.Value;
            Assert.Equal((0u, 0x180), (log.Uid, log.Permissions));
            FileStatus made = RegularFile.StatNoFollow(folder)!.Value;
            Assert.Equal((user.Uid, 0x1C0), (made.Uid, made.Permissions));
        }
    }
}
