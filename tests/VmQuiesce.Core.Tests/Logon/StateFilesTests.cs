using System;
using System.IO;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    public sealed class StateFilesTests : IDisposable
    {
        private const UnixFileMode SharedLikeTmp = (UnixFileMode)0x3FF; // 01777
        private const UnixFileMode OwnerOnlyFolder = (UnixFileMode)0x1C0; // 0700
        private const UnixFileMode OwnerOnlyFile = (UnixFileMode)0x180; // 0600

        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-state-" + Guid.NewGuid().ToString("N"));

        public StateFilesTests() => Directory.CreateDirectory(_root);

        public void Dispose() => Directory.Delete(_root, recursive: true);

        [LinuxFact]
        public void A_state_file_is_private_and_only_a_folder_made_for_it_is_restricted_an_existing_one_keeps_its_modes()
        {
            // A VMQUIESCE_*_FOLDER or -StateDirectory naming an existing shared folder (here one like /tmp): restricting it
            // to root would lock every other user out of it.
            File.SetUnixFileMode(_root, SharedLikeTmp);
            string inShared = Path.Combine(_root, "record.json");
            string made = Path.Combine(_root, "made");

            StateFiles.WriteProtected(_root, inShared, "{}");
            StateFiles.WriteProtected(made, Path.Combine(made, "record.json"), "{}");

            Assert.Equal(SharedLikeTmp, File.GetUnixFileMode(_root));
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(inShared));
            Assert.Equal(OwnerOnlyFolder, File.GetUnixFileMode(made));
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(Path.Combine(made, "record.json")));
        }

        [ThrowawayUserFact]
        public void A_link_another_user_put_on_the_way_to_the_folder_is_not_written_through_and_their_own_folder_is_fine()
        {
            using var user = ThrowawayUser.Create();
            File.SetUnixFileMode(_root, SharedLikeTmp);
            string rootOnly = Path.Combine(_root, "root-only");
            Directory.CreateDirectory(rootOnly);
            File.SetUnixFileMode(rootOnly, OwnerOnlyFolder);
            string link = Path.Combine(_root, "state");
            Assert.Equal(0, user.Run("/bin/ln", "-s", rootOnly, link).ExitCode);
            string folder = Path.Combine(link, "made");

            var e = Assert.Throws<VmQuiesceException>(() => StateFiles.WriteProtected(folder, Path.Combine(folder, "record.json"), "{}"));

            Assert.Equal("StateFileWriteFailed", e.ErrorId);
            Assert.Contains($"made by user id {user.Uid}", e.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.EnumerateFileSystemEntries(rootOnly));

            // A folder of theirs that is no link: the file is made in it through descriptors, still root's alone.
            string theirs = Path.Combine(_root, "theirs");
            Directory.CreateDirectory(theirs);
            user.Own(theirs);
            StateFiles.WriteProtected(theirs, Path.Combine(theirs, "record.json"), "{}");
            Assert.Equal(OwnerOnlyFile, File.GetUnixFileMode(Path.Combine(theirs, "record.json")));
        }
    }
}
