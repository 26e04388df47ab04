using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon.Linux
{
    internal static class PosixFiles
    {
        public static void ChangeMode(string path, int mode)
        {
            if (Libc.chmod(path, (uint)mode) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                throw new IOException($"Cannot change the mode of '{path}': {Libc.ErrorText(errno)}.");
            }
        }
    }

    /// <summary>
    /// A POSIX ACL as the kernel stores it in the system.posix_acl_access / _default extended
    /// attribute: a version-2 header, then (tag u16, perm u16, id u32) entries, little-endian,
    /// sorted by tag then id. Read and written directly, so no acl package (getfacl/setfacl) is needed.
    /// </summary>
    internal sealed class PosixAcl
    {
        public const string AccessAttribute = "system.posix_acl_access";
        public const string DefaultAttribute = "system.posix_acl_default";

        public const ushort UserObj = 0x01;
        public const ushort User = 0x02;
        public const ushort GroupObj = 0x04;
        public const ushort Group = 0x08;
        public const ushort Mask = 0x10;
        public const ushort Other = 0x20;
        public const uint UndefinedId = uint.MaxValue;

        private const uint Version = 2;

        public PosixAcl(IEnumerable<PosixAclEntry> entries) => Entries = entries.ToList();

        public List<PosixAclEntry> Entries { get; }

        /// <summary>The ACL stored in the attribute, or null when the file has none (only mode bits).</summary>
        public static PosixAcl? Read(string path, string attribute)
        {
            IntPtr size = Libc.getxattr(path, attribute, null, UIntPtr.Zero);
            if (size.ToInt64() < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.ENODATA || errno == Libc.EOPNOTSUPP)
                {
                    return null;
                }

                throw new IOException($"Cannot read the ACL of '{path}': {Libc.ErrorText(errno)}.");
            }

            byte[] buffer = new byte[size.ToInt64()];
            size = Libc.getxattr(path, attribute, buffer, (UIntPtr)(ulong)buffer.Length);
            if (size.ToInt64() < 4 || BitConverter.ToUInt32(buffer, 0) != Version)
            {
                throw new IOException($"The ACL of '{path}' is not in the version-2 format this module reads.");
            }

            var entries = new List<PosixAclEntry>();
            for (int offset = 4; offset + 8 <= size.ToInt64(); offset += 8)
            {
                entries.Add(new PosixAclEntry(BitConverter.ToUInt16(buffer, offset), BitConverter.ToUInt16(buffer, offset + 2), BitConverter.ToUInt32(buffer, offset + 4)));
            }

            return new PosixAcl(entries);
        }

        /// <summary>The minimal ACL equivalent to a mode: owner, group, other.</summary>
        public static PosixAcl FromMode(uint mode) => new PosixAcl(new[]
        {
            new PosixAclEntry(UserObj, (ushort)((mode >> 6) & 7), UndefinedId),
            new PosixAclEntry(GroupObj, (ushort)((mode >> 3) & 7), UndefinedId),
            new PosixAclEntry(Other, (ushort)(mode & 7), UndefinedId),
        });

        public ushort? Find(ushort tag, uint id = UndefinedId) =>
            Entries.Where(e => e.Tag == tag && e.Id == id).Select(e => (ushort?)e.Permissions).FirstOrDefault();

        /// <summary>Adds or widens the named-user entry and recomputes the mask, as setfacl -m u:UID:rwx does.</summary>
        public void GrantUser(uint uid, ushort permissions)
        {
            ushort current = Find(User, uid) ?? 0;
            Entries.RemoveAll(e => e.Tag == User && e.Id == uid);
            Entries.Add(new PosixAclEntry(User, (ushort)(current | permissions), uid));
            ushort mask = 0;
            foreach (PosixAclEntry entry in Entries.Where(e => e.Tag == User || e.Tag == GroupObj || e.Tag == Group))
            {
                mask |= entry.Permissions;
            }

            Entries.RemoveAll(e => e.Tag == Mask);
            Entries.Add(new PosixAclEntry(Mask, mask, UndefinedId));
        }

        public void Write(string path, string attribute)
        {
            List<PosixAclEntry> sorted = Entries.OrderBy(e => e.Tag).ThenBy(e => e.Id).ToList();
            byte[] buffer = new byte[4 + (8 * sorted.Count)];
            BitConverter.GetBytes(Version).CopyTo(buffer, 0);
            for (int i = 0; i < sorted.Count; i++)
            {
                BitConverter.GetBytes(sorted[i].Tag).CopyTo(buffer, 4 + (8 * i));
                BitConverter.GetBytes(sorted[i].Permissions).CopyTo(buffer, 6 + (8 * i));
                BitConverter.GetBytes(sorted[i].Id).CopyTo(buffer, 8 + (8 * i));
            }

            if (Libc.setxattr(path, attribute, buffer, (UIntPtr)(ulong)buffer.Length, 0) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.EOPNOTSUPP)
                {
                    throw new NotSupportedException($"The file system holding '{path}' does not support POSIX ACLs (mount it with the acl option).");
                }

                throw new IOException($"Cannot write the ACL of '{path}': {Libc.ErrorText(errno)}.");
            }
        }
    }

    internal readonly struct PosixAclEntry
    {
        public PosixAclEntry(ushort tag, ushort permissions, uint id)
        {
            Tag = tag;
            Permissions = permissions;
            Id = id;
        }

        public ushort Tag { get; }

        public ushort Permissions { get; }

        public uint Id { get; }
    }

    /// <summary>
    /// The kernel's permission check (acl(5) "access check algorithm") for another user, so Get
    /// and Test can answer without switching identity.
    /// </summary>
    internal static class PosixAccess
    {
        public const ushort Read = 4;
        public const ushort Write = 2;
        public const ushort Execute = 1;

        /// <summary>Null when granted; otherwise which class of entry decided and what it allows.</summary>
        public static string? WhyDenied(PosixUser user, string path, ushort wanted)
        {
            if (user.Uid == 0)
            {
                return null; // root overrides permission bits (CAP_DAC_OVERRIDE) for read, write and directory search.
            }

            PosixStat stat = UnixFiles.Stat(path);
            PosixAcl acl = PosixAcl.Read(path, PosixAcl.AccessAttribute) ?? PosixAcl.FromMode(stat.Mode);
            ushort mask = acl.Find(PosixAcl.Mask) ?? 7;
            if (user.Uid == stat.Uid)
            {
                return Decide(acl.Find(PosixAcl.UserObj) ?? 0, wanted, $"the owner permissions of '{path}'");
            }

            ushort? named = acl.Find(PosixAcl.User, user.Uid);
            if (named.HasValue)
            {
                return Decide((ushort)(named.Value & mask), wanted, $"the masked permissions of ACL entry user:{user.Name} on '{path}'");
            }

            bool inAnyGroup = false;
            if (user.InGroup(stat.Gid))
            {
                inAnyGroup = true;
                if (((acl.Find(PosixAcl.GroupObj) ?? 0) & mask & wanted) == wanted)
                {
                    return null;
                }
            }

            foreach (PosixAclEntry entry in acl.Entries.Where(e => e.Tag == PosixAcl.Group && user.InGroup(e.Id)))
            {
                inAnyGroup = true;
                if ((entry.Permissions & mask & wanted) == wanted)
                {
                    return null;
                }
            }

            if (inAnyGroup)
            {
                return $"no group entry of '{path}' that matches {user.Name}'s groups grants {Letters(wanted)}";
            }

            return Decide(acl.Find(PosixAcl.Other) ?? 0, wanted, $"the 'other' permissions of '{path}'");
        }

        public static string Letters(ushort permissions) =>
            ((permissions & Read) != 0 ? "r" : "-") + ((permissions & Write) != 0 ? "w" : "-") + ((permissions & Execute) != 0 ? "x" : "-");

        private static string? Decide(ushort granted, ushort wanted, string source) =>
            (granted & wanted) == wanted ? null : $"{source} allow only {Letters(granted)}, {Letters(wanted)} is needed";
    }
}
