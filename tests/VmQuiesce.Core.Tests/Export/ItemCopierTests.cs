using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// Restore-VmBackupItem's copier writing into a -Destination another local user may change while it runs (a folder
    /// they made first in /tmp, or one under their home): nothing is written, and no mode set, through a link they plant.
    /// </summary>
    public sealed class ItemCopierTests : IDisposable
    {
        private static readonly uint Private = Convert.ToUInt32("700", 8);

        private readonly string _root = Path.Combine(Path.GetTempPath(), "fix7-copy-" + Guid.NewGuid().ToString("N").Substring(0, 8));

        public ItemCopierTests() => Directory.CreateDirectory(_root);

        private string Guest => Path.Combine(_root, "guest", "alice");

        private string Destination => Path.Combine(_root, "dest");   // the other user's folder

        private string Outside => Path.Combine(_root, "outside");    // stands for /root/.ssh, /etc/cron.d...

        public void Dispose()
        {
            if (Directory.Exists(_root))
            {
                Directory.Delete(_root, recursive: true);
            }
        }

        [LinuxFact]
        public void A_folder_swapped_for_a_link_while_its_item_is_copied_is_not_written_through_and_the_link_target_keeps_its_mode()
        {
            Directory.CreateDirectory(Path.Combine(Guest, "a"));
            Directory.CreateDirectory(Path.Combine(Guest, "z"));
            for (int i = 0; i < 3000; i++)
            {
                File.WriteAllText(Path.Combine(Guest, "a", i.ToString("D5")), "x");
            }

            File.WriteAllText(Path.Combine(Guest, "z", "authorized_keys"), "ssh-ed25519 AAAA guest-key\n");
            Libc.chmod(Guest, Convert.ToUInt32("777", 8));
            Directory.CreateDirectory(Path.Combine(Outside, "a"));
            Libc.chmod(Outside, Private);
            Directory.CreateDirectory(Destination);

            // The other user: as soon as the copy's folder (made under a name of its own, then renamed to dest/alice) has
            // its 'a', moves it aside and links its name -> outside.
            string copied = Path.Combine(Destination, "alice");
            string? making = null;
            var racer = new Thread(() =>
            {
                var until = DateTime.UtcNow.AddSeconds(20);
                while ((making = Directory.GetDirectories(Destination).FirstOrDefault(folder => Directory.Exists(Path.Combine(folder, "a")))) == null && DateTime.UtcNow < until)
                {
                }

                Directory.Move(making!, Path.Combine(Destination, "moved"));
                File.CreateSymbolicLink(making!, Outside);
            });
            racer.Start();
            VmQuiesceException changed;
            try
            {
                changed = Assert.Throws<VmQuiesceException>(() => ItemCopier.Copy(Guest, copied, force: false, new RestoredItem("disk0/home/alice", copied), CancellationToken.None));
            }
            finally
            {
                racer.Join();
            }

            // Nothing is put in place: the name the copy was made under is a link now, not what it made (the link is removed).
            Assert.Equal("ItemDestinationChanged", changed.ErrorId);
            Assert.False(RegularFile.StatNoFollow(copied).HasValue);
            Assert.False(RegularFile.StatNoFollow(making!).HasValue);
            Assert.False(File.Exists(Path.Combine(Outside, "z", "authorized_keys")), "a guest file was written outside the destination");
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Outside, "a")));
            Assert.Equal(Private, UnixFiles.Stat(Outside).Mode & 0xFFF);

            // What was copied is all in the folder the copier made, wherever its owner moved it.
            Assert.Equal("ssh-ed25519 AAAA guest-key\n", File.ReadAllText(Path.Combine(Destination, "moved", "z", "authorized_keys")));
            Assert.Equal(3000, Directory.GetFiles(Path.Combine(Destination, "moved", "a")).Length);
        }

        [LinuxRootFact]
        public void Copied_files_and_folders_keep_the_guest_owner_mode_and_times_but_never_setuid()
        {
            Directory.CreateDirectory(Path.Combine(Guest, "bin"));
            string program = Path.Combine(Guest, "bin", "tool");
            File.WriteAllText(program, "#!/bin/sh\n");
            var written = new DateTime(2001, 2, 3, 4, 5, 6, DateTimeKind.Utc);
            File.SetLastWriteTimeUtc(program, written);
            Assert.Equal(0, Libc.lchown(program, 65534, 65533));
            Assert.Equal(0, Libc.chmod(program, Convert.ToUInt32("4750", 8)));
            Directory.SetLastWriteTimeUtc(Path.Combine(Guest, "bin"), written);
            Assert.Equal(0, Libc.lchown(Path.Combine(Guest, "bin"), 65534, 65534));
            Assert.Equal(0, Libc.chmod(Path.Combine(Guest, "bin"), Convert.ToUInt32("555", 8)));
            Directory.CreateDirectory(Destination);

            string copied = Path.Combine(Destination, "alice");
            var result = new RestoredItem("disk0/home/alice", copied);
            ItemCopier.Copy(Guest, copied, force: false, result, CancellationToken.None);

            FileStatus file = UnixFiles.Stat(Path.Combine(copied, "bin", "tool"));
            Assert.Equal((65534u, 65533u, Convert.ToUInt32("750", 8)), (file.Uid, file.Gid, file.Mode & 0xFFF));
            Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(copied, "bin", "tool")));
            FileStatus folder = UnixFiles.Stat(Path.Combine(copied, "bin"));
            Assert.Equal((65534u, 65534u, Convert.ToUInt32("555", 8)), (folder.Uid, folder.Gid, folder.Mode & 0xFFF));
            Assert.Equal(written, Directory.GetLastWriteTimeUtc(Path.Combine(copied, "bin")));
            Assert.Equal((1L, 10L), (result.Files, result.Bytes));
        }

        [LinuxRootFact]
        public void Owner_gives_every_copied_file_folder_and_hard_link_its_ids_and_still_never_setuid()
        {
            Directory.CreateDirectory(Path.Combine(Guest, "bin"));
            string program = Path.Combine(Guest, "bin", "tool");
            File.WriteAllText(program, "#!/bin/sh\n");
            Assert.Equal(0, Libc.link(program, Path.Combine(Guest, "tool-again")));
            Assert.Equal(0, Libc.chmod(program, Convert.ToUInt32("6750", 8)));
            foreach (string guestOwned in new[] { Guest, Path.Combine(Guest, "bin"), program })
            {
                Assert.Equal(0, Libc.lchown(guestOwned, 4242, 4343)); // ids some other host account may have
            }

            Directory.CreateDirectory(Destination);
            string copied = Path.Combine(Destination, "alice");

            // Not the user running the copy (root): the hard link is made to a file already given to someone else.
            PosixUser nobody = PosixUser.Find("nobody")!;
            ItemCopier.Copy(Guest, copied, force: false, new RestoredItem("disk0/home/alice", copied), CancellationToken.None, ItemOwner.Resolve("nobody", null));

            foreach (string made in new[] { copied, Path.Combine(copied, "bin"), Path.Combine(copied, "bin", "tool"), Path.Combine(copied, "tool-again") })
            {
                FileStatus stat = UnixFiles.Stat(made);
                Assert.Equal((nobody.Uid, nobody.Gid), (stat.Uid, stat.Gid));
            }

            FileStatus file = UnixFiles.Stat(Path.Combine(copied, "bin", "tool"));
            Assert.Equal((Convert.ToUInt32("750", 8), 2u), (file.Mode & 0xFFF, file.Links));
        }

        [LinuxRootFact]
        public void Group_alone_replaces_only_the_group_and_a_numeric_owner_needs_no_host_account()
        {
            Directory.CreateDirectory(Guest);
            File.WriteAllText(Path.Combine(Guest, "notes"), "guest\n");
            Assert.Equal(0, Libc.lchown(Path.Combine(Guest, "notes"), 4242, 4343));
            Directory.CreateDirectory(Destination);

            string groupOnly = Path.Combine(Destination, "group-only");
            ItemCopier.Copy(Path.Combine(Guest, "notes"), groupOnly, force: false, new RestoredItem("disk0/notes", groupOnly), CancellationToken.None, ItemOwner.Resolve(null, "0"));
            string numeric = Path.Combine(Destination, "numeric");
            ItemCopier.Copy(Path.Combine(Guest, "notes"), numeric, force: false, new RestoredItem("disk0/notes", numeric), CancellationToken.None, ItemOwner.Resolve("4999999", "4888888"));

            Assert.Equal((4242u, 0u), (UnixFiles.Stat(groupOnly).Uid, UnixFiles.Stat(groupOnly).Gid));
            Assert.Equal((4999999u, 4888888u), (UnixFiles.Stat(numeric).Uid, UnixFiles.Stat(numeric).Gid));
        }

        [LinuxFact]
        public void An_owner_or_group_this_host_does_not_know_is_refused_by_name_and_no_owner_keeps_the_guest_ids()
        {
            VmQuiesceException user = Assert.Throws<VmQuiesceException>(() => ItemOwner.Resolve("no-such-user-vmq", null));
            Assert.Equal(("ItemOwnerNotFound", "no-such-user-vmq"), (user.ErrorId, user.Target as string));
            Assert.Contains("'no-such-user-vmq' (-Owner)", user.Message);
            Assert.Contains("expected a user name or a numeric user id", user.Message);

            VmQuiesceException group = Assert.Throws<VmQuiesceException>(() => ItemOwner.Resolve("root", "no-such-group-vmq"));
            Assert.Equal("no-such-group-vmq", group.Target as string);
            Assert.Equal("ItemGroupNotFound", group.ErrorId);
            Assert.Contains("'no-such-group-vmq' (-Group)", group.Message);

            // A uid no account has has no group of its own: asked for, not guessed. -1 is chown's "leave as it is", never an id.
            Assert.Equal("ItemGroupNotFound", Assert.Throws<VmQuiesceException>(() => ItemOwner.Resolve("4999999", null)).ErrorId);
            Assert.Equal("ItemOwnerNotFound", Assert.Throws<VmQuiesceException>(() => ItemOwner.Resolve("4294967295", "0")).ErrorId);
            Assert.Null(ItemOwner.Resolve(null, null));
        }

        [LinuxFact]
        public void Force_replaces_a_link_at_the_destination_itself_and_leaves_what_it_points_to_alone()
        {
            Directory.CreateDirectory(Guest);
            File.WriteAllText(Path.Combine(Guest, "authorized_keys"), "guest-key\n");
            Directory.CreateDirectory(Outside);
            File.WriteAllText(Path.Combine(Outside, "keep"), "host\n");
            Libc.chmod(Outside, Private);
            Directory.CreateDirectory(Destination);
            string copied = Path.Combine(Destination, "alice");
            File.CreateSymbolicLink(copied, Outside);

            Assert.Equal("ItemExists", Assert.Throws<VmQuiesceException>(() =>
                ItemCopier.Copy(Guest, copied, force: false, new RestoredItem("disk0/home/alice", copied), CancellationToken.None)).ErrorId);
            ItemCopier.Copy(Guest, copied, force: true, new RestoredItem("disk0/home/alice", copied), CancellationToken.None);

            Assert.False(RegularFile.StatNoFollow(copied)?.IsSymbolicLink ?? true);
            Assert.Equal("guest-key\n", File.ReadAllText(Path.Combine(copied, "authorized_keys")));
            Assert.Equal(new[] { Path.Combine(Outside, "keep") }, Directory.GetFileSystemEntries(Outside));
            Assert.Equal(Private, UnixFiles.Stat(Outside).Mode & 0xFFF);
        }

        [LinuxRootFact]
        public void A_destination_that_is_or_passes_through_a_link_another_user_made_is_refused_before_anything_is_written()
        {
            Directory.CreateDirectory(Guest);
            File.WriteAllText(Path.Combine(Guest, "authorized_keys"), "guest-key\n");
            Directory.CreateDirectory(Outside);
            Libc.chmod(Outside, Private);
            string theirs = Path.Combine(_root, "theirs");
            File.CreateSymbolicLink(theirs, Outside);
            Assert.Equal(0, Libc.lchown(theirs, 65534, 65534));

            foreach (string destination in new[] { theirs, Path.Combine(theirs, "below") })
            {
                string copied = Path.Combine(destination, "alice");
                VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => ItemCopier.Copy(Guest, copied, force: true, new RestoredItem("disk0/home/alice", copied), CancellationToken.None));

                Assert.Equal("ItemDestinationUnsafe", e.ErrorId);
            }

            Assert.Empty(Directory.GetFileSystemEntries(Outside));
            Assert.Equal(Private, UnixFiles.Stat(Outside).Mode & 0xFFF);
        }

        [LinuxFact]
        public void Force_replaces_a_hard_link_at_the_destination_and_leaves_the_file_it_shares_alone()
        {
            Directory.CreateDirectory(Guest);
            File.WriteAllText(Path.Combine(Guest, "authorized_keys"), "guest-key\n");
            Directory.CreateDirectory(Outside);
            string host = Path.Combine(Outside, "shadow");
            File.WriteAllText(host, "host secret\n");
            Directory.CreateDirectory(Destination);
            string copied = Path.Combine(Destination, "authorized_keys");
            Assert.Equal(0, Libc.link(host, copied));

            ItemCopier.Copy(Path.Combine(Guest, "authorized_keys"), copied, force: true, new RestoredItem("disk0/home/alice/authorized_keys", copied), CancellationToken.None);

            Assert.Equal("guest-key\n", File.ReadAllText(copied));
            Assert.Equal("host secret\n", File.ReadAllText(host));
            Assert.Equal(1u, UnixFiles.Stat(host).Links);
            Assert.Equal(new[] { copied }, Directory.GetFileSystemEntries(Destination)); // nothing of the copy's own left
        }

        [LinuxFact]
        public void A_copy_stopped_midway_leaves_nothing_and_the_item_it_was_to_replace_as_it_was()
        {
            Directory.CreateDirectory(Path.Combine(Guest, "a"));
            for (int i = 0; i < 3000; i++)
            {
                File.WriteAllText(Path.Combine(Guest, "a", i.ToString("D5")), "x");
            }

            string copied = Path.Combine(Destination, "alice");
            Directory.CreateDirectory(copied);
            File.WriteAllText(Path.Combine(copied, "mine"), "before\n");
            using var stop = new CancellationTokenSource();
            // Ctrl+C as soon as the copy has made its first files.
            var pressed = new Thread(() =>
            {
                SpinWait.SpinUntil(() => Directory.GetDirectories(Destination).Any(folder => Directory.Exists(Path.Combine(folder, "a")) && Directory.EnumerateFiles(Path.Combine(folder, "a")).Any()), TimeSpan.FromSeconds(20));
                stop.Cancel();
            });
            pressed.Start();
            try
            {
                Assert.ThrowsAny<OperationCanceledException>(() => ItemCopier.Copy(Guest, copied, force: true, new RestoredItem("disk0/home/alice", copied), stop.Token));
            }
            finally
            {
                pressed.Join();
            }

            Assert.Equal(new[] { copied }, Directory.GetFileSystemEntries(Destination));
            Assert.Equal(new[] { Path.Combine(copied, "mine") }, Directory.GetFileSystemEntries(copied));
        }

        [LinuxRootFact]
        public void Force_says_so_when_the_item_it_replaced_cannot_be_removed_and_the_copy_is_in_place()
        {
            Directory.CreateDirectory(Guest);
            File.WriteAllText(Path.Combine(Guest, "authorized_keys"), "guest-key\n");
            string copied = Path.Combine(Destination, "alice");
            Directory.CreateDirectory(copied);
            string stuck = Path.Combine(copied, "stuck");
            File.WriteAllText(stuck, "old\n");
            HostCommand.RunChecked("chattr", new[] { "+i", stuck }); // not even root may remove it
            try
            {
                VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => ItemCopier.Copy(Guest, copied, force: true, new RestoredItem("disk0/home/alice", copied), CancellationToken.None));

                Assert.Equal("ItemCopyFailed", e.ErrorId);
                Assert.Equal("guest-key\n", File.ReadAllText(Path.Combine(copied, "authorized_keys")));
                string aside = Assert.Single(Directory.GetDirectories(Destination), folder => folder != copied);
                Assert.Contains($"'{copied}' is restored, but the item it replaced, moved aside to '{aside}', could not be removed", e.Message, StringComparison.Ordinal);
                Assert.Equal("old\n", File.ReadAllText(Path.Combine(aside, "stuck")));
            }
            finally
            {
                HostCommand.Run("find", new[] { Destination, "-name", "stuck", "-exec", "chattr", "-i", "{}", "+" });
            }
        }

        [LinuxFact]
        public void A_link_planted_where_a_folder_or_file_is_made_is_refused_and_nothing_is_written_through_it()
        {
            Directory.CreateDirectory(Destination);
            Directory.CreateDirectory(Outside);
            Libc.chmod(Outside, Private);
            File.CreateSymbolicLink(Path.Combine(Destination, "a"), Outside);
            File.CreateSymbolicLink(Path.Combine(Destination, "authorized_keys"), Path.Combine(Outside, "authorized_keys"));
            using (TrustedFolder folder = TrustedFolder.Open(Destination, owner: null, create: false))
            {
                Assert.Equal(FolderProblem.Link, Assert.Throws<FolderTrustException>(() => folder.CreateFolder("a")).Problem);
                Assert.ThrowsAny<IOException>(() => folder.CreateNew("authorized_keys", direct: false));
            }

            Assert.Empty(Directory.GetFileSystemEntries(Outside));
            Assert.Equal(Private, UnixFiles.Stat(Outside).Mode & 0xFFF);
        }
    }
}
