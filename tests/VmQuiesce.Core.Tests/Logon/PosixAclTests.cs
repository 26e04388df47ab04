using System;
using System.IO;
using VmQuiesce.Core.Logon.Linux;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>The ACL reader/writer and the access check against the kernel's own files, for the 'nobody' user.</summary>
    public sealed class PosixAclTests : IDisposable
    {
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "vmq-acl-" + Guid.NewGuid().ToString("N"));

        public PosixAclTests()
        {
            Directory.CreateDirectory(_folder);
        }

        public void Dispose() => Directory.Delete(_folder, recursive: true);

        [LinuxFact]
        public void AGrantedEntryRoundTripsAndSetsTheMask()
        {
            File.SetUnixFileMode(_folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using PosixFileHandle folder = PosixFileHandle.Open(_folder);
            PosixAcl acl = PosixAcl.Read(folder, PosixAcl.AccessAttribute) ?? PosixAcl.FromMode(folder.Stat().Mode);
            acl.GrantUser(54321, PosixAccess.Read | PosixAccess.Write | PosixAccess.Execute);
            acl.Write(folder, PosixAcl.AccessAttribute);

            PosixAcl back = PosixAcl.Read(folder, PosixAcl.AccessAttribute)!;
            Assert.Equal((ushort)7, back.Find(PosixAcl.User, 54321));
            Assert.Equal((ushort)7, back.Find(PosixAcl.Mask));
            Assert.Equal((ushort)0, back.Find(PosixAcl.Other));
            // The kernel shows the mask as the group bits of the mode.
            Assert.Equal(UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute, File.GetUnixFileMode(_folder) & (UnixFileMode)0x38);
        }

        [LinuxFact]
        public void TheAccessCheckFollowsModeBitsNamedEntriesAndTheMask()
        {
            PosixUser nobody = PosixUser.Find("nobody") ?? throw new InvalidOperationException("this test needs the 'nobody' user");
            File.SetUnixFileMode(_folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            Assert.Contains("'other' permissions", PosixAccess.WhyDenied(nobody, _folder, 7), StringComparison.Ordinal);

            using (PosixFileHandle folder = PosixFileHandle.Open(_folder))
            {
                PosixAcl acl = PosixAcl.FromMode(folder.Stat().Mode);
                acl.GrantUser(nobody.Uid, 7);
                acl.Write(folder, PosixAcl.AccessAttribute);
            }

            Assert.Null(PosixAccess.WhyDenied(nobody, _folder, 7));

            File.SetUnixFileMode(_folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); // chmod 700 masks the entry
            Assert.Contains("masked permissions", PosixAccess.WhyDenied(nobody, _folder, 7), StringComparison.Ordinal);
        }

        [LinuxFact]
        public void TheAccountDatabaseKnowsRootAndNotAnInventedUser()
        {
            PosixUser root = PosixUser.Find("root")!;
            Assert.Equal(0u, root.Uid);
            Assert.Contains(0u, root.Groups);
            Assert.Null(PosixUser.Find("vmq-no-such-user-" + Guid.NewGuid().ToString("N").Substring(0, 8)));
        }

        [LinuxFact]
        public void The_folder_grant_never_follows_a_link_even_one_swapped_in_after_the_entry_was_checked()
        {
            string vm = Directory.CreateDirectory(Path.Combine(_folder, "vm")).FullName;
            File.WriteAllText(Path.Combine(vm, "disk.img"), "disk");
            string sub = Directory.CreateDirectory(Path.Combine(vm, "snapshots")).FullName;
            File.WriteAllText(Path.Combine(sub, "old.img"), "old");
            string outside = Directory.CreateDirectory(Path.Combine(_folder, "outside")).FullName;
            string secret = Path.Combine(outside, "shadow");
            File.WriteAllText(secret, "root only");
            File.CreateSymbolicLink(Path.Combine(vm, "link-from-the-start"), secret);

            // The moment the old code's lstat-then-act left open: the entry was looked at, nothing changed yet.
            PosixFolderGrant.Grant(vm, 54321, opened =>
            {
                if (opened == sub)
                {
                    Directory.Move(sub, sub + ".moved");
                    Directory.CreateSymbolicLink(sub, outside);
                }
                else if (opened == Path.Combine(vm, "disk.img"))
                {
                    File.Move(opened, opened + ".moved");
                    File.CreateSymbolicLink(opened, secret);
                }
            });

            Assert.Null(UserEntry(secret));
            Assert.Null(UserEntry(outside));
            Assert.Equal((ushort)6, UserEntry(Path.Combine(vm, "disk.img.moved")));
            Assert.Equal((ushort)7, UserEntry(sub + ".moved"));
            Assert.Equal((ushort)6, UserEntry(Path.Combine(sub + ".moved", "old.img")));
            Assert.Contains("is a symbolic link or not a folder", Assert.Throws<IOException>(() => PosixFolderGrant.Grant(sub, 54321)).Message, StringComparison.Ordinal);
        }

        private static ushort? UserEntry(string path)
        {
            using PosixFileHandle file = PosixFileHandle.Open(path);
            return PosixAcl.Read(file, PosixAcl.AccessAttribute)?.Find(PosixAcl.User, 54321);
        }
    }
}
