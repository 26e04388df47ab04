using System;
using System.IO;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// The records later commands act on (instant restores, QEMU runs) live in the user's runtime folder; they are read
    /// or written only when it and the VmQuiesce folders below it are real folders of this user that neither group nor
    /// others may write. A temporary folder stands for the runtime folder (/run or $XDG_RUNTIME_DIR) here.
    /// </summary>
    public sealed class RuntimeRecordFolderTests : IDisposable
    {
        private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

        private readonly TempFolder _runtime = new TempFolder();

        public void Dispose() => _runtime.Dispose();

        private string VmQuiesceFolder => _runtime.File("vmquiesce");

        private string RestoreFolder => Path.Combine(VmQuiesceFolder, "instant-restores");

        private static InstantRestoreRecord Record() => new InstantRestoreRecord("restore-1", "web01", "point-1", "/repo", "/vms/web01", new[] { "/vms/web01/disk0.qcow2" });

        private static void AssertRefused(string folder, string found, Action action)
        {
            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(action);
            Assert.Equal("RecordFolderUntrusted", refused.ErrorId);
            Assert.Contains($"'{folder}' is {found}", refused.Message, StringComparison.Ordinal);
            Assert.Contains("neither group nor others may write", refused.Message, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void The_vmquiesce_folders_are_made_0700_and_the_records_read_back()
        {
            using (RuntimeFolder.UseRootForTests(_runtime.Path))
            {
                Record().Save();

                Assert.Equal(OwnerOnly, File.GetUnixFileMode(VmQuiesceFolder));
                Assert.Equal(OwnerOnly, File.GetUnixFileMode(RestoreFolder));
                Assert.Equal("restore-1", Assert.Single(InstantRestoreRecord.LoadAll()).Id);
            }
        }

        [LinuxTheory]
        [InlineData("runtime", UnixFileMode.GroupWrite)]
        [InlineData("vmquiesce", UnixFileMode.OtherWrite)]
        [InlineData("instant-restores", UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)]
        public void A_folder_others_may_write_is_refused_before_a_record_is_read_or_written(string which, UnixFileMode extra)
        {
            using (RuntimeFolder.UseRootForTests(_runtime.Path))
            {
                Record().Save();
                string folder = which == "runtime" ? _runtime.Path : which == "vmquiesce" ? VmQuiesceFolder : RestoreFolder;
                File.SetUnixFileMode(folder, OwnerOnly | extra);

                AssertRefused(folder, "a folder of mode", () => InstantRestoreRecord.LoadAll());
                AssertRefused(folder, "a folder of mode", () => Record().Save());
            }
        }

        [LinuxFact]
        public void A_link_in_place_of_the_vmquiesce_folder_is_not_followed()
        {
            using var elsewhere = new TempFolder();
            RecordFile.Save(Path.Combine(elsewhere.Path, "instant-restores"), "restore-1", Record().ToJson());
            Directory.CreateSymbolicLink(VmQuiesceFolder, elsewhere.Path);

            using (RuntimeFolder.UseRootForTests(_runtime.Path))
            {
                AssertRefused(VmQuiesceFolder, "a symbolic link", () => InstantRestoreRecord.LoadAll());
                AssertRefused(VmQuiesceFolder, "a symbolic link", () => Record().Save());
            }
        }

        [LinuxRootFact]
        public void A_vmquiesce_folder_of_another_user_is_refused()
        {
            using (RuntimeFolder.UseRootForTests(_runtime.Path))
            {
                Record().Save();
                Assert.Equal(0, HostCommand.Run("/bin/chown", new[] { "nobody", VmQuiesceFolder }).ExitCode);

                AssertRefused(VmQuiesceFolder, "a folder of user id", () => InstantRestoreRecord.LoadAll());
            }
        }

        [LinuxFact]
        public void The_qemu_run_records_folder_is_checked_the_same_way()
        {
            string socket = _runtime.File("vm1.qmp");
            using (RuntimeFolder.UseRootForTests(_runtime.Path))
            {
                QemuRunRecord run = QemuRunRecord.Begin("vm1", socket, null, null, Array.Empty<RecordedOverlay>(), null);
                Assert.Equal(VmQuiesceFolder, Path.GetDirectoryName(run.Path));
                Assert.Equal(OwnerOnly, File.GetUnixFileMode(VmQuiesceFolder));
                Assert.Equal(run.RunId, QemuRunRecord.Load(socket)!.RunId);

                File.SetUnixFileMode(_runtime.Path, OwnerOnly | UnixFileMode.OtherWrite);
                AssertRefused(_runtime.Path, "a folder of mode", () => QemuRunRecord.Load(socket));
                AssertRefused(_runtime.Path, "a folder of mode", () => run.MarkThawed(null));
                run.EndRun();
            }
        }
    }
}
