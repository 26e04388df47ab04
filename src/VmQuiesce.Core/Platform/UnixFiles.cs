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

    /// <summary>Owner, group and mode of a file, from statx (one layout on every architecture).</summary>
    internal readonly struct PosixStat
    {
        public PosixStat(uint uid, uint gid, uint mode)
        {
            Uid = uid;
            Gid = gid;
            Mode = mode;
        }

        public uint Uid { get; }

        public uint Gid { get; }

        /// <summary>File type and permission bits (st_mode).</summary>
        public uint Mode { get; }

        public bool IsDirectory => (Mode & 0xF000) == 0x4000;

        public bool IsRegularFile => (Mode & 0xF000) == 0x8000;
    }

    /// <summary>
    /// Linux file interop the BCL lacks: owner and mode, where a sparse file's data lies (SEEK_DATA/SEEK_HOLE),
    /// so holes are never read, and fsync of a directory, so a rename survives power loss.
    /// </summary>
    internal static class UnixFiles
    {
        // Linux values; macOS swaps them, so callers use this only behind HostPlatform.IsLinux.
        private const int SeekData = 3;
        private const int SeekHole = 4;

        /// <summary>Owner, group and mode of <paramref name="path"/>, following symbolic links (Linux).</summary>
        public static PosixStat Stat(string path)
        {
            byte[] buffer = new byte[256];
            return StatResult(Libc.statx(Libc.AtFdCwd, path, 0, Libc.StatxBasicStats, buffer), buffer, path);
        }

        /// <summary>Owner, group and mode of <paramref name="path"/> itself: a symbolic link is described, not followed (Linux).</summary>
        public static PosixStat LinkStat(string path)
        {
            byte[] buffer = new byte[256];
            return StatResult(Libc.statx(Libc.AtFdCwd, path, Libc.AtSymlinkNoFollow, Libc.StatxBasicStats, buffer), buffer, path);
        }

        /// <summary>Owner, group and mode of an open file (Linux); <paramref name="path"/> only names it in errors.</summary>
        public static PosixStat Stat(int fd, string path)
        {
            byte[] buffer = new byte[256];
            return StatResult(Libc.statx(fd, Libc.StatxBasicStats, buffer), buffer, path);
        }

        private static PosixStat StatResult(int result, byte[] buffer, string path)
        {
            if (result != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                throw new IOException($"Cannot read the permissions of '{path}': {Libc.ErrorText(errno)}.");
            }

            // struct statx: stx_uid at 20, stx_gid at 24, stx_mode (16 bits) at 28.
            return new PosixStat(BitConverter.ToUInt32(buffer, 20), BitConverter.ToUInt32(buffer, 24), BitConverter.ToUInt16(buffer, 28));
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

            int fd = Libc.open(path, Libc.OpenReadOnly);
            if (fd < 0)
            {
                return null;
            }

            try
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
            finally
            {
                Libc.close(fd);
            }
        }

        /// <summary>Makes the entries of <paramref name="directory"/> durable (a no-op where unsupported).</summary>
        public static void SyncDirectory(string directory)
        {
            if (!HostPlatform.IsLinux)
            {
                return;
            }

            int fd = Libc.open(directory, Libc.OpenReadOnly);
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
