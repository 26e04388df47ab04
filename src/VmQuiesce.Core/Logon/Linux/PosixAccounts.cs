using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Logon.Linux
{
    /// <summary>A Unix user as the account database (NSS) knows it.</summary>
    internal sealed class PosixUser
    {
        private PosixUser(string name, uint uid, uint gid, IReadOnlyList<uint> groups)
        {
            Name = name;
            Uid = uid;
            Gid = gid;
            Groups = groups;
        }

        public string Name { get; }

        public uint Uid { get; }

        public uint Gid { get; }

        /// <summary>Primary and supplementary group ids.</summary>
        public IReadOnlyList<uint> Groups { get; }

        public static PosixUser? Find(string name)
        {
            IntPtr entry = Libc.getpwnam(name);
            if (entry == IntPtr.Zero)
            {
                return null;
            }

            Libc.Passwd passwd = Marshal.PtrToStructure<Libc.Passwd>(entry);
            string canonical = Marshal.PtrToStringAnsi(passwd.Name) ?? name;
            int count = 32;
            uint[] groups = new uint[count];
            // getgrouplist answers -1 and the needed count when the buffer is too small.
            while (Libc.getgrouplist(canonical, passwd.Gid, groups, ref count) < 0)
            {
                count = Math.Max(count, groups.Length * 2);
                groups = new uint[count];
            }

            Array.Resize(ref groups, count);
            return new PosixUser(canonical, passwd.Uid, passwd.Gid, groups);
        }

        public bool InGroup(uint gid) => Groups.Contains(gid);
    }

    internal static class PosixGroups
    {
        public static uint? FindGid(string name)
        {
            IntPtr entry = Libc.getgrnam(name);
            return entry == IntPtr.Zero ? (uint?)null : Marshal.PtrToStructure<Libc.Group>(entry).Gid;
        }
    }
}
