using System;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using VmQuiesce.Core.Config;
using Xunit;

namespace VmQuiesce.Core.Tests.Config
{
    public class VmwareConfigFileTests
    {
        private static readonly DateTime LongAgo = new DateTime(2009, 3, 1, 12, 0, 0, DateTimeKind.Utc);

        [Fact]
        public void AMissingFileReadsAsNothing()
        {
            using var folder = new TempFolder();

            Assert.Null(VmwareConfigFile.TryRead(folder.File("vmvsswriter.cfg")));
        }

        [LinuxFact]
        public void ALinkIsRefusedWithoutReadingWhatItLeadsTo()
        {
            using var folder = new TempFolder();
            using var outside = new TempFolder();
            File.WriteAllText(outside.File("secret.cfg"), "root.password = \"hunter2\"\n");
            string path = folder.File("vm.vmx");
            File.CreateSymbolicLink(path, outside.File("secret.cfg"));

            var error = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.TryRead(path));

            Assert.Equal("ConfigReadFailed", error.ErrorId);
            Assert.Contains("symbolic link", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("hunter2", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void AFileFarLargerThanAConfigurationIsRefusedUnread()
        {
            using var folder = new TempFolder();
            string path = folder.File("vm.vmx");
            File.WriteAllText(path, string.Concat(Enumerable.Repeat("# padding padding padding padding\n", (VmwareConfigFile.MaxBytes / 34) + 1)));

            var error = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.TryRead(path));

            Assert.Equal("ConfigReadFailed", error.ErrorId);
            Assert.Contains("bytes", error.Message, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void AFifoIsRefusedWithoutWaitingForAWriter()
        {
            using var folder = new TempFolder();
            string path = folder.File("vm.vmx");
            HostCommand.RunChecked("mkfifo", new[] { path });

            Task<VmwareConfigDocument?> read = Task.Run(() => VmwareConfigFile.TryRead(path));
            bool finished = ((IAsyncResult)read).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(30));
            if (!finished)
            {
                // Release the blocked read (a writer's open ends the reader's wait) so the test run can end.
                int fd = UnixFiles.OpenAt(Libc.AtFdCwd, path, Libc.OpenWriteOnly | Libc.OpenNonBlocking);
                Libc.close(fd);
            }

            Assert.True(finished, "reading a FIFO waited for a writer");
            var error = Assert.Throws<VmQuiesceException>(() => read.GetAwaiter().GetResult());
            Assert.Equal("ConfigReadFailed", error.ErrorId);
            Assert.Contains("FIFO", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void ANewFileIsCreatedWithoutBackupOrTemporaryFiles()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            var document = new VmwareConfigDocument();
            document.SetValue("vmwriter.overwriteSnapshots", "TRUE");

            Assert.True(VmwareConfigFile.Write(path, document));

            Assert.Equal("vmwriter.overwriteSnapshots = \"TRUE\"\r\n", File.ReadAllText(path));
            Assert.Equal(new[] { "vmvsswriter.cfg" }, folder.Names());
        }

        [Fact]
        public void AnUpdateKeepsThePreviousVersionAsBakAndLeavesNoTemporaryFile()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            byte[] original = Encoding.UTF8.GetBytes("# mine\nvmwriter.overwriteSnapshots = \"FALSE\"\n");
            File.WriteAllBytes(path, original);
            File.WriteAllText(path + ".bak", "an older backup");

            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("vmwriter.overwriteSnapshots", "TRUE");
            Assert.True(VmwareConfigFile.Write(path, document));

            Assert.Equal("# mine\nvmwriter.overwriteSnapshots = \"TRUE\"\n", File.ReadAllText(path));
            Assert.Equal(original, File.ReadAllBytes(path + ".bak"));
            Assert.Equal(new[] { "vmvsswriter.cfg", "vmvsswriter.cfg.bak" }, folder.Names().OrderBy(n => n, StringComparer.Ordinal));
        }

        [UnixFact]
        public void AnUpdateKeepsTheFilesPermissionBits()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "a = \"1\"\n");
            const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            File.SetUnixFileMode(path, OwnerOnly);
            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("a", "2");

            VmwareConfigFile.Write(path, document);

            Assert.Equal("a = \"2\"\n", File.ReadAllText(path));
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(path));
        }

        [ThrowawayUserFact]
        public void AFileSwappedForALinkBetweenItsReadAndItsWriteIsNeitherOpenedNorReplacedThroughIt()
        {
            using var user = ThrowawayUser.Create();
            using var folder = new TempFolder();
            using var outside = new TempFolder();
            File.SetUnixFileMode(folder.Path, (UnixFileMode)0x1FF); // 0777: another user may rename and add files
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "a = \"1\"\n");
            string victim = outside.File("victim");
            File.WriteAllText(victim, "root only\n");
            File.SetUnixFileMode(victim, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("a", "2");
            Assert.Equal(0, user.Run("/bin/rm", path).ExitCode);
            Assert.Equal(0, user.Run("/bin/ln", "-s", victim, path).ExitCode);

            var write = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Write(path, document));
            var remove = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Remove(path));

            Assert.Equal("ConfigWriteFailed", write.ErrorId);
            Assert.Contains("symbolic link", write.Message, StringComparison.Ordinal);
            Assert.Equal("ConfigWriteFailed", remove.ErrorId);
            Assert.True(RegularFile.StatNoFollow(path)!.Value.IsSymbolicLink);
            Assert.Equal("root only\n", File.ReadAllText(victim));
            Assert.Equal(new[] { "vmvsswriter.cfg" }, folder.Names());
        }

        [Fact]
        public void AnUnchangedDocumentIsNotWrittenAndTheTimestampStays()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "vmwriter.overwriteSnapshots = \"TRUE\"\r\n");
            File.SetLastWriteTimeUtc(path, LongAgo);

            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("VMWRITER.OVERWRITESNAPSHOTS", "TRUE");

            Assert.False(VmwareConfigFile.Write(path, document));
            Assert.Equal(LongAgo, File.GetLastWriteTimeUtc(path));
            Assert.Equal(new[] { "vmvsswriter.cfg" }, folder.Names());
        }

        [Fact]
        public void AReadOnlyFileIsAnErrorAndStaysUnchanged()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "vmwriter.overwriteSnapshots = \"FALSE\"\n");
            File.SetAttributes(path, FileAttributes.ReadOnly);
            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("vmwriter.overwriteSnapshots", "TRUE");

            var write = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Write(path, document));
            var remove = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Remove(path));

            Assert.Equal("ConfigFileReadOnly", write.ErrorId);
            Assert.Equal(FailureKind.PermissionDenied, write.Kind);
            Assert.Equal("ConfigFileReadOnly", remove.ErrorId);
            Assert.Contains(path, write.Message, StringComparison.Ordinal);
            Assert.Equal("vmwriter.overwriteSnapshots = \"FALSE\"\n", File.ReadAllText(path));
            Assert.Equal(new[] { "vmvsswriter.cfg" }, folder.Names());
        }

        [WindowsFact]
        public void AFileLockedByAnotherProgramIsAnErrorAndStaysUnchanged()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "a = \"1\"\r\n");
            VmwareConfigDocument document = VmwareConfigFile.TryRead(path)!;
            document.SetValue("a", "2");

            using (new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None))
            {
                Assert.Equal("ConfigFileLocked", Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Write(path, document)).ErrorId);
                Assert.Equal("ConfigFileLocked", Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.TryRead(path)).ErrorId);
            }

            Assert.Equal("a = \"1\"\r\n", File.ReadAllText(path));
            Assert.Equal(new[] { "vmvsswriter.cfg" }, folder.Names());
        }

        [Fact]
        public void AMissingFolderIsAnErrorNamingTheFolder()
        {
            using var folder = new TempFolder();
            string missing = Path.Combine(folder.Path, "VMware Server");
            string path = Path.Combine(missing, "vmvsswriter.cfg");
            var document = new VmwareConfigDocument();
            document.SetValue("a", "1");

            var read = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.TryRead(path));
            var write = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.Write(path, document));

            Assert.Equal("ConfigFolderNotFound", read.ErrorId);
            Assert.Equal("ConfigFolderNotFound", write.ErrorId);
            Assert.Contains(missing, write.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(missing));
        }

        [Fact]
        public void AMalformedFileIsAnErrorNamingThePathAndLine()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "# ok\r\nvmwriter.overwriteSnapshots = TRUE\" \r\n");

            var failure = Assert.Throws<VmQuiesceException>(() => VmwareConfigFile.TryRead(path));

            Assert.Equal("MalformedConfigLine", failure.ErrorId);
            Assert.StartsWith(path + ", line 2: ", failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void RemovingMovesTheFileToBakReplacingAnOlderOne()
        {
            using var folder = new TempFolder();
            string path = folder.File("vmvsswriter.cfg");
            File.WriteAllText(path, "current");
            File.WriteAllText(path + ".bak", "older");

            Assert.True(VmwareConfigFile.Remove(path));
            Assert.False(VmwareConfigFile.Remove(path));

            Assert.Equal(new[] { "vmvsswriter.cfg.bak" }, folder.Names());
            Assert.Equal("current", File.ReadAllText(path + ".bak"));
        }
    }
}
