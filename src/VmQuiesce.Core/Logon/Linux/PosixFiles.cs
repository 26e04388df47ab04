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
    /// An open file or folder (Linux). Whatever is asked and changed is asked of and changed on this one object,
    /// never looked up again by path, so a name swapped for a link meanwhile changes nothing.
    /// </summary>
    internal sealed class PosixFileHandle : IDisposable
    {
        private const int ReadOnly = Libc.OpenReadOnly | Libc.OpenNonBlocking | Libc.OpenNoControllingTerminal | Libc.OpenCloseOnExec;

        private PosixFileHandle(int descriptor, string path)
        {
            Descriptor = descriptor;
            Path = path;
        }

        public int Descriptor { get; }

        /// <summary>The name it was opened by: for messages only.</summary>
        public string Path { get; }

        /// <summary>Opens <paramref name="path"/> as named (links followed): for reading its permissions.</summary>
        public static PosixFileHandle Open(string path) =>
            new PosixFileHandle(Check(Libc.open(path, ReadOnly), path), path);

        /// <summary>Opens a folder; a name that is a symbolic link is refused, not followed.</summary>
        public static PosixFileHandle OpenFolder(string path)
        {
            int descriptor = Libc.open(path, ReadOnly | Libc.OpenDirectory | Libc.OpenNoFollow);
            if (descriptor < 0 && Marshal.GetLastWin32Error() is int errno && (errno == Libc.ELOOP || errno == Libc.ENOTDIR))
            {
                throw new IOException($"'{path}' is a symbolic link or not a folder; give the folder itself.");
            }

            return new PosixFileHandle(Check(descriptor, path), path);
        }

        /// <summary>An entry of this folder, opened without following a link: null when the entry is a link or a socket.</summary>
        public PosixFileHandle? OpenEntry(string name)
        {
            string path = System.IO.Path.Combine(Path, name);
            int descriptor = Libc.openat(Descriptor, name, ReadOnly | Libc.OpenNoFollow);
            if (descriptor < 0 && Marshal.GetLastWin32Error() is int errno && (errno == Libc.ELOOP || errno == Libc.ENXIO))
            {
                return null;
            }

            return new PosixFileHandle(Check(descriptor, path), path);
        }

        /// <summary>The names in this folder (read through the descriptor, so the folder listed is the one opened).</summary>
        public IReadOnlyList<string> EntryNames() =>
            Directory.EnumerateFileSystemEntries("/proc/self/fd/" + Descriptor.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Select(entry => System.IO.Path.GetFileName(entry)).ToList();

        public FileStatus Stat() => UnixFiles.Stat(Descriptor, Path);

        public void Dispose() => Libc.close(Descriptor);

        private static int Check(int descriptor, string path)
        {
            if (descriptor < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                throw new IOException($"Cannot open '{path}': {Libc.ErrorText(errno)}.");
            }

            return descriptor;
        }
    }

    /// <summary>
    /// Gives a user rwx on a folder tree (and as the folders' default ACL, for new files); rw on files, x only where
    /// already executable. Every entry is opened without following links and changed through its descriptor: a
    /// link in the tree is skipped, and one swapped in while the grant runs is never followed out of the folder.
    /// </summary>
    internal static class PosixFolderGrant
    {
        /// <param name="opened">Tests: runs once each entry is open and before it is changed.</param>
        public static void Grant(string folder, uint uid, Action<string>? opened = null)
        {
            using PosixFileHandle root = PosixFileHandle.OpenFolder(folder);
            Grant(root, uid, opened);
        }

        private static void Grant(PosixFileHandle entry, uint uid, Action<string>? opened)
        {
            opened?.Invoke(entry.Path);
            FileStatus stat = entry.Stat();
            if (!stat.IsDirectory && !stat.IsRegularFile)
            {
                return;
            }

            PosixAcl access = PosixAcl.Read(entry, PosixAcl.AccessAttribute) ?? PosixAcl.FromMode(stat.Mode);
            bool executable = stat.IsDirectory || (stat.Mode & 0x49) != 0;
            access.GrantUser(uid, (ushort)(PosixAccess.Read | PosixAccess.Write | (executable ? PosixAccess.Execute : 0)));
            access.Write(entry, PosixAcl.AccessAttribute);
            if (!stat.IsDirectory)
            {
                return;
            }

            PosixAcl inherited = PosixAcl.Read(entry, PosixAcl.DefaultAttribute) ?? PosixAcl.FromMode(stat.Mode);
            inherited.GrantUser(uid, PosixAccess.Read | PosixAccess.Write | PosixAccess.Execute);
            inherited.Write(entry, PosixAcl.DefaultAttribute);
            foreach (string name in entry.EntryNames())
            {
                using PosixFileHandle? child = entry.OpenEntry(name);
                if (child != null)
                {
                    Grant(child, uid, opened);
                }
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
        public static PosixAcl? Read(PosixFileHandle file, string attribute)
        {
            IntPtr size = Libc.fgetxattr(file.Descriptor, attribute, null, UIntPtr.Zero);
            if (size.ToInt64() < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.ENODATA || errno == Libc.EOPNOTSUPP)
                {
                    return null;
                }

                throw new IOException($"Cannot read the ACL of '{file.Path}': {Libc.ErrorText(errno)}.");
            }

            byte[] buffer = new byte[size.ToInt64()];
            size = Libc.fgetxattr(file.Descriptor, attribute, buffer, (UIntPtr)(ulong)buffer.Length);
            if (size.ToInt64() < 4 || BitConverter.ToUInt32(buffer, 0) != Version)
            {
                throw new IOException($"The ACL of '{file.Path}' is not in the version-2 format this module reads.");
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

        public void Write(PosixFileHandle file, string attribute)
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

            if (Libc.fsetxattr(file.Descriptor, attribute, buffer, (UIntPtr)(ulong)buffer.Length, 0) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.EOPNOTSUPP)
                {
                    throw new NotSupportedException($"The file system holding '{file.Path}' does not support POSIX ACLs (mount it with the acl option).");
                }

                throw new IOException($"Cannot write the ACL of '{file.Path}': {Libc.ErrorText(errno)}.");
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

            using PosixFileHandle file = PosixFileHandle.Open(path);
            FileStatus stat = file.Stat();
            PosixAcl acl = PosixAcl.Read(file, PosixAcl.AccessAttribute) ?? PosixAcl.FromMode(stat.Mode);
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
