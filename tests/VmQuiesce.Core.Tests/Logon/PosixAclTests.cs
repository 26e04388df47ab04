using System;
using System.IO;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Platform;
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
            PosixAcl acl = PosixAcl.Read(_folder, PosixAcl.AccessAttribute) ?? PosixAcl.FromMode(UnixFiles.Stat(_folder).Mode);
            acl.GrantUser(54321, PosixAccess.Read | PosixAccess.Write | PosixAccess.Execute);
            acl.Write(_folder, PosixAcl.AccessAttribute);

            PosixAcl back = PosixAcl.Read(_folder, PosixAcl.AccessAttribute)!;
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

            PosixAcl acl = PosixAcl.FromMode(UnixFiles.Stat(_folder).Mode);
            acl.GrantUser(nobody.Uid, 7);
            acl.Write(_folder, PosixAcl.AccessAttribute);
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
    }
}
