using System;
using System.IO;
using System.Threading;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Schedule;
using Xunit;

namespace VmQuiesce.Core.Tests.Schedule
{
    /// <summary>
    /// Register and Unregister write, replace and delete units as root in -UnitDirectory, which may lie in a folder
    /// other users can write or be reached through a link one of them made: nothing is written or deleted where such
    /// a folder or link leads, and a link at a unit's own name is replaced or removed itself, never what it leads to.
    /// </summary>
    public sealed class UnitFolderTrustTests : IDisposable
    {
        private const string Precious = "precious\n";
        private const uint OtherUser = 65534;

        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-unit-trust-" + Guid.NewGuid().ToString("N"));
        private readonly string _elsewhere;
        private readonly string _victim;

        public UnitFolderTrustTests()
        {
            _elsewhere = Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            _victim = Path.Combine(_elsewhere, "victim");
            File.WriteAllText(_victim, Precious);
        }

        public void Dispose() => Directory.Delete(_root, recursive: true);

        [LinuxFact]
        public void A_link_at_a_unit_s_name_is_replaced_and_removed_itself_and_the_file_it_leads_to_is_untouched()
        {
            var store = new SystemdSchedules(Directory.CreateDirectory(Path.Combine(_root, "units")).FullName);
            File.CreateSymbolicLink(store.ServicePath("nightly"), _victim);
            File.CreateSymbolicLink(store.TimerPath("nightly"), _victim);

            store.Install(Nightly("02:30"), CancellationToken.None);

            Assert.Equal(Precious, File.ReadAllText(_victim));
            Assert.True(RegularFile.StatNoFollow(store.ServicePath("nightly"))!.Value.IsRegularFile);
            Assert.Contains("OnCalendar=*-*-* 02:30:00", File.ReadAllText(store.TimerPath("nightly")), StringComparison.Ordinal);

            File.Delete(store.ServicePath("nightly"));
            File.Delete(store.TimerPath("nightly"));
            File.CreateSymbolicLink(store.ServicePath("nightly"), _victim);
            File.CreateSymbolicLink(store.TimerPath("nightly"), _victim);

            Assert.True(store.Remove("nightly", CancellationToken.None));

            Assert.Equal(Precious, File.ReadAllText(_victim));
            Assert.Null(RegularFile.StatNoFollow(store.ServicePath("nightly")));
            Assert.Null(RegularFile.StatNoFollow(store.TimerPath("nightly")));
        }

        [LinuxFact]
        public void A_unit_folder_whose_parent_others_may_write_is_refused_before_anything_changes()
        {
            string open = Directory.CreateDirectory(Path.Combine(_root, "open")).FullName;
            var store = new SystemdSchedules(Path.Combine(open, "units"));
            store.Install(Nightly("02:30"), CancellationToken.None);
            string service = File.ReadAllText(store.ServicePath("nightly"));
            File.SetUnixFileMode(open, (UnixFileMode)0x1FF); // 0777: anyone may rename units away and put a link there

            var refused = Assert.Throws<VmQuiesceException>(() => store.Install(Nightly("04:00"), CancellationToken.None));
            Assert.Equal("UnitFolderUnsafe", refused.ErrorId);
            Assert.Contains($"'{open}' has mode 0777", refused.Message, StringComparison.Ordinal);
            Assert.Equal(service, File.ReadAllText(store.ServicePath("nightly")));

            Assert.Equal("UnitFolderUnsafe", Assert.Throws<VmQuiesceException>(() => store.Remove("nightly", CancellationToken.None)).ErrorId);
            Assert.True(File.Exists(store.ServicePath("nightly")));
            Assert.True(File.Exists(store.TimerPath("nightly")));

            var fresh = new SystemdSchedules(Path.Combine(open, "new-units"));
            Assert.Equal("UnitFolderUnsafe", Assert.Throws<VmQuiesceException>(() => fresh.Install(Nightly("02:30"), CancellationToken.None)).ErrorId);
            Assert.False(Directory.Exists(fresh.UnitDirectory));

            // Sticky, as /tmp is: only root may rename root's folder there, so it is fine.
            File.SetUnixFileMode(open, (UnixFileMode)0x3FF); // 01777
            store.Install(Nightly("04:00"), CancellationToken.None);
            Assert.Contains("OnCalendar=*-*-* 04:00:00", File.ReadAllText(store.TimerPath("nightly")), StringComparison.Ordinal);
        }

        [LinuxRootFact]
        public void A_unit_folder_that_is_a_link_another_user_made_is_neither_written_nor_deleted_through()
        {
            string units = Path.Combine(_root, "units");
            File.CreateSymbolicLink(units, _elsewhere);
            Assert.Equal(0, Libc.lchown(units, OtherUser, OtherUser));
            var store = new SystemdSchedules(units);

            var refused = Assert.Throws<VmQuiesceException>(() => store.Install(Nightly("02:30"), CancellationToken.None));
            Assert.Equal("UnitFolderUnsafe", refused.ErrorId);
            Assert.Contains($"made by user id {OtherUser}", refused.Message, StringComparison.Ordinal);
            Assert.Equal(new[] { _victim }, Directory.GetFileSystemEntries(_elsewhere));

            string planted = Path.Combine(_elsewhere, "vmquiesce-backup-nightly.timer");
            File.WriteAllText(planted, Precious);
            Assert.Equal("UnitFolderUnsafe", Assert.Throws<VmQuiesceException>(() => store.Remove("nightly", CancellationToken.None)).ErrorId);
            Assert.Equal(Precious, File.ReadAllText(planted));
        }

        private static BackupSchedule Nightly(string at) =>
            new BackupSchedule("nightly", new[] { "web01" }, "/srv/repo") { At = at, PowerShellPath = "/usr/bin/pwsh", ModulePath = "/m" };
    }
}
