using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>A byte range of a file that holds data (not a hole).</summary>
    public readonly struct FileExtent
    {
        public FileExtent(long offset, long length)
        {
            Offset = offset;
            Length = length;
        }

        public long Offset { get; }

        public long Length { get; }

        public long End => Offset + Length;
    }

    /// <summary>What statx says about a file: type, permission bits, owner, size, identity.</summary>
    internal readonly struct FileStatus
    {
        private const uint TypeMask = 0xF000;

        public FileStatus(uint mode, uint uid, uint gid, long size, ulong device, ulong inode, uint links, long allocated, Libc.Timespec accessed, Libc.Timespec written)
        {
            Allocated = allocated;
            Accessed = accessed;
            Written = written;
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

        /// <summary>The last access time, to the nanosecond.</summary>
        public Libc.Timespec Accessed { get; }

        /// <summary>The last modification time, to the nanosecond.</summary>
        public Libc.Timespec Written { get; }

        public bool IsRegularFile => (Mode & TypeMask) == 0x8000;

        public bool IsDirectory => (Mode & TypeMask) == 0x4000;

        public bool IsSymbolicLink => (Mode & TypeMask) == 0xA000;

        public bool IsSocket => (Mode & TypeMask) == 0xC000;

        /// <summary>The permission bits (rwx for owner, group, others) without setuid, setgid and sticky.</summary>
        public int Permissions => (int)(Mode & 0x1FF);

        /// <summary>The sticky bit: in a folder, only an entry's owner (or the folder's, or root) may rename or remove it.</summary>
        public bool IsSticky => (Mode & 0x200) != 0;

        /// <summary>The permission bits and the sticky bit in octal, as chmod takes them ("0755", "1777"): for messages.</summary>
        public string ModeText => Convert.ToString(Permissions | (IsSticky ? 0x200 : 0), 8).PadLeft(4, '0');

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
        // stx_size u64 at 40, stx_blocks u64 at 48, stx_atime and stx_mtime (s64 seconds, u32 nanoseconds) at 64 and 112,
        // stx_dev_major/minor u32 at 136/140.
        internal static FileStatus FromStatx(byte[] buffer) => new FileStatus(
            BitConverter.ToUInt16(buffer, 28),
            BitConverter.ToUInt32(buffer, 20),
            BitConverter.ToUInt32(buffer, 24),
            BitConverter.ToInt64(buffer, 40),
            ((ulong)BitConverter.ToUInt32(buffer, 136) << 32) | BitConverter.ToUInt32(buffer, 140),
            BitConverter.ToUInt64(buffer, 32),
            BitConverter.ToUInt32(buffer, 16),
            BitConverter.ToInt64(buffer, 48) * 512,
            TimeAt(buffer, 64),
            TimeAt(buffer, 112));

        private static Libc.Timespec TimeAt(byte[] buffer, int offset) =>
            new Libc.Timespec { Seconds = (IntPtr)BitConverter.ToInt64(buffer, offset), Nanoseconds = (IntPtr)BitConverter.ToUInt32(buffer, offset + 8) };
    }

    /// <summary>
    /// Linux file interop the BCL lacks: owner and mode, where a sparse file's data lies (SEEK_DATA/SEEK_HOLE),
    /// so holes are never read, and fsync of a directory, so a rename survives power loss.
    /// </summary>
    internal static class UnixFiles
    {
        private const int GroupOrOtherWrite = 0x12; // 0022

        // Linux values; macOS swaps them, so callers use this only behind HostPlatform.IsLinux.
        private const int SeekData = 3;
        private const int SeekHole = 4;

        /// <summary>
        /// A path that names the file this process has open as <paramref name="fd"/>, whatever is renamed or
        /// linked meanwhile: what a tool this process starts as root is given instead of a path it would look up again.
        /// </summary>
        public static string DescriptorPath(long fd) =>
            "/proc/" + HostPlatform.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + "/fd/" +
            fd.ToString(System.Globalization.CultureInfo.InvariantCulture);

        /// <summary>
        /// Who other than root (or this user, or <paramref name="trusted"/>) could put something else at <paramref name="path"/>
        /// (absolute, its folders real, not links) by renaming or replacing it or a folder on the way, or null when no one
        /// could: every folder on the way is root's (or this user's, or <paramref name="trusted"/>'s) and writable by no one
        /// else, or sticky with the entry below it theirs (in a sticky folder only an entry's owner moves it). Folders that
        /// do not exist yet end the walk: root makes them.
        /// </summary>
        public static string? DescribeReplaceable(string path, uint? trusted = null)
        {
            string folder = "/";
            foreach (string name in path.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries))
            {
                string entry = Path.Combine(folder, name);
                if (RegularFile.StatNoFollow(folder) is not FileStatus status)
                {
                    return null;
                }

                if (status.IsSymbolicLink)
                {
                    return $"'{folder}' is a symbolic link, which changed as it was looked at";
                }

                if (!IsTrusted(status.Uid, trusted))
                {
                    return $"'{folder}' belongs to user id {status.Uid}, who could rename '{entry}' and put another there";
                }

                FileStatus? below = RegularFile.StatNoFollow(entry);
                if ((status.Permissions & GroupOrOtherWrite) != 0 && (!status.IsSticky || (below is FileStatus owned && !IsTrusted(owned.Uid, trusted))))
                {
                    return $"'{folder}' has mode {status.ModeText}: another user could rename '{entry}' and put another there";
                }

                folder = entry;
            }

            return null;
        }

        /// <summary>
        /// Who other than root (or this user, or <paramref name="trusted"/>) could put a file or link of their own into
        /// <paramref name="folder"/> (absolute) before a file is made there by its name, or swap the folder or one above it,
        /// or a link on the way to it as written (the name is opened through that way): null when no one could. Unlike for
        /// an entry that exists, a sticky bit is no help: anyone who may write a folder may make a new name in it.
        /// </summary>
        public static string? DescribeOthersCanAddTo(string folder, uint? trusted)
        {
            int links = 0;
            if (DescribeSwappableLinks(folder, trusted, ref links) is string swappable)
            {
                return swappable;
            }

            string real = RealPathOfDeepestExisting(folder);
            if (DescribeReplaceable(real, trusted) is string replaceable)
            {
                return replaceable;
            }

            if (RegularFile.StatNoFollow(real) is not FileStatus status)
            {
                return null;
            }

            return !IsTrusted(status.Uid, trusted) ? $"'{real}' belongs to user id {status.Uid}, who could put a link in it"
                : (status.Permissions & GroupOrOtherWrite) != 0 ? $"'{real}' has mode {status.ModeText}: another user could put a link in it"
                : null;
        }

        /// <summary>Whether <paramref name="uid"/> is root, this user or <paramref name="trusted"/>: someone whose folders and links are not a way in.</summary>
        private static bool IsTrusted(uint uid, uint? trusted) => uid == 0 || uid == Libc.geteuid() || uid == trusted;

        /// <summary>
        /// Who other than root (or this user, or <paramref name="trusted"/>) could replace a symbolic link met on the way to
        /// <paramref name="path"/> (absolute, as written), or one its target leads through, and so point the rest of the way
        /// elsewhere; null when no one could (a link an administrator made in a folder only they may write is fine).
        /// </summary>
        private static string? DescribeSwappableLinks(string path, uint? trusted, ref int links)
        {
            string real = "/";
            foreach (string name in path.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries))
            {
                if (name == "." || name == "..")
                {
                    real = name == ".." ? Path.GetDirectoryName(real) ?? "/" : real;
                    continue;
                }

                string entry = Path.Combine(real, name);
                if (RegularFile.StatNoFollow(entry) is not FileStatus status)
                {
                    return null;
                }

                if (status.IsSymbolicLink)
                {
                    if (DescribeReplaceable(entry, trusted) is string why)
                    {
                        return why;
                    }

                    if (++links > TrustedFolder.MaxLinks || ReadLinkAt(Libc.AtFdCwd, entry) is not string target)
                    {
                        return $"'{entry}' is a symbolic link that could not be followed";
                    }

                    if (DescribeSwappableLinks(Path.IsPathRooted(target) ? target : Path.Combine(real, target), trusted, ref links) is string inner)
                    {
                        return inner;
                    }

                    entry = Libc.RealPath(entry) ?? entry;
                }

                real = entry;
            }

            return null;
        }

        /// <summary>The real path of <paramref name="path"/>: that of its deepest folder that exists, and the rest as written.</summary>
        public static string RealPathOfDeepestExisting(string path)
        {
            string? existing = path;
            string rest = string.Empty;
            while (existing != null && RegularFile.StatNoFollow(existing) == null)
            {
                rest = Path.Combine(Path.GetFileName(existing), rest);
                existing = Path.GetDirectoryName(existing);
            }

            return existing == null ? path : Path.Combine(Libc.RealPath(existing) ?? existing, rest).TrimEnd('/');
        }

        /// <summary>Type, owner, mode and identity of <paramref name="path"/>, following symbolic links (Linux).</summary>
        public static FileStatus Stat(string path)
        {
            byte[] buffer = new byte[256];
            return StatResult(Libc.statx(Libc.AtFdCwd, path, 0, Libc.StatxBasicStats, buffer), buffer, path);
        }

        /// <summary>Type, owner, mode and identity of an open file (Linux); <paramref name="path"/> only names it in errors.</summary>
        public static FileStatus Stat(int fd, string path)
        {
            byte[] buffer = new byte[256];
            return StatResult(Libc.statx(fd, Libc.StatxBasicStats, buffer), buffer, path);
        }

        /// <summary>statx of <paramref name="name"/> under folder <paramref name="folderFd"/> (a link itself, not followed), or of the descriptor itself when the name is empty.</summary>
        public static FileStatus? StatAt(int folderFd, string name, out int errno)
        {
            var buffer = new byte[256];
            int flags = name.Length == 0 ? Libc.AtEmptyPath : Libc.AtSymlinkNoFollow;
            if (Libc.statx(folderFd, name, flags, Libc.StatxBasicStats, buffer) != 0)
            {
                errno = Marshal.GetLastWin32Error();
                return null;
            }

            errno = 0;
            return FileStatus.FromStatx(buffer);
        }

        /// <summary>statx of <paramref name="path"/>, following a link; null when it cannot be read.</summary>
        public static FileStatus? StatFollowingLinks(string path)
        {
            var buffer = new byte[256];
            return Libc.statx(Libc.AtFdCwd, path, 0, Libc.StatxBasicStats, buffer) == 0 ? FileStatus.FromStatx(buffer) : (FileStatus?)null;
        }

        /// <summary>openat, tried again when a signal interrupts it.</summary>
        public static int OpenAt(int folderFd, string name, int flags, int mode = 0)
        {
            while (true)
            {
                int fd = Libc.openat(folderFd, name, flags, mode);
                if (fd >= 0 || Marshal.GetLastWin32Error() != Libc.EINTR)
                {
                    return fd;
                }
            }
        }

        /// <summary>
        /// The names in the open folder <paramref name="folderFd"/> (without "." and ".."), listed through a descriptor of
        /// its own and kept byte for byte (see <see cref="FileNameText"/>); <paramref name="shown"/> names it in errors.
        /// </summary>
        public static List<string> Names(int folderFd, string shown)
        {
            int fd = OpenAt(folderFd, ".", Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenCloseOnExec);
            IntPtr directory = fd < 0 ? IntPtr.Zero : Libc.fdopendir(fd);
            if (directory == IntPtr.Zero)
            {
                int errno = Marshal.GetLastWin32Error();
                if (fd >= 0)
                {
                    Libc.close(fd);
                }

                throw RegularFile.Failure("list", shown, errno);
            }

            try
            {
                // struct dirent: d_ino, d_off (8 bytes each on 64-bit, 4 on 32-bit), d_reclen (2), d_type (1), d_name.
                int nameOffset = (2 * IntPtr.Size) + 3;
                var names = new List<string>();
                while (true)
                {
                    IntPtr entry = Libc.readdir(directory);
                    if (entry == IntPtr.Zero)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        return errno == 0 ? names : throw RegularFile.Failure("list", shown, errno);
                    }

                    int length = 0;
                    while (Marshal.ReadByte(entry, nameOffset + length) != 0)
                    {
                        length++;
                    }

                    byte[] name = new byte[length];
                    Marshal.Copy(entry + nameOffset, name, 0, length);
                    if (!(length == 1 && name[0] == '.') && !(length == 2 && name[0] == '.' && name[1] == '.'))
                    {
                        names.Add(FileNameText.Decode(name));
                    }
                }
            }
            finally
            {
                Libc.closedir(directory);
            }
        }

        /// <summary>The target of the symbolic link <paramref name="name"/> under folder <paramref name="folderFd"/>, or null.</summary>
        public static string? ReadLinkAt(int folderFd, string name)
        {
            var buffer = new byte[4096];
            long length = Libc.readlinkat(folderFd, name, buffer);
            return length > 0 && length < buffer.Length ? System.Text.Encoding.UTF8.GetString(buffer, 0, (int)length) : null;
        }

        private static FileStatus StatResult(int result, byte[] buffer, string path)
        {
            if (result != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                throw new IOException($"Cannot read the permissions of '{path}': {Libc.ErrorText(errno)}.");
            }

            return FileStatus.FromStatx(buffer);
        }

        /// <summary>
        /// The data extents of <paramref name="path"/>, in order; null when the file system cannot say
        /// (the caller then reads everything and detects zeros itself).
        /// </summary>
        public static IReadOnlyList<FileExtent>? TryGetDataExtents(string path, long size)
        {
            if (!HostPlatform.IsLinux)
            {
                return null;
            }

            // Not waiting on a FIFO put in the file's place (lseek then fails on it, and the caller reads everything).
            int fd = Libc.open(path, Libc.OpenReadOnly | Libc.OpenNonBlocking | Libc.OpenCloseOnExec);
            if (fd < 0)
            {
                return null;
            }

            try
            {
                return TryGetDataExtents(fd, size);
            }
            finally
            {
                Libc.close(fd);
            }
        }

        /// <summary>The data extents of the open file <paramref name="fd"/> (Linux), in order; null when the file system cannot say.</summary>
        public static IReadOnlyList<FileExtent>? TryGetDataExtents(int fd, long size)
        {
            var extents = new List<FileExtent>();
            long offset = 0;
            while (offset < size)
            {
                long dataStart = Libc.lseek(fd, offset, SeekData);
                if (dataStart < 0)
                {
                    if (Marshal.GetLastWin32Error() == Libc.ENXIO) // no data at or after the offset
                    {
                        break;
                    }

                    return null;
                }

                long holeStart = Libc.lseek(fd, dataStart, SeekHole);
                if (holeStart < 0)
                {
                    return null;
                }

                holeStart = Math.Min(holeStart, size);
                if (holeStart > dataStart)
                {
                    extents.Add(new FileExtent(dataStart, holeStart - dataStart));
                }

                offset = holeStart;
            }

            return extents;
        }

        /// <summary>Makes the entries of <paramref name="directory"/> durable (a no-op where unsupported).</summary>
        public static void SyncDirectory(string directory)
        {
            if (!HostPlatform.IsLinux)
            {
                return;
            }

            // A folder only: a FIFO someone put in its place would otherwise hold the open for good.
            int fd = Libc.open(directory, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenNonBlocking | Libc.OpenCloseOnExec);
            if (fd >= 0)
            {
                Libc.fsync(fd);
                Libc.close(fd);
            }
        }

        /// <summary>The target of symbolic link <paramref name="path"/> (e.g. /proc/&lt;pid&gt;/fd/3), or null when it is not one or cannot be read.</summary>
        public static string? ReadLink(string path)
        {
            var buffer = new byte[4096];
            long length = Libc.readlink(path, buffer);
            return length > 0 ? System.Text.Encoding.UTF8.GetString(buffer, 0, (int)length) : null;
        }

        /// <summary>
        /// Gives <paramref name="from"/> the new name <paramref name="to"/> only if that name is free, atomically
        /// (link fails with EEXIST; File.Move checks and then renames, so two writers can both "win").
        /// True: linked; false: <paramref name="to"/> exists; null: this file system cannot say (no hard links).
        /// </summary>
        public static bool? TryLinkNew(string from, string to)
        {
            if (!HostPlatform.IsLinux)
            {
                return null;
            }

            if (Libc.link(from, to) == 0)
            {
                return true;
            }

            return Marshal.GetLastWin32Error() == Libc.EEXIST ? false : (bool?)null;
        }
    }
}
