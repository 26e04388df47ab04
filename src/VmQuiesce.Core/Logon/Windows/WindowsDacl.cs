using System;
using System.Globalization;
using System.IO;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>
    /// A folder's DACL as Windows stores it (ACL header, then ACEs), edited here in managed code so that one entry can be
    /// added and later that same entry removed, leaving every other entry as it was. SetEntriesInAcl with GRANT_ACCESS,
    /// used before, merged the new rights into an entry the account already held, and such a grant can never be taken
    /// back exactly. Plain bytes: the logic is proven on any OS; WindowsSecurity reads and writes the real DACL.
    /// Numbers are little-endian, as BitConverter reads them on every platform .NET runs Windows on.
    /// </summary>
    internal static class WindowsDacl
    {
        /// <summary>FileSystemRights.Modify: read, write, execute and delete.</summary>
        public const uint ModifyRights = 0x000301BF;

        /// <summary>FileSystemRights.FullControl.</summary>
        public const uint FullControl = 0x001F01FF;

        /// <summary>OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE: the entry reaches the files and subfolders inside.</summary>
        public const byte InheritedByFilesAndFolders = 0x03;

        private const byte AccessAllowedAceType = 0;
        private const byte InheritedAce = 0x10;
        private const int HeaderSize = 8;
        private const int AllowedAceFixedSize = 8;

        /// <summary>
        /// The DACL with an explicit allow entry (<paramref name="mask"/>, <paramref name="flags"/>) for the SID added after the
        /// explicit entries and before the inherited ones, as Windows orders them; null when that very entry is there already.
        /// </summary>
        public static byte[]? WithAllowEntry(byte[] dacl, byte[] sid, uint mask, byte flags)
        {
            (int size, int count, int firstInherited) = Parse(dacl);
            if (FindAllowEntry(dacl, count, sid, mask, flags) >= 0)
            {
                return null;
            }

            int aceSize = AllowedAceFixedSize + sid.Length;
            if (size + aceSize > ushort.MaxValue || count == ushort.MaxValue)
            {
                throw new IOException("The folder's permission list is full (64 KiB); no entry can be added to it.");
            }

            byte[] ace = new byte[aceSize];
            ace[0] = AccessAllowedAceType;
            ace[1] = flags;
            BitConverter.GetBytes((ushort)aceSize).CopyTo(ace, 2);
            BitConverter.GetBytes(mask).CopyTo(ace, 4);
            Buffer.BlockCopy(sid, 0, ace, AllowedAceFixedSize, sid.Length);

            byte[] result = new byte[size + aceSize];
            Buffer.BlockCopy(dacl, 0, result, 0, firstInherited);
            Buffer.BlockCopy(ace, 0, result, firstInherited, aceSize);
            Buffer.BlockCopy(dacl, firstInherited, result, firstInherited + aceSize, size - firstInherited);
            BitConverter.GetBytes((ushort)(size + aceSize)).CopyTo(result, 2);
            BitConverter.GetBytes((ushort)(count + 1)).CopyTo(result, 4);
            return result;
        }

        /// <summary>An ACL (revision 2) of these explicit allow entries only, in this order.</summary>
        public static byte[] AllowingOnly(params (byte[] Sid, uint Mask, byte Flags)[] entries)
        {
            byte[] acl = { 2, 0, HeaderSize, 0, 0, 0, 0, 0 }; // ACL_REVISION, size, no entries
            foreach ((byte[] sid, uint mask, byte flags) in entries)
            {
                acl = WithAllowEntry(acl, sid, mask, flags) ?? acl;
            }

            return acl;
        }

        /// <summary>The DACL without one explicit allow entry exactly like the one <see cref="WithAllowEntry"/> added; null when there is none.</summary>
        public static byte[]? WithoutAllowEntry(byte[] dacl, byte[] sid, uint mask, byte flags)
        {
            (int size, int count, _) = Parse(dacl);
            int offset = FindAllowEntry(dacl, count, sid, mask, flags);
            if (offset < 0)
            {
                return null;
            }

            int aceSize = BitConverter.ToUInt16(dacl, offset + 2);
            byte[] result = new byte[size - aceSize];
            Buffer.BlockCopy(dacl, 0, result, 0, offset);
            Buffer.BlockCopy(dacl, offset + aceSize, result, offset, size - offset - aceSize);
            BitConverter.GetBytes((ushort)(size - aceSize)).CopyTo(result, 2);
            BitConverter.GetBytes((ushort)(count - 1)).CopyTo(result, 4);
            return result;
        }

        /// <summary>The binary SID of its string form (S-1-5-21-...), as ConvertStringSidToSid makes it.</summary>
        public static byte[] SidFromString(string text)
        {
            string[] parts = text.Split('-');
            if (parts.Length < 3 || parts.Length > 18 || !string.Equals(parts[0], "S", StringComparison.OrdinalIgnoreCase) || parts[1] != "1"
                || !ulong.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out ulong authority) || authority >= 1UL << 48)
            {
                throw new IOException($"'{text}' is not a SID.");
            }

            byte[] sid = new byte[8 + (4 * (parts.Length - 3))];
            sid[0] = 1;
            sid[1] = (byte)(parts.Length - 3);
            for (int i = 0; i < 6; i++)
            {
                sid[2 + i] = (byte)(authority >> (8 * (5 - i)));
            }

            for (int i = 3; i < parts.Length; i++)
            {
                if (!uint.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out uint subAuthority))
                {
                    throw new IOException($"'{text}' is not a SID.");
                }

                BitConverter.GetBytes(subAuthority).CopyTo(sid, 8 + (4 * (i - 3)));
            }

            return sid;
        }

        /// <summary>The ACL's size and entry count, and the offset of its first inherited entry (its end when none is); throws for a malformed ACL.</summary>
        private static (int Size, int Count, int FirstInherited) Parse(byte[] dacl)
        {
            int size = dacl.Length >= HeaderSize ? BitConverter.ToUInt16(dacl, 2) : 0;
            if (size < HeaderSize || size > dacl.Length)
            {
                throw new IOException("The folder's permission list (DACL) is malformed: its size does not match.");
            }

            int count = BitConverter.ToUInt16(dacl, 4);
            int offset = HeaderSize;
            int firstInherited = -1;
            for (int i = 0; i < count; i++)
            {
                int aceSize = offset + 4 <= size ? BitConverter.ToUInt16(dacl, offset + 2) : 0;
                if (aceSize < 4 || offset + aceSize > size)
                {
                    throw new IOException("The folder's permission list (DACL) is malformed: an entry runs past its end.");
                }

                if (firstInherited < 0 && (dacl[offset + 1] & InheritedAce) != 0)
                {
                    firstInherited = offset;
                }

                offset += aceSize;
            }

            return (size, count, firstInherited < 0 ? offset : firstInherited);
        }

        /// <summary>The offset of the first explicit allow entry with exactly this SID, mask and flags; -1 when none.</summary>
        private static int FindAllowEntry(byte[] dacl, int count, byte[] sid, uint mask, byte flags)
        {
            int offset = HeaderSize;
            for (int i = 0; i < count; i++)
            {
                int aceSize = BitConverter.ToUInt16(dacl, offset + 2);
                if (dacl[offset] == AccessAllowedAceType && dacl[offset + 1] == flags && aceSize == AllowedAceFixedSize + sid.Length
                    && BitConverter.ToUInt32(dacl, offset + 4) == mask && SameBytes(dacl, offset + AllowedAceFixedSize, sid))
                {
                    return offset;
                }

                offset += aceSize;
            }

            return -1;
        }

        private static bool SameBytes(byte[] buffer, int offset, byte[] expected)
        {
            for (int i = 0; i < expected.Length; i++)
            {
                if (buffer[offset + i] != expected[i])
                {
                    return false;
                }
            }

            return true;
        }
    }
}
