using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>Why a folder on the way to a file was refused.</summary>
    internal enum FolderProblem
    {
        /// <summary>A symbolic link someone other than root (or this process's user) made.</summary>
        Link,

        /// <summary>A file (or FIFO, device...) where a folder should be: the path runs under a file.</summary>
        NotAFolder,

        /// <summary>A folder owned by someone other than root, this process's user or the file's owner.</summary>
        ForeignOwner,

        /// <summary>The folder does not exist (and was not to be created).</summary>
        Missing,
    }

    /// <summary>A folder on the way to a file that VmQuiesce will not write through.</summary>
    internal sealed class FolderTrustException : IOException
    {
        public FolderTrustException(FolderProblem problem, string folder, string message)
            : base(message)
        {
            Problem = problem;
            Folder = folder;
        }

        public FolderProblem Problem { get; }

        /// <summary>The folder (or link, or file) that was refused.</summary>
        public string Folder { get; }

        /// <summary>Windows: the reparse tag of the <see cref="FolderProblem.Link"/> that was refused, where it was read.</summary>
        public uint? ReparseTag { get; init; }
    }

    /// <summary>
    /// A folder VmQuiesce writes files into as root, reached safely: on Linux it is opened from the root one
    /// component at a time (openat with O_NOFOLLOW|O_DIRECTORY), each folder owned by root, this process's user
    /// or the owner of the file to be written, and a symbolic link followed only when root (or this process's
    /// user) made it. Files are then created, linked, renamed and removed relative to the open folder, so a
    /// folder swapped for a link after the check changes nothing. Elsewhere the same checks run on the path
    /// (links are refused, owners are not checked), which a racing local user could still defeat: on Windows
    /// each entry's reparse tag is read from its own handle, and only a reparse point that leads elsewhere (a
    /// junction, symbolic link or mount point; <see cref="ReparsePoints.RedirectsName"/>) is refused, so that a
    /// OneDrive, deduplicated or container folder is written into as any other; macOS has no tags, and refuses
    /// every symbolic link.
    /// </summary>
    internal sealed class TrustedFolder : IDisposable
    {
        internal const int MaxLinks = 40;
        private const int OwnerOnlyFolder = 0x1C0; // 0700

        private readonly SafeFileHandle? _handle;

        /// <summary>Where folders are reached by path: Windows reads reparse tags through these; null on macOS.</summary>
        private readonly IFolderHandles? _tags;

        private TrustedFolder(string path, SafeFileHandle? handle, IFolderHandles? tags = null)
        {
            Path = path;
            _handle = handle;
            _tags = tags;
        }

        public string Path { get; }

        private int Fd => (int)_handle!.DangerousGetHandle();

        /// <summary>The open folder's descriptor (Linux), for its owner, mode and times; -1 where folders are reached by path.</summary>
        internal int Descriptor => _handle == null ? -1 : Fd;

        /// <summary>
        /// Opens folder <paramref name="path"/> (absolute). With <paramref name="create"/>, missing folders are made
        /// (<paramref name="madeFolderMode"/>, 0700 unless told, less the umask; then given to <paramref name="owner"/> so
        /// it can reach its file); without, a missing folder throws <see cref="FolderTrustException"/> with <see cref="FolderProblem.Missing"/>.
        /// </summary>
        public static TrustedFolder Open(string path, uint? owner, bool create, int madeFolderMode = OwnerOnlyFolder)
        {
            if (!HostPlatform.IsLinux)
            {
                return OpenByPath(path, create, ReparsePoints.ThisHostsTags);
            }

            return new TrustedFolder(path, Walk(OpenRoot(), "/", Components(path), owner, create, followRootLinks: true, madeFolderMode));
        }

        /// <summary>
        /// <see cref="Open"/> as Windows (<paramref name="tags"/>, its handle layer) and macOS (null) do it: the folders on the way
        /// checked and made by path.
        /// </summary>
        internal static TrustedFolder OpenByPath(string path, bool create, IFolderHandles? tags)
        {
            WalkByPath(path, create, tags);
            return new TrustedFolder(path, null, tags);
        }

        /// <summary>
        /// Opens folder <paramref name="path"/> (absolute), which a user named for new files (a log, a key file, a copy),
        /// making what is missing (0700) as <see cref="Open"/> does: links on the way only root's, folders on the way
        /// root's or those of the named folder's own owner (of its deepest folder that exists, while it is still to be
        /// made; the folders made are given to them). A file made exclusively in someone's own folder and handled
        /// through descriptors after cannot be redirected by them, so their folder (a home, a USB stick) is fine.
        /// </summary>
        public static TrustedFolder OpenForNewFiles(string path)
        {
            string full = System.IO.Path.GetFullPath(path);
            if (!HostPlatform.IsLinux)
            {
                return Open(full, null, create: true);
            }

            string existing = full;
            FileStatus? found;
            while ((found = UnixFiles.StatFollowingLinks(existing)) == null && System.IO.Path.GetDirectoryName(existing) is string parent)
            {
                existing = parent;
            }

            return Open(full, found?.Uid, create: true);
        }

        /// <summary>
        /// Opens the folder <paramref name="relative"/> ('/'-separated) below this one, following no link at all,
        /// so nothing below is reached outside this folder (a restore's -Destination); otherwise as <see cref="Open"/>.
        /// </summary>
        public TrustedFolder OpenBelow(string relative, uint? owner, bool create)
        {
            string path = Components(relative).Aggregate(Path, System.IO.Path.Combine);
            if (_handle == null)
            {
                return OpenByPath(path, create, _tags);
            }

            int fd = UnixFiles.OpenAt(Fd, ".", Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenCloseOnExec, 0);
            var start = fd >= 0 ? new SafeFileHandle((IntPtr)fd, ownsHandle: true) : throw RegularFile.Failure("open", Path, Marshal.GetLastWin32Error());
            return new TrustedFolder(path, Walk(start, Path, Components(relative), owner, create, followRootLinks: false, OwnerOnlyFolder));
        }

        /// <summary>
        /// Opens folder <paramref name="path"/> whose parents were checked already (a repository's own folders):
        /// only its last component must not be a link. Throws <see cref="FolderTrustException"/> when it is one, or
        /// not a folder.
        /// </summary>
        public static TrustedFolder OpenNoFollow(string path)
        {
            if (!HostPlatform.IsLinux)
            {
                return OpenNoFollowByPath(path, ReparsePoints.ThisHostsTags);
            }

            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, path, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenNoFollow | Libc.OpenCloseOnExec, 0);
            if (fd >= 0)
            {
                return new TrustedFolder(path, new SafeFileHandle((IntPtr)fd, ownsHandle: true));
            }

            int errno = Marshal.GetLastWin32Error();
            FileStatus? found = RegularFile.StatNoFollow(path);
            throw found == null ? new FolderTrustException(FolderProblem.Missing, path, $"The folder '{path}' does not exist.")
                : found.Value.IsSymbolicLink ? new FolderTrustException(FolderProblem.Link, path, $"'{path}' is a symbolic link, not a folder.")
                : found.Value.IsDirectory ? RegularFile.Failure("open the folder", path, errno)
                : new FolderTrustException(FolderProblem.NotAFolder, path, $"'{path}' is {found.Value.KindName}, not a folder.");
        }

        /// <summary><see cref="OpenNoFollow"/> as Windows (<paramref name="tags"/>, its handle layer) and macOS (null) do it, by path.</summary>
        internal static TrustedFolder OpenNoFollowByPath(string path, IFolderHandles? tags)
        {
            if (ReparsePoints.RedirectionByPath(path, tags) is string link)
            {
                throw new FolderTrustException(FolderProblem.Link, path, $"'{path}' is {link}, not a folder.");
            }

            return Directory.Exists(path) ? new TrustedFolder(path, null, tags) : throw new FolderTrustException(FolderProblem.Missing, path, $"The folder '{path}' does not exist.");
        }

        /// <summary>What is at <paramref name="name"/> in this folder (a link is not followed); null when nothing is.</summary>
        public FileStatus? Stat(string name)
        {
            if (_handle == null)
            {
                return null;
            }

            FileStatus? status = UnixFiles.StatAt(Fd, name, out int errno);
            if (status == null && errno != Libc.ENOENT)
            {
                throw RegularFile.Failure("inspect", Combine(name), errno);
            }

            return status;
        }

        /// <summary>True when <paramref name="name"/> exists here (as anything, a dangling link too).</summary>
        public bool Exists(string name) => _handle == null ? File.Exists(Combine(name)) || Directory.Exists(Combine(name)) || ReparsePoints.HasReparsePointAttribute(Combine(name)) : Stat(name) != null;

        /// <summary>
        /// Creates <paramref name="name"/> here, which must not exist, readable by this process's user only;
        /// written past the page cache when <paramref name="direct"/> and the file system allows.
        /// </summary>
        public CreatedFile CreateNew(string name, bool direct)
        {
            if (_handle == null)
            {
                return new CreatedFile(RegularFile.CreateNew(Combine(name)), -1);
            }

            int flags = Libc.OpenWriteOnly | Libc.OpenCreate | Libc.OpenExclusive | Libc.OpenNoFollow | Libc.OpenCloseOnExec;
            int fd = direct && Environment.Is64BitProcess ? UnixFiles.OpenAt(Fd, name, flags | Libc.OpenDirect, RegularFile.OwnerOnly) : -1;
            if (fd >= 0)
            {
                Libc.fchmod(fd, RegularFile.OwnerOnly);
                return new CreatedFile(DirectFileStream.FromDescriptor(fd, Combine(name)), fd);
            }

            // EINVAL: this file system does not do O_DIRECT; write through the page cache.
            if (direct && Environment.Is64BitProcess && Marshal.GetLastWin32Error() != Libc.EINVAL)
            {
                throw RegularFile.Failure("create", Combine(name), Marshal.GetLastWin32Error());
            }

            fd = UnixFiles.OpenAt(Fd, name, flags, RegularFile.OwnerOnly);
            if (fd < 0)
            {
                throw RegularFile.Failure("create", Combine(name), Marshal.GetLastWin32Error());
            }

            Libc.fchmod(fd, RegularFile.OwnerOnly);
            return new CreatedFile(new FileStream(new SafeFileHandle((IntPtr)fd, ownsHandle: true), FileAccess.Write, bufferSize: 1), fd);
        }

        /// <summary>
        /// Makes the folder <paramref name="name"/> here, which must not exist (0700 until its owner and mode are set through
        /// <see cref="Descriptor"/>), and opens it without following a link. Throws <see cref="FolderTrustException"/> when a
        /// link is (or is put) there, or the folder opened is not the one made (someone swapped it as it was made).
        /// </summary>
        public TrustedFolder CreateFolder(string name)
        {
            string path = Combine(name);
            if (_handle == null)
            {
                if (ReparsePoints.RedirectionByPath(path, _tags) is string link)
                {
                    throw new FolderTrustException(FolderProblem.Link, path, $"'{path}' is {link}; VmQuiesce does not write through it.");
                }

                if (File.Exists(path) || Directory.Exists(path))
                {
                    throw new IOException($"Cannot create the folder '{path}': something is there already.");
                }

                Directory.CreateDirectory(path);
                return new TrustedFolder(path, null, _tags);
            }

            int fd = Libc.mkdirat(Fd, name, OwnerOnlyFolder) == 0
                ? UnixFiles.OpenAt(Fd, name, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenNoFollow | Libc.OpenCloseOnExec, 0)
                : -1;
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (Stat(name)?.IsSymbolicLink == true)
                {
                    throw new FolderTrustException(FolderProblem.Link, path, $"'{path}' is a symbolic link{(UnixFiles.ReadLinkAt(Fd, name) is string target ? $" to '{target}'" : string.Empty)}; nothing is written through it.");
                }

                throw RegularFile.Failure("create the folder", path, errno);
            }

            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            FileStatus? status = UnixFiles.StatAt(fd, string.Empty, out int statErrno);
            if (status == null || status.Value.Uid != Libc.geteuid())
            {
                handle.Dispose();
                throw status == null ? RegularFile.Failure("inspect", path, statErrno)
                    : new FolderTrustException(FolderProblem.ForeignOwner, path, $"The folder '{path}' was swapped for one of user id {status.Value.Uid} as it was made; nothing is written there.");
            }

            return new TrustedFolder(path, handle);
        }

        /// <summary>Removes the empty folder <paramref name="name"/> here (never through a link).</summary>
        public void DeleteFolder(string name)
        {
            if (_handle == null)
            {
                Directory.Delete(Combine(name));
                return;
            }

            if (Libc.unlinkat(Fd, name, Libc.AtRemoveDir) != 0)
            {
                throw RegularFile.Failure("delete the folder", Combine(name), Marshal.GetLastWin32Error());
            }
        }

        /// <summary>
        /// Opens the existing regular file <paramref name="name"/> for writing without following a link; null when
        /// it is missing or not a regular file.
        /// </summary>
        public FileStream? OpenExistingForWrite(string name)
        {
            if (_handle == null)
            {
                return File.Exists(Combine(name)) && ReparsePoints.RedirectionByPath(Combine(name), _tags) == null ? new FileStream(Combine(name), FileMode.Open, FileAccess.ReadWrite, FileShare.None) : null;
            }

            int fd = UnixFiles.OpenAt(Fd, name, 0x2 /* O_RDWR */ | Libc.OpenNoFollow | Libc.OpenNonBlocking | Libc.OpenCloseOnExec, 0);
            if (fd < 0)
            {
                return null;
            }

            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            if (UnixFiles.StatAt(fd, string.Empty, out _)?.IsRegularFile != true)
            {
                handle.Dispose();
                return null;
            }

            return new FileStream(handle, FileAccess.ReadWrite, bufferSize: 1);
        }

        /// <summary>
        /// Gives the file <paramref name="existing"/> a second name <paramref name="name"/>, which must be free. False
        /// when this file system (or platform) has no hard links; the caller then moves the file instead.
        /// </summary>
        public bool TryLink(string existing, string name)
        {
            if (_handle == null)
            {
                return false;
            }

            if (Libc.linkat(Fd, existing, Fd, name) == 0)
            {
                return true;
            }

            int errno = Marshal.GetLastWin32Error();
            if (errno == Libc.EPERM || errno == Libc.EOPNOTSUPP || errno == Libc.EMLINK)
            {
                return false;
            }

            throw RegularFile.Failure("link", Combine(name), errno);
        }

        /// <summary>Renames <paramref name="from"/> to <paramref name="to"/> in one step, replacing what <paramref name="to"/> was.</summary>
        public void Rename(string from, string to)
        {
            if (_handle == null)
            {
                if (File.Exists(Combine(to)))
                {
                    File.Replace(Combine(from), Combine(to), null);
                }
                else
                {
                    File.Move(Combine(from), Combine(to));
                }

                return;
            }

            if (Libc.renameat(Fd, from, Fd, to) != 0)
            {
                throw RegularFile.Failure("rename", Combine(from) + "' to '" + Combine(to), Marshal.GetLastWin32Error());
            }
        }

        /// <summary>
        /// Puts a file holding <paramref name="text"/> (UTF-8) at <paramref name="name"/> in one step: a new temporary file
        /// beside it, written and given <paramref name="mode"/> through its own descriptor (on Linux), is renamed over what
        /// was there (a link itself, never what it leads to), so readers see the old file or the new one, never half of one.
        /// </summary>
        public void ReplaceWithText(string name, string text, int mode)
        {
            string temporary = name + ".tmp-" + Guid.NewGuid().ToString("N");
            using (CreatedFile file = CreateNew(temporary, direct: false))
            {
                byte[] bytes = new UTF8Encoding(false).GetBytes(text);
                file.Stream.Write(bytes, 0, bytes.Length);
                file.SetOwnerAndMode(null, null, mode);
            }

            Rename(temporary, name);
        }

        /// <summary>Removes the entry <paramref name="name"/> (a link itself, never its target); missing is fine.</summary>
        public void Delete(string name)
        {
            if (_handle == null)
            {
                File.Delete(Combine(name));
                return;
            }

            if (Libc.unlinkat(Fd, name, 0) != 0 && Marshal.GetLastWin32Error() != Libc.ENOENT)
            {
                throw RegularFile.Failure("delete", Combine(name), Marshal.GetLastWin32Error());
            }
        }

        /// <summary>
        /// The names of the entries here, listed through the open folder itself where there is one (a folder swapped for a
        /// link since it was opened changes nothing listed), byte for byte: a name that is not UTF-8 can be opened and removed.
        /// </summary>
        public IEnumerable<string> Names() =>
            _handle == null ? Directory.EnumerateFileSystemEntries(Path).Select(entry => System.IO.Path.GetFileName(entry)) : UnixFiles.Names(Fd, Path);

        /// <summary>Makes renames, links and deletions in this folder durable.</summary>
        public void Sync()
        {
            if (_handle == null)
            {
                UnixFiles.SyncDirectory(Path);
            }
            else
            {
                Libc.fsync(Fd);
            }
        }

        public string Combine(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose() => _handle?.Dispose();

        private static SafeFileHandle Walk(SafeFileHandle start, string startShown, IEnumerable<string> components, uint? owner, bool create, bool followRootLinks, int madeFolderMode)
        {
            uint self = Libc.geteuid();
            var pending = new LinkedList<string>(components);
            string shown = startShown;
            var current = start;
            var made = new HashSet<(ulong, ulong)>();
            int links = 0;
            try
            {
                while (pending.Count > 0)
                {
                    string name = pending.First!.Value;
                    pending.RemoveFirst();
                    if (name.Length == 0 || name == ".")
                    {
                        continue;
                    }

                    string next = name == ".." ? (System.IO.Path.GetDirectoryName(shown) ?? "/") : System.IO.Path.Combine(shown, name);
                    if (name == ".." && !followRootLinks)
                    {
                        throw new FolderTrustException(FolderProblem.Link, next, $"'..' would leave '{startShown}'; nothing is written outside it.");
                    }

                    int fd = UnixFiles.OpenAt((int)current.DangerousGetHandle(), name, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenNoFollow | Libc.OpenCloseOnExec, 0);
                    if (fd < 0)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        FileStatus? found = UnixFiles.StatAt((int)current.DangerousGetHandle(), name, out _);
                        if (found?.IsSymbolicLink == true)
                        {
                            string? target = UnixFiles.ReadLinkAt((int)current.DangerousGetHandle(), name);
                            if (!followRootLinks)
                            {
                                throw new FolderTrustException(FolderProblem.Link, next,
                                    $"'{next}' is a symbolic link{(target == null ? string.Empty : $" to '{target}'")} inside '{startShown}'; nothing is written through a link out of it.");
                            }

                            if (target == null || (found.Value.Uid != 0 && found.Value.Uid != self) || ++links > MaxLinks)
                            {
                                throw new FolderTrustException(FolderProblem.Link, next,
                                    $"'{next}' is a symbolic link{(target == null ? string.Empty : $" to '{target}'")} made by user id {found.Value.Uid}; VmQuiesce follows only links that root made, so it does not write through it.");
                            }

                            // The link's target is walked the same way, from the root when it is absolute.
                            foreach (string part in Components(target).Reverse())
                            {
                                pending.AddFirst(part);
                            }

                            if (System.IO.Path.IsPathRooted(target))
                            {
                                current.Dispose();
                                current = OpenRoot();
                                shown = "/";
                            }

                            continue;
                        }

                        if (found != null && !found.Value.IsDirectory)
                        {
                            throw new FolderTrustException(FolderProblem.NotAFolder, next, $"'{next}' is {found.Value.KindName}, not a folder.");
                        }

                        if (errno != Libc.ENOENT)
                        {
                            throw RegularFile.Failure("open the folder", next, errno);
                        }

                        if (!create)
                        {
                            throw new FolderTrustException(FolderProblem.Missing, next, $"The folder '{next}' does not exist.");
                        }

                        fd = MakeFolder(current, name, next, owner, made, madeFolderMode);
                    }

                    var opened = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
                    FileStatus status = UnixFiles.StatAt(fd, string.Empty, out int statErrno) ?? throw RegularFile.Failure("inspect", next, statErrno);
                    if (status.Uid != 0 && status.Uid != self && status.Uid != owner && !made.Contains((status.Device, status.Inode)))
                    {
                        opened.Dispose();
                        throw new FolderTrustException(FolderProblem.ForeignOwner, next,
                            $"The folder '{next}' belongs to user id {status.Uid}, which is neither root nor the owner of the file written there{(owner == null ? string.Empty : $" (user id {owner})")}; that user could swap its contents for links, so VmQuiesce does not write there.");
                    }

                    current.Dispose();
                    current = opened;
                    shown = next;
                }

                return current;
            }
            catch
            {
                current.Dispose();
                throw;
            }
        }

        private static int MakeFolder(SafeFileHandle parent, string name, string shown, uint? owner, HashSet<(ulong, ulong)> made, int mode)
        {
            int parentFd = (int)parent.DangerousGetHandle();
            if (Libc.mkdirat(parentFd, name, mode) != 0 && Marshal.GetLastWin32Error() != Libc.EEXIST)
            {
                throw RegularFile.Failure("create the folder", shown, Marshal.GetLastWin32Error());
            }

            int fd = UnixFiles.OpenAt(parentFd, name, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenNoFollow | Libc.OpenCloseOnExec, 0);
            if (fd < 0)
            {
                throw RegularFile.Failure("open the folder", shown, Marshal.GetLastWin32Error());
            }

            FileStatus? status = UnixFiles.StatAt(fd, string.Empty, out _);
            if (status != null && status.Value.Uid == Libc.geteuid())
            {
                // The file's owner must be able to reach its file; nobody else may look in.
                if (owner != null && owner != status.Value.Uid)
                {
                    Libc.fchown(fd, owner.Value, uint.MaxValue);
                }

                made.Add((status.Value.Device, status.Value.Inode));
            }

            return fd;
        }

        private static SafeFileHandle OpenRoot()
        {
            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, "/", Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenCloseOnExec, 0);
            return fd >= 0 ? new SafeFileHandle((IntPtr)fd, ownsHandle: true) : throw RegularFile.Failure("open", "/", Marshal.GetLastWin32Error());
        }

        private static IEnumerable<string> Components(string path) => path.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries);

        /// <summary>Windows and macOS: refuse links on the way (<see cref="ReparsePoints.RedirectionByPath"/>), create what is missing.</summary>
        private static void WalkByPath(string path, bool create, IFolderHandles? tags)
        {
            string? root = System.IO.Path.GetPathRoot(path);
            string current = root ?? string.Empty;
            foreach (string part in path.Substring(current.Length).Split(new[] { System.IO.Path.DirectorySeparatorChar, System.IO.Path.AltDirectorySeparatorChar }, StringSplitOptions.RemoveEmptyEntries))
            {
                current = System.IO.Path.Combine(current, part);
                if (ReparsePoints.RedirectionByPath(current, tags) is string link)
                {
                    throw new FolderTrustException(FolderProblem.Link, current, $"'{current}' is {link}; VmQuiesce does not write through it.");
                }

                if (File.Exists(current))
                {
                    throw new FolderTrustException(FolderProblem.NotAFolder, current, $"'{current}' is a file, not a folder.");
                }

                if (!Directory.Exists(current))
                {
                    if (!create)
                    {
                        throw new FolderTrustException(FolderProblem.Missing, current, $"The folder '{current}' does not exist.");
                    }

                    Directory.CreateDirectory(current);
                }
            }
        }
    }

    /// <summary>A file just made by <see cref="TrustedFolder.CreateNew"/>: its stream, and on Linux its descriptor for owner and mode.</summary>
    internal sealed class CreatedFile : IDisposable
    {
        private readonly int _fd;

        public CreatedFile(Stream stream, int fd)
        {
            Stream = stream;
            _fd = fd;
        }

        public Stream Stream { get; }

        /// <summary>The file's descriptor (Linux), for its owner, mode and times; -1 elsewhere.</summary>
        internal int Descriptor => _fd;

        /// <summary>A path to this very file for tools this process starts (Linux); null elsewhere, where its own path is used.</summary>
        public string? DescriptorPath => _fd >= 0 ? UnixFiles.DescriptorPath(_fd) : null;

        /// <summary>
        /// True when <paramref name="name"/> in <paramref name="folder"/> is still this file (Linux; always true
        /// elsewhere): whoever may write the folder can have renamed it away or put a link in its place.
        /// </summary>
        public bool IsStillNamed(TrustedFolder folder, string name) =>
            _fd < 0 || (folder.Stat(name) is FileStatus named && named.IsSameFile(UnixFiles.Stat(_fd, folder.Combine(name))));

        /// <summary>
        /// Takes an exclusive flock (Linux) without waiting, held until <see cref="Unlock"/> or until the file is
        /// closed: another process can then tell that this file is being written, and a file left by a dead process
        /// from one that is not. False when another open of the file holds it. Always true elsewhere.
        /// </summary>
        public bool TryLock() => _fd < 0 || RegularFile.TryLockExclusive(_fd);

        /// <summary>Lets others lock the file again (tools that lock files themselves, such as a snapshot revert).</summary>
        public void Unlock()
        {
            if (_fd >= 0)
            {
                Libc.flock(_fd, Libc.LockUnlock);
            }
        }

        /// <summary>Makes the owner and mode durable too (fdatasync, which flushes the data, may leave them out).</summary>
        public void SyncMetadata()
        {
            if (_fd >= 0 && Libc.fsync(_fd) != 0)
            {
                throw new IOException($"Could not flush the new file to disk: {Libc.ErrorText(Marshal.GetLastWin32Error())}.", Marshal.GetLastWin32Error());
            }
        }

        /// <summary>
        /// Gives the file its owner and mode (Unix; a no-op elsewhere). Only the permission bits are kept. When
        /// this process may not give files away (not root), the file stays this user's and loses its group and
        /// other bits rather than granting them to the wrong people.
        /// </summary>
        public void SetOwnerAndMode(uint? uid, uint? gid, int mode)
        {
            if (_fd < 0)
            {
                return;
            }

            int permissions = mode & 0x1FF;
            if ((uid != null || gid != null) && Libc.fchown(_fd, uid ?? uint.MaxValue, gid ?? uint.MaxValue) != 0)
            {
                permissions &= 0x1C0;
            }

            if (Libc.fchmod(_fd, permissions) != 0)
            {
                throw new IOException($"Could not set the mode of the new file: {Libc.ErrorText(Marshal.GetLastWin32Error())}.", Marshal.GetLastWin32Error());
            }
        }

        /// <summary>
        /// Unlocks before closing: a child another thread forks meanwhile shares the descriptor until its exec,
        /// and the flock would outlive the close by that long (.NET unlocks its own locks the same way).
        /// </summary>
        public void Dispose()
        {
            Unlock();
            Stream.Dispose();
        }
    }
}
