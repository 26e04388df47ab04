using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Logon.Windows;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>The managed DACL edit behind the folder grant and its undo, on DACLs built byte by byte (runs on any OS).</summary>
    public sealed class WindowsDaclTests
    {
        internal const string Account = "S-1-5-21-1-2-3-1001";
        internal const uint Read = 0x001200A9;
        private const byte Inherited = 0x10;

        /// <summary>An ACL (revision 2) of (type, flags, mask, SID) entries.</summary>
        internal static byte[] Acl(params (byte Type, byte Flags, uint Mask, string Sid)[] entries)
        {
            var aces = new List<byte>();
            foreach ((byte type, byte flags, uint mask, string sid) in entries)
            {
                byte[] sidBytes = WindowsDacl.SidFromString(sid);
                aces.Add(type);
                aces.Add(flags);
                aces.AddRange(BitConverter.GetBytes((ushort)(8 + sidBytes.Length)));
                aces.AddRange(BitConverter.GetBytes(mask));
                aces.AddRange(sidBytes);
            }

            var acl = new List<byte> { 2, 0 };
            acl.AddRange(BitConverter.GetBytes((ushort)(8 + aces.Count)));
            acl.AddRange(BitConverter.GetBytes((ushort)entries.Length));
            acl.AddRange(new byte[2]);
            acl.AddRange(aces);
            return acl.ToArray();
        }

        /// <summary>An explicit deny, the account's own Read entry, then an inherited Administrators entry.</summary>
        internal static byte[] Before => Acl(
            (1, 0x03, 0x00010000, "S-1-5-32-546"),
            (0, 0x03, Read, Account),
            (0, 0x03 | Inherited, 0x001F01FF, "S-1-5-32-544"));

        private static byte[] AccountSid => WindowsDacl.SidFromString(Account);

        [Fact]
        public void SidsAreWrittenAsConvertStringSidToSidWritesThem()
        {
            Assert.Equal(new byte[] { 1, 2, 0, 0, 0, 0, 0, 5, 0x20, 0, 0, 0, 0x20, 2, 0, 0 }, WindowsDacl.SidFromString("S-1-5-32-544"));
            Assert.Equal(new byte[] { 1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0 }, WindowsDacl.SidFromString("S-1-5-18"));
            Assert.Throws<IOException>(() => WindowsDacl.SidFromString("S-1-5-x"));
            Assert.Throws<IOException>(() => WindowsDacl.SidFromString(@".\backup"));
        }

        [Fact]
        public void TheModifyEntryIsAnEntryOfItsOwnAfterTheExplicitOnesAndTheAccountsEarlierEntryIsLeftAsItWas()
        {
            byte[] granted = WindowsDacl.WithAllowEntry(Before, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders)!;

            byte[] expected = Acl(
                (1, 0x03, 0x00010000, "S-1-5-32-546"),
                (0, 0x03, Read, Account),
                (0, 0x03, WindowsDacl.ModifyRights, Account),
                (0, 0x03 | Inherited, 0x001F01FF, "S-1-5-32-544"));
            Assert.Equal(expected, granted);
        }

        [Fact]
        public void RemovingTheGrantGivesBackTheDaclAsItWasByteForByte()
        {
            byte[] granted = WindowsDacl.WithAllowEntry(Before, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders)!;
            Assert.Equal(Before, WindowsDacl.WithoutAllowEntry(granted, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));

            // Nothing of the kind there: nothing to remove, and the account's Read entry is never taken for it.
            Assert.Null(WindowsDacl.WithoutAllowEntry(Before, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));
        }

        [Fact]
        public void AnEntryThatIsThereAlreadyIsNotAddedTwice()
        {
            byte[] held = Acl((0, 0x03, WindowsDacl.ModifyRights, Account));
            Assert.Null(WindowsDacl.WithAllowEntry(held, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));

            // An inherited entry alike is not the folder's own: the explicit one is added, and only it is removed later.
            byte[] inherited = Acl((0, 0x03 | Inherited, WindowsDacl.ModifyRights, Account));
            byte[] granted = WindowsDacl.WithAllowEntry(inherited, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders)!;
            Assert.Equal(inherited, WindowsDacl.WithoutAllowEntry(granted, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));
        }

        [Fact]
        public void AnEmptyDaclGetsTheEntryAndAMalformedOneIsRefused()
        {
            byte[] granted = WindowsDacl.WithAllowEntry(Acl(), AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders)!;
            Assert.Equal(Acl((0, 0x03, WindowsDacl.ModifyRights, Account)), granted);

            byte[] truncated = Before.Take(Before.Length - 4).ToArray();
            Assert.Throws<IOException>(() => WindowsDacl.WithAllowEntry(truncated, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));
            byte[] overlong = (byte[])Before.Clone();
            overlong[4] = 9; // more entries than the ACL holds
            Assert.Throws<IOException>(() => WindowsDacl.WithoutAllowEntry(overlong, AccountSid, WindowsDacl.ModifyRights, WindowsDacl.InheritedByFilesAndFolders));
        }
    }
}
