using System;
using System.Collections.Generic;
using System.Linq;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace VmQuiesce.Core.Logon.Linux
{
    /// <summary>The libc calls the systemd backend needs: account database (NSS-aware), statx, xattrs, chmod.</summary>
    internal static class PosixNative
    {
        private const string Libc = "libc";

        public const int AtFdCwd = -100;
        public const uint StatxBasicStats = 0x7ff;
        public const int ENODATA = 61;
        public const int EOPNOTSUPP = 95;

        [StructLayout(LayoutKind.Sequential)]
        public struct Passwd
        {
            public IntPtr Name;
            public IntPtr Password;
            public uint Uid;
            public uint Gid;
            public IntPtr Gecos;
            public IntPtr Home;
            public IntPtr Shell;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct Group
        {
            public IntPtr Name;
            public IntPtr Password;
            public uint Gid;
            public IntPtr Members;
        }

        // netstandard2.0 has no UnmanagedType.LPUTF8Str: strings go in as NUL-terminated UTF-8 bytes.
        public static IntPtr getpwnam(string name) => getpwnam(Utf8z(name));

        public static IntPtr getgrnam(string name) => getgrnam(Utf8z(name));

        public static int getgrouplist(string user, uint group, uint[] groups, ref int count) => getgrouplist(Utf8z(user), group, groups, ref count);

        public static int statx(int dirFd, string path, int flags, uint mask, byte[] buffer) => statx(dirFd, Utf8z(path), flags, mask, buffer);

        public static IntPtr getxattr(string path, string name, byte[]? value, UIntPtr size) => getxattr(Utf8z(path), Utf8z(name), value, size);

        public static int setxattr(string path, string name, byte[] value, UIntPtr size, int flags) => setxattr(Utf8z(path), Utf8z(name), value, size, flags);

        public static int chmod(string path, uint mode) => chmod(Utf8z(path), mode);

        [DllImport(Libc, SetLastError = true)]
        private static extern IntPtr getpwnam(byte[] name);

        [DllImport(Libc, SetLastError = true)]
        private static extern IntPtr getgrnam(byte[] name);

        [DllImport(Libc, SetLastError = true)]
        private static extern int getgrouplist(byte[] user, uint group, [Out] uint[] groups, ref int count);

        [DllImport(Libc, SetLastError = true)]
        private static extern int statx(int dirFd, byte[] path, int flags, uint mask, [Out] byte[] buffer);

        [DllImport(Libc, SetLastError = true)]
        private static extern IntPtr getxattr(byte[] path, byte[] name, [Out] byte[]? value, UIntPtr size);

        [DllImport(Libc, SetLastError = true)]
        private static extern int setxattr(byte[] path, byte[] name, byte[] value, UIntPtr size, int flags);

        [DllImport(Libc, SetLastError = true)]
        private static extern int chmod(byte[] path, uint mode);

        private static byte[] Utf8z(string text) => Encoding.UTF8.GetBytes(text + "\0");

        public static string ErrorText(int errno) => new Win32Exception(errno).Message;
    }

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
            IntPtr entry = PosixNative.getpwnam(name);
            if (entry == IntPtr.Zero)
            {
                return null;
            }

            PosixNative.Passwd passwd = Marshal.PtrToStructure<PosixNative.Passwd>(entry);
            string canonical = Marshal.PtrToStringAnsi(passwd.Name) ?? name;
            int count = 32;
            uint[] groups = new uint[count];
            // getgrouplist answers -1 and the needed count when the buffer is too small.
            while (PosixNative.getgrouplist(canonical, passwd.Gid, groups, ref count) < 0)
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
            IntPtr entry = PosixNative.getgrnam(name);
            return entry == IntPtr.Zero ? (uint?)null : Marshal.PtrToStructure<PosixNative.Group>(entry).Gid;
        }
    }
}
