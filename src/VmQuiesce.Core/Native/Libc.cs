using System;
using System.ComponentModel;
using System.Runtime.InteropServices;

namespace VmQuiesce.Core.Native
{
    /// <summary>
    /// Every libc call the module makes (Linux; a few also on macOS), declared once. Paths go in as
    /// NUL-terminated UTF-8 bytes: netstandard2.0 has no UnmanagedType.LPUTF8Str. Constants are Linux values.
    /// </summary>
    internal static class Libc
    {
        private const string Library = "libc";

        public const int AtFdCwd = -100;
        public const uint StatxBasicStats = 0x7ff;

        public const int OpenReadOnly = 0x0;
        public const int OpenWriteOnly = 0x1;
        public const int OpenCreate = 0x40;
        public const int OpenExclusive = 0x80;
        public const int OpenNoControllingTerminal = 0x100;
        public const int OpenNonBlocking = 0x800;
        public const int OpenCloseOnExec = 0x80000;
        public const int AtEmptyPath = 0x1000;
        public const int AtSymlinkNoFollow = 0x100;
        public const int AtRemoveDir = 0x200;
        public const int LockExclusive = 2;
        public const int LockNonBlocking = 4;
        public const int LockUnlock = 8;
        public const int FadviseSequential = 2;
        public const int SolSocket = 1;
        public const int SoPeerCred = 17;

        // Arm's generic layout differs from x86's for these three flags.
        private static readonly bool GenericFlagLayout = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;

        public static int OpenDirect => GenericFlagLayout ? 0x10000 : 0x4000;

        public static int OpenDirectory => GenericFlagLayout ? 0x4000 : 0x10000;

        public static int OpenNoFollow => GenericFlagLayout ? 0x8000 : 0x20000;

        public const int EPERM = 1;
        public const int ENOENT = 2;
        public const int ESRCH = 3;
        public const int EINTR = 4;
        public const int ENXIO = 6;
        public const int EAGAIN = 11;
        public const int EACCES = 13;
        public const int EEXIST = 17;
        public const int EXDEV = 18;
        public const int ENOTDIR = 20;
        public const int EINVAL = 22;
        public const int ENOSPC = 28;
        public const int EROFS = 30;
        public const int EMLINK = 31;
        public const int ENOTEMPTY = 39;
        public const int ELOOP = 40;
        public const int ENODATA = 61;
        public const int EOPNOTSUPP = 95;
        public const int EDQUOT = 122;

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

        /// <summary>A path or name as libc takes it: its bytes (see <see cref="FileNameText"/>) and a NUL.</summary>
        public static byte[] Utf8z(string text) => FileNameText.Encode(text + "\0");

        /// <summary>The C library's text for an errno value.</summary>
        public static string ErrorText(int errno) => new Win32Exception(errno).Message;

        /// <summary>The canonical absolute path (every symbolic link resolved), or null when it cannot be resolved.</summary>
        public static string? RealPath(string path)
        {
            IntPtr resolved = realpath(Utf8z(path), IntPtr.Zero);
            if (resolved == IntPtr.Zero)
            {
                return null;
            }

            try
            {
                int length = 0;
                while (Marshal.ReadByte(resolved, length) != 0)
                {
                    length++;
                }

                byte[] bytes = new byte[length];
                Marshal.Copy(resolved, bytes, 0, length);
                return FileNameText.Decode(bytes);
            }
            finally
            {
                free(resolved);
            }
        }

        public static int open(string path, int flags, int mode = 0) => open(Utf8z(path), flags, mode);

        public static int link(string from, string to) => link(Utf8z(from), Utf8z(to));

        public static long readlink(string path, byte[] buffer) => (long)readlink(Utf8z(path), buffer, (UIntPtr)buffer.Length);

        public static int mkdir(string path, uint mode) => mkdir(Utf8z(path), mode);

        public static IntPtr getpwnam(string name) => getpwnam(Utf8z(name));

        public static IntPtr getgrnam(string name) => getgrnam(Utf8z(name));

        public static int getgrouplist(string user, uint group, uint[] groups, ref int count) => getgrouplist(Utf8z(user), group, groups, ref count);

        public static int statx(int dirFd, string path, int flags, uint mask, byte[] buffer) => statx(dirFd, Utf8z(path), flags, mask, buffer);

        public static int statx(int fd, uint mask, byte[] buffer) => statx(fd, new byte[1], AtEmptyPath, mask, buffer);

        public static int openat(int folderFd, string name, int flags) => openat(folderFd, Utf8z(name), flags, 0);

        public static int openat(int folderFd, string name, int flags, int mode) => openat(folderFd, Utf8z(name), flags, mode);

        public static long readlinkat(int folderFd, string name, byte[] buffer) => (long)readlinkat(folderFd, Utf8z(name), buffer, (UIntPtr)buffer.Length);

        public static int mkdirat(int folderFd, string name, int mode) => mkdirat(folderFd, Utf8z(name), mode);

        public static int linkat(int fromFolderFd, string from, int toFolderFd, string to, int flags = 0) => linkat(fromFolderFd, Utf8z(from), toFolderFd, Utf8z(to), flags);

        public static int renameat(int fromFolderFd, string from, int toFolderFd, string to) => renameat(fromFolderFd, Utf8z(from), toFolderFd, Utf8z(to));

        public static int unlinkat(int folderFd, string name, int flags) => unlinkat(folderFd, Utf8z(name), flags);

        public static IntPtr fgetxattr(int fd, string name, byte[]? value, UIntPtr size) => fgetxattr(fd, Utf8z(name), value, size);

        public static int fsetxattr(int fd, string name, byte[] value, UIntPtr size, int flags) => fsetxattr(fd, Utf8z(name), value, size, flags);

        public static int chmod(string path, uint mode) => chmod(Utf8z(path), mode);

        public static int lchown(string path, uint owner, uint group) => lchown(Utf8z(path), owner, group);

        public static int rename(string from, string to) => rename(Utf8z(from), Utf8z(to));

        // open(2) is variadic; the mode is read only with O_CREAT, so passing 0 otherwise is what C callers do.
        [DllImport(Library, SetLastError = true)]
        private static extern int open(byte[] path, int flags, int mode);

        [DllImport(Library, SetLastError = true)]
        public static extern int close(int fd);

        [DllImport(Library, SetLastError = true)]
        public static extern long lseek(int fd, long offset, int whence);

        [DllImport(Library, SetLastError = true)]
        public static extern int fsync(int fd);

        // Returns the error number itself; errno is left alone.
        [DllImport(Library)]
        public static extern int posix_fadvise(int fd, long offset, long length, int advice);

        [DllImport(Library, SetLastError = true)]
        public static extern int fdatasync(int fd);

        [DllImport(Library, SetLastError = true)]
        public static extern IntPtr pwrite(int fd, IntPtr buffer, UIntPtr count, long offset);

        [DllImport(Library, SetLastError = true)]
        public static extern int ftruncate(int fd, long length);

        [DllImport(Library, SetLastError = true)]
        private static extern int link(byte[] from, byte[] to);

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr readlink(byte[] path, byte[] buffer, UIntPtr size);

        [DllImport(Library, SetLastError = true)]
        private static extern int mkdir(byte[] path, uint mode);

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr getpwnam(byte[] name);

        [DllImport(Library, SetLastError = true)]
        public static extern IntPtr getpwuid(uint uid);

        [DllImport(Library, SetLastError = true)]
        public static extern IntPtr getgrgid(uint gid);

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr getgrnam(byte[] name);

        [DllImport(Library, SetLastError = true)]
        private static extern int getgrouplist(byte[] user, uint group, [Out] uint[] groups, ref int count);

        [DllImport(Library, SetLastError = true)]
        private static extern int statx(int dirFd, byte[] path, int flags, uint mask, [Out] byte[] buffer);

        [DllImport(Library, SetLastError = true)]
        private static extern int openat(int folderFd, byte[] name, int flags, int mode);

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr fgetxattr(int fd, byte[] name, [Out] byte[]? value, UIntPtr size);

        [DllImport(Library, SetLastError = true)]
        private static extern int fsetxattr(int fd, byte[] name, byte[] value, UIntPtr size, int flags);

        [DllImport(Library, SetLastError = true)]
        private static extern int chmod(byte[] path, uint mode);

        [DllImport(Library, SetLastError = true)]
        private static extern int lchown(byte[] path, uint owner, uint group);

        [DllImport(Library, SetLastError = true)]
        private static extern int rename(byte[] from, byte[] to);

        [DllImport(Library, SetLastError = true)]
        public static extern int getsockopt(int socket, int level, int option, [Out] byte[] value, ref uint length);

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr realpath(byte[] path, IntPtr resolved);

        [DllImport(Library)]
        private static extern void free(IntPtr memory);

        [DllImport(Library)]
        public static extern uint geteuid();

        [DllImport(Library, SetLastError = true)]
        private static extern IntPtr readlinkat(int folderFd, byte[] path, byte[] buffer, UIntPtr size);

        [DllImport(Library, SetLastError = true)]
        private static extern int mkdirat(int folderFd, byte[] path, int mode);

        [DllImport(Library, SetLastError = true)]
        private static extern int linkat(int fromFolderFd, byte[] from, int toFolderFd, byte[] to, int flags);

        [DllImport(Library, SetLastError = true)]
        private static extern int renameat(int fromFolderFd, byte[] from, int toFolderFd, byte[] to);

        [DllImport(Library, SetLastError = true)]
        private static extern int unlinkat(int folderFd, byte[] path, int flags);

        [DllImport(Library, SetLastError = true)]
        public static extern int fchown(int fd, uint uid, uint gid);

        /// <summary>Takes over <paramref name="fd"/>, which <see cref="closedir"/> closes.</summary>
        [DllImport(Library, SetLastError = true)]
        public static extern IntPtr fdopendir(int fd);

        /// <summary>The next struct dirent, or zero at the end (errno unchanged) or on an error (errno set).</summary>
        [DllImport(Library, SetLastError = true)]
        public static extern IntPtr readdir(IntPtr directory);

        [DllImport(Library, SetLastError = true)]
        public static extern int closedir(IntPtr directory);

        [DllImport(Library, SetLastError = true)]
        public static extern int fchmod(int fd, int mode);

        /// <summary>Access and modification times of an open file (both entries; long-sized fields, as glibc's timespec).</summary>
        [DllImport(Library, SetLastError = true)]
        public static extern int futimens(int fd, Timespec[] times);

        [StructLayout(LayoutKind.Sequential)]
        public struct Timespec
        {
            public IntPtr Seconds;
            public IntPtr Nanoseconds;

            public static Timespec From(DateTime utc)
            {
                long ticks = utc.Ticks - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc).Ticks;
                long seconds = ticks >= 0 ? ticks / TimeSpan.TicksPerSecond : -((-ticks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond);
                return new Timespec { Seconds = (IntPtr)seconds, Nanoseconds = (IntPtr)((ticks - (seconds * TimeSpan.TicksPerSecond)) * 100) };
            }
        }

        [DllImport(Library, SetLastError = true)]
        public static extern int flock(int fd, int operation);

        /// <summary>With signal 0: whether process <paramref name="pid"/> exists (0, or -1 with EPERM) or not (-1 with ESRCH), even where /proc hides it.</summary>
        [DllImport(Library, SetLastError = true)]
        public static extern int kill(int pid, int signal);
    }
}
