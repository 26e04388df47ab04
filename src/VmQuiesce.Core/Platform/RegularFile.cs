using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Reads and creates files that someone else may have tampered with (a repository, a VM folder) without
    /// being led astray: reads accept only a regular file of bounded size, never a FIFO or device (a FIFO would
    /// hang the read, a device never end it), nor a link unless the caller follows links; new files are created
    /// exclusively, unreadable to others, never through a link. On Linux each check is made on the opened descriptor, so nothing can
    /// be swapped in between; on Windows a read's check is made on the file's own handle (<see cref="ReparsePoints"/>: only a
    /// reparse point that redirects the name is a link, so a deduplicated file or a OneDrive placeholder is read as any other);
    /// elsewhere on the path, as well as the platform allows.
    /// </summary>
    internal static class RegularFile
    {
        /// <summary>Mode of every file VmQuiesce creates in a repository: readable by its owner only.</summary>
        public const int OwnerOnly = 0x180; // 0600

        /// <summary>
        /// Opens <paramref name="path"/> for reading. Throws <see cref="FileNotFoundException"/> when it does not
        /// exist, <see cref="UnexpectedFileException"/> when it is not a regular file of at most
        /// <paramref name="maxBytes"/> bytes, and <see cref="IOException"/> (HResult: the errno) otherwise.
        /// </summary>
        public static FileStream OpenRead(string path, long maxBytes) => OpenRead(path, maxBytes, ReparsePoints.ThisHostsTags);

        /// <summary>
        /// <see cref="OpenRead(string, long)"/> with the reparse tags of Windows read through <paramref name="tags"/> (its handle
        /// layer; null on Linux and macOS, which have none).
        /// </summary>
        internal static FileStream OpenRead(string path, long maxBytes, IFolderHandles? tags) => Open(path, maxBytes, missingIsNull: false, followLinks: false, tags)!;

        /// <summary>
        /// As <see cref="OpenRead(string, long)"/>, but null when <paramref name="path"/> does not exist: for a caller to whom a
        /// missing file is an everyday answer (a chunk not stored yet), which an exception per file would make dear.
        /// </summary>
        public static FileStream? TryOpenRead(string path, long maxBytes) => TryOpenRead(path, maxBytes, ReparsePoints.ThisHostsTags);

        /// <summary><see cref="TryOpenRead(string, long)"/> with Windows' reparse tags read through <paramref name="tags"/>.</summary>
        internal static FileStream? TryOpenRead(string path, long maxBytes, IFolderHandles? tags) => Open(path, maxBytes, missingIsNull: true, followLinks: false, tags);

        /// <summary>
        /// As <see cref="OpenRead(string, long)"/>, but symbolic links are followed: for a path an administrator gave, where a link is
        /// theirs to make, and for a descriptor's /proc/self/fd entry. What the path leads to must still be a regular file,
        /// and a FIFO there is refused without waiting for a writer.
        /// </summary>
        public static FileStream OpenReadFollowingLinks(string path, long maxBytes) => Open(path, maxBytes, missingIsNull: false, followLinks: true, tags: null)!;

        /// <summary>With <paramref name="tags"/> (Windows) through the file's own handle; on Linux through a descriptor; else by path.</summary>
        private static FileStream? Open(string path, long maxBytes, bool missingIsNull, bool followLinks, IFolderHandles? tags)
        {
            if (tags != null)
            {
                return OpenReadNoFollow(path, maxBytes, tags) ?? (missingIsNull ? null : throw new FileNotFoundException($"Could not find file '{path}'.", path));
            }

            if (!HostPlatform.IsLinux)
            {
                try
                {
                    return OpenReadByPath(path, maxBytes, followLinks);
                }
                catch (Exception e) when (missingIsNull && (e is FileNotFoundException || e is DirectoryNotFoundException))
                {
                    return null;
                }
            }

            // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it changes nothing for a regular file.
            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, path, Libc.OpenReadOnly | (followLinks ? 0 : Libc.OpenNoFollow) | Libc.OpenNonBlocking | Libc.OpenCloseOnExec, 0);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.ENOENT && missingIsNull)
                {
                    return null;
                }

                if (errno == Libc.ELOOP && !followLinks)
                {
                    throw new UnexpectedFileException(path, "a symbolic link", "a regular file");
                }

                throw Failure("open", path, errno);
            }

            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            try
            {
                FileStatus status = UnixFiles.StatAt(fd, string.Empty, out int errno) ?? throw Failure("inspect", path, errno);
                CheckRegular(path, status.IsRegularFile ? null : status.KindName, status.Size, maxBytes);
                return new FileStream(handle, FileAccess.Read, bufferSize: 1);
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        /// <summary>The whole of a small text file (UTF-8), read as <see cref="OpenRead(string, long)"/> allows.</summary>
        public static string ReadAllText(string path, long maxBytes) => ReadAllText(path, maxBytes, ReparsePoints.ThisHostsTags);

        /// <summary><see cref="ReadAllText(string, long)"/> with Windows' reparse tags read through <paramref name="tags"/>.</summary>
        internal static string ReadAllText(string path, long maxBytes, IFolderHandles? tags)
        {
            using FileStream stream = OpenRead(path, maxBytes, tags);
            return ReadToEnd(stream, path, maxBytes);
        }

        /// <summary>The whole of a small text file (UTF-8), read as <see cref="OpenReadFollowingLinks"/> allows.</summary>
        public static string ReadAllTextFollowingLinks(string path, long maxBytes)
        {
            using FileStream stream = OpenReadFollowingLinks(path, maxBytes);
            return ReadToEnd(stream, path, maxBytes);
        }

        /// <summary>The whole of a small file, read as <see cref="OpenRead(string, long)"/> allows.</summary>
        public static ArraySegment<byte> ReadAllBytes(string path, long maxBytes) => ReadAllBytes(path, maxBytes, ReparsePoints.ThisHostsTags);

        /// <summary><see cref="ReadAllBytes(string, long)"/> with Windows' reparse tags read through <paramref name="tags"/>.</summary>
        internal static ArraySegment<byte> ReadAllBytes(string path, long maxBytes, IFolderHandles? tags)
        {
            using FileStream stream = OpenRead(path, maxBytes, tags);
            return ReadBytesToEnd(stream, path, maxBytes);
        }

        /// <summary>The rest of <paramref name="stream"/> (opened by <see cref="OpenRead(string, long)"/>) as UTF-8 text, refused once it grows past <paramref name="maxBytes"/>.</summary>
        public static string ReadToEnd(FileStream stream, string path, long maxBytes) => DecodeText(ReadBytesToEnd(stream, path, maxBytes));

        /// <summary>The rest of <paramref name="stream"/> (opened by <see cref="OpenRead(string, long)"/>), refused once it grows past <paramref name="maxBytes"/>.</summary>
        public static ArraySegment<byte> ReadBytesToEnd(FileStream stream, string path, long maxBytes)
        {
            // Read whole, in as few calls as the file's size allows (a manifest is a megabyte, and each call into the kernel
            // costs). The size was checked on open, but a file can grow while it is read: one byte more than it had is room
            // to notice that.
            if (maxBytes >= int.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "A small file is read into one array: expected less than 2 GiB.");
            }

            long expected = Math.Max(0, Math.Min(stream.Length - stream.Position, maxBytes));
            var bytes = new byte[expected + 1];
            int filled = 0;
            int read;
            while ((read = stream.Read(bytes, filled, bytes.Length - filled)) > 0)
            {
                filled += read;
                if (filled > maxBytes)
                {
                    throw new UnexpectedFileException(path, "growing past that while it was read", $"at most {maxBytes:N0} bytes");
                }

                if (filled == bytes.Length)
                {
                    Array.Resize(ref bytes, (int)Math.Min(maxBytes + 1, 2L * bytes.Length));
                }
            }

            return new ArraySegment<byte>(bytes, 0, filled);
        }

        /// <summary>
        /// A text file's bytes as text: UTF-8 unless a byte order mark says UTF-16 or UTF-32 (as a text editor may save
        /// it), the mark left out, what does not decode replaced; as StreamReader reads it, in one string and no more.
        /// </summary>
        public static string DecodeText(ArraySegment<byte> bytes)
        {
            byte[] array = bytes.Array ?? Array.Empty<byte>();
            int at = bytes.Offset;
            int count = bytes.Count;
            bool Starts(params byte[] mark) => ByteRanges.StartsWith(array, at, at + count, mark);
            (Encoding encoding, int mark) = Starts(0xEF, 0xBB, 0xBF) ? (new UTF8Encoding(false), 3)
                : Starts(0xFF, 0xFE, 0x00, 0x00) ? (new UTF32Encoding(bigEndian: false, byteOrderMark: false), 4)
                : Starts(0x00, 0x00, 0xFE, 0xFF) ? (new UTF32Encoding(bigEndian: true, byteOrderMark: false), 4)
                : Starts(0xFF, 0xFE) ? (new UnicodeEncoding(bigEndian: false, byteOrderMark: false), 2)
                : Starts(0xFE, 0xFF) ? (new UnicodeEncoding(bigEndian: true, byteOrderMark: false), 2)
                : ((Encoding)new UTF8Encoding(false), 0);
            return encoding.GetString(array, at + mark, count - mark);
        }

        /// <summary>
        /// Creates <paramref name="path"/>, which must not exist (not even as a dangling link), with mode
        /// <paramref name="mode"/> on Unix; on Windows it inherits its folder's permissions.
        /// </summary>
        public static FileStream CreateNew(string path, int mode = OwnerOnly)
        {
#if NET7_0_OR_GREATER
            if (HostPlatform.IsMacOS)
            {
                // Made with the mode (the umask can only narrow it), so never wider for a moment; then exactly the mode.
                var stream = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 1, UnixCreateMode = (UnixFileMode)mode });
                File.SetUnixFileMode(stream.SafeFileHandle, (UnixFileMode)mode);
                return stream;
            }
#endif
            if (!HostPlatform.IsLinux)
            {
                return new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1, FileOptions.None);
            }

            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, path, Libc.OpenWriteOnly | Libc.OpenCreate | Libc.OpenExclusive | Libc.OpenNoFollow | Libc.OpenCloseOnExec, mode);
            if (fd < 0)
            {
                throw Failure("create", path, Marshal.GetLastWin32Error());
            }

            // open(2) applies the umask; the mode must not depend on it.
            Libc.fchmod(fd, mode);
            return new FileStream(new SafeFileHandle((IntPtr)fd, ownsHandle: true), FileAccess.Write, bufferSize: 1);
        }

        /// <summary>What is at <paramref name="path"/>, the link itself when it is one; null when nothing is (or not Linux).</summary>
        public static FileStatus? StatNoFollow(string path) =>
            HostPlatform.IsLinux ? UnixFiles.StatAt(Libc.AtFdCwd, path, out _) : null;

        /// <summary>An exclusive flock on descriptor <paramref name="fd"/> without waiting (Linux); false when another open of the file holds one.</summary>
        public static bool TryLockExclusive(int fd) => Libc.flock(fd, Libc.LockExclusive | Libc.LockNonBlocking) == 0;

        /// <summary>An IOException for a failed libc call, carrying the errno as its HResult as .NET's own do on Unix.</summary>
        public static IOException Failure(string what, string path, int errno) => errno switch
        {
            Libc.ENOENT => new FileNotFoundException($"Could not {what} '{path}': {Libc.ErrorText(errno)}.", path),
            Libc.EACCES or Libc.EPERM => new IOException($"Could not {what} '{path}': {Libc.ErrorText(errno)} (permission denied).", errno),
            _ => new IOException($"Could not {what} '{path}': {Libc.ErrorText(errno)}.", errno),
        };

        /// <summary>The errno an IOException carries (Linux), or 0.</summary>
        public static int ErrnoOf(Exception e) => HostPlatform.IsLinux && e is IOException && !(e is FileNotFoundException) ? e.HResult : 0;

        /// <summary>True when <paramref name="e"/> says the file system is full (or the quota spent).</summary>
        public static bool IsDiskFull(Exception e)
        {
            if (HostPlatform.IsWindows)
            {
                // ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL
                int code = e.HResult & 0xFFFF;
                return e is IOException && (code == 39 || code == 112);
            }

            int errno = ErrnoOf(e);
            return errno == Libc.ENOSPC || errno == Libc.EDQUOT;
        }

        /// <summary>True when <paramref name="e"/> says the file system is mounted read-only.</summary>
        public static bool IsReadOnlyFileSystem(Exception e) =>
            HostPlatform.IsWindows ? e is IOException && (e.HResult & 0xFFFF) == 19 /* ERROR_WRITE_PROTECT */ : ErrnoOf(e) == Libc.EROFS;

        /// <summary>
        /// Windows: the file opened once without following a reparse point, and checked on that handle: a junction, symbolic
        /// link or other name surrogate is refused, as is a folder; any other reparse point (deduplicated, a cloud placeholder,
        /// compressed by WOF) is a regular file, read through its filter (<see cref="IFolderHandle.OpenForReading"/>). Null when
        /// nothing is there.
        /// </summary>
        private static FileStream? OpenReadNoFollow(string path, long maxBytes, IFolderHandles tags)
        {
            using IFolderHandle? entry = tags.Open(path, ReparsePoints.ReadAttributes);
            if (entry == null)
            {
                return null;
            }

            if (ReparsePoints.RedirectsName(entry.Attributes, entry.ReparseTag))
            {
                throw new UnexpectedFileException(path, ReparsePoints.Describe(entry.ReparseTag), "a regular file");
            }

            if ((entry.Attributes & ReparsePoints.DirectoryAttribute) != 0)
            {
                throw new UnexpectedFileException(path, "a folder", "a regular file");
            }

            return Bounded(entry.OpenForReading(), path, maxBytes);
        }

        /// <summary>macOS, and a path to follow on Windows: by path; without <paramref name="followLinks"/>, a symbolic link is refused.</summary>
        private static FileStream OpenReadByPath(string path, long maxBytes, bool followLinks)
        {
            var info = new FileInfo(path);
            if (!followLinks && info.Exists && (info.Attributes & FileAttributes.ReparsePoint) != 0)
            {
                throw new UnexpectedFileException(path, "a link", "a regular file");
            }

            return Bounded(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.None), path, maxBytes);
        }

        /// <summary><paramref name="stream"/>, checked to be at most <paramref name="maxBytes"/> long; disposed when it is not.</summary>
        private static FileStream Bounded(FileStream stream, string path, long maxBytes)
        {
            try
            {
                CheckRegular(path, null, stream.Length, maxBytes);
                return stream;
            }
            catch
            {
                stream.Dispose();
                throw;
            }
        }

        private static void CheckRegular(string path, string? wrongKind, long size, long maxBytes)
        {
            if (wrongKind != null)
            {
                throw new UnexpectedFileException(path, wrongKind, "a regular file");
            }

            if (size > maxBytes)
            {
                throw new UnexpectedFileException(path, $"{size:N0} bytes long", $"at most {maxBytes:N0} bytes");
            }
        }
    }

    /// <summary>A file that is not what it should be: a link, FIFO or device where a regular file belongs, or far too large.</summary>
    internal sealed class UnexpectedFileException : IOException
    {
        public UnexpectedFileException(string path, string found, string expected)
            : base($"'{path}' is {found}; expected {expected}. It was not read.")
        {
            Path = path;
            Found = found;
        }

        public string Path { get; }

        public string Found { get; }
    }
}
