using System;
using System.Runtime.InteropServices;
using System.Text;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// The libc calls that let the repository and the restore open files without following links and act
    /// on what they opened (openat, statx, mkdirat, linkat, renameat, unlinkat, fchown, fchmod, flock), and
    /// tell whether a lock's process still exists (kill with signal 0).
    /// Linux only: callers check <see cref="HostPlatform.IsLinux"/>. Kept in one file so it folds into the
    /// shared P/Invoke layout unchanged.
    /// </summary>
    internal static class FileTrustLibc
    {
        private const string Libc = "libc";

        public const int AtFdCwd = -100;
        public const int AtSymlinkNoFollow = 0x100;
        public const int AtRemoveDir = 0x200;
        public const int AtEmptyPath = 0x1000;

        public const int ReadOnly = 0x0;
        public const int WriteOnly = 0x1;
        public const int Create = 0x40;
        public const int Exclusive = 0x80;
        public const int NonBlocking = 0x800;
        public const int CloseOnExec = 0x80000;

        public const int LockExclusive = 2;
        public const int LockNonBlocking = 4;
        public const int LockUnlock = 8;

        public const int EPERM = 1;
        public const int ENOENT = 2;
        public const int EINTR = 4;
        public const int ESRCH = 3;
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
        public const int EOPNOTSUPP = 95;
        public const int EDQUOT = 122;

        private const uint StatxBasicStats = 0x7ff;

        // These three differ between architectures (asm-generic vs x86).
        public static int Directory => IsArm ? 0x4000 : 0x10000;

        public static int NoFollow => IsArm ? 0x8000 : 0x20000;

        public static int Direct => IsArm ? 0x10000 : 0x4000;

        private static bool IsArm => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm;

        public static int OpenAt(int dirFd, string name, int flags, int mode)
        {
            while (true)
            {
                int fd = openat(dirFd, Utf8z(name), flags, mode);
                if (fd >= 0 || Marshal.GetLastWin32Error() != EINTR)
                {
                    return fd;
                }
            }
        }

        /// <summary>statx of <paramref name="name"/> under <paramref name="dirFd"/> (links not followed), or of the descriptor itself when the name is empty.</summary>
        public static FileStatus? StatAt(int dirFd, string name, out int errno)
        {
            var buffer = new byte[256];
            int flags = name.Length == 0 ? AtEmptyPath : AtSymlinkNoFollow;
            if (statx(dirFd, Utf8z(name), flags, StatxBasicStats, buffer) != 0)
            {
                errno = Marshal.GetLastWin32Error();
                return null;
            }

            errno = 0;
            return FileStatus.FromStatx(buffer);
        }

        /// <summary>The target of the symbolic link <paramref name="name"/> under <paramref name="dirFd"/>, or null.</summary>
        public static string? ReadLinkAt(int dirFd, string name)
        {
            var buffer = new byte[4096];
            long length = (long)readlinkat(dirFd, Utf8z(name), buffer, (UIntPtr)buffer.Length);
            return length > 0 && length < buffer.Length ? Encoding.UTF8.GetString(buffer, 0, (int)length) : null;
        }

        /// <summary>statx of <paramref name="path"/>, following a link; null when it cannot be read.</summary>
        public static FileStatus? StatFollowingLinks(string path)
        {
            var buffer = new byte[256];
            return statx(AtFdCwd, Utf8z(path), 0, StatxBasicStats, buffer) == 0 ? FileStatus.FromStatx(buffer) : (FileStatus?)null;
        }

        public static int MkdirAt(int dirFd, string name, int mode) => mkdirat(dirFd, Utf8z(name), mode);

        public static int LinkAt(int fromDirFd, string from, int toDirFd, string to) => linkat(fromDirFd, Utf8z(from), toDirFd, Utf8z(to), 0);

        public static int RenameAt(int fromDirFd, string from, int toDirFd, string to) => renameat(fromDirFd, Utf8z(from), toDirFd, Utf8z(to));

        public static int UnlinkAt(int dirFd, string name, int flags) => unlinkat(dirFd, Utf8z(name), flags);

        public static string ErrorText(int errno) => new System.ComponentModel.Win32Exception(errno).Message;

        [DllImport(Libc, SetLastError = true)]
        private static extern int openat(int dirFd, byte[] path, int flags, int mode);

        [DllImport(Libc, SetLastError = true)]
        private static extern int statx(int dirFd, byte[] path, int flags, uint mask, [Out] byte[] buffer);

        [DllImport(Libc, SetLastError = true)]
        private static extern IntPtr readlinkat(int dirFd, byte[] path, byte[] buffer, UIntPtr size);

        [DllImport(Libc, SetLastError = true)]
        private static extern int mkdirat(int dirFd, byte[] path, int mode);

        [DllImport(Libc, SetLastError = true)]
        private static extern int linkat(int fromDirFd, byte[] from, int toDirFd, byte[] to, int flags);

        [DllImport(Libc, SetLastError = true)]
        private static extern int renameat(int fromDirFd, byte[] from, int toDirFd, byte[] to);

        [DllImport(Libc, SetLastError = true)]
        private static extern int unlinkat(int dirFd, byte[] path, int flags);

        [DllImport(Libc, SetLastError = true)]
        public static extern int fchown(int fd, uint uid, uint gid);

        [DllImport(Libc, SetLastError = true)]
        public static extern int fchmod(int fd, int mode);

        [DllImport(Libc, SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport(Libc, SetLastError = true)]
        public static extern int flock(int fd, int operation);

        [DllImport(Libc, SetLastError = true)]
        public static extern int close(int fd);

        [DllImport(Libc)]
        public static extern uint geteuid();

        /// <summary>With signal 0: whether process <paramref name="pid"/> exists (0, or -1 with EPERM) or not (-1 with ESRCH), even where /proc hides it.</summary>
        [DllImport(Libc, SetLastError = true)]
        public static extern int kill(int pid, int signal);

        private static byte[] Utf8z(string text) => Encoding.UTF8.GetBytes(text + "\0");
    }

    /// <summary>What statx says about a file: type, permission bits, owner, size, identity.</summary>
    internal readonly struct FileStatus
    {
        private const uint TypeMask = 0xF000;

        public FileStatus(uint mode, uint uid, uint gid, long size, ulong device, ulong inode, uint links, long allocated)
        {
            Allocated = allocated;
            Mode = mode;
            Uid = uid;
            Gid = gid;
            Size = size;
            Device = device;
            Inode = inode;
            Links = links;
        }

        /// <summary>st_mode: type and permission bits.</summary>
        public uint Mode { get; }

        public uint Uid { get; }

        public uint Gid { get; }

        public long Size { get; }

        public ulong Device { get; }

        public ulong Inode { get; }

        public uint Links { get; }

        /// <summary>Bytes the file takes on disk (st_blocks times 512): less than its size when it has holes.</summary>
        public long Allocated { get; }

        public bool IsRegularFile => (Mode & TypeMask) == 0x8000;

        public bool IsDirectory => (Mode & TypeMask) == 0x4000;

        public bool IsSymbolicLink => (Mode & TypeMask) == 0xA000;

        /// <summary>The permission bits (rwx for owner, group, others) without setuid, setgid and sticky.</summary>
        public int Permissions => (int)(Mode & 0x1FF);

        /// <summary>"a FIFO", "a symbolic link", ...: for messages about what was found instead of a file or folder.</summary>
        public string KindName => (Mode & TypeMask) switch
        {
            0x8000 => "a regular file",
            0x4000 => "a folder",
            0xA000 => "a symbolic link",
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => "an unknown kind of file",
        };

        public bool IsSameFile(FileStatus other) => Device == other.Device && Inode == other.Inode;

        // struct statx: stx_nlink u32 at 16, stx_uid at 20, stx_gid at 24, stx_mode u16 at 28, stx_ino u64 at 32,
        // stx_size u64 at 40, stx_blocks u64 at 48, stx_dev_major/minor u32 at 136/140.
        internal static FileStatus FromStatx(byte[] buffer) => new FileStatus(
            BitConverter.ToUInt16(buffer, 28),
            BitConverter.ToUInt32(buffer, 20),
            BitConverter.ToUInt32(buffer, 24),
            BitConverter.ToInt64(buffer, 40),
            ((ulong)BitConverter.ToUInt32(buffer, 136) << 32) | BitConverter.ToUInt32(buffer, 140),
            BitConverter.ToUInt64(buffer, 32),
            BitConverter.ToUInt32(buffer, 16),
            BitConverter.ToInt64(buffer, 48) * 512);
    }
}
