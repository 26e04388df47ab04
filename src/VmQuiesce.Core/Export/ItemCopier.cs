using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Export
{
    /// <summary>One file or folder copied out of a mounted restore point.</summary>
    public sealed class RestoredItem
    {
        internal RestoredItem(string source, string destination)
        {
            Source = source;
            Destination = destination;
        }

        /// <summary>The item's path under the mount folder, as asked for: disk0/etc/hosts.</summary>
        public string Source { get; }

        public string Destination { get; }

        public long Files { get; internal set; }

        public long Bytes { get; internal set; }

        /// <summary>What was not copied, and why: symbolic links, devices, FIFOs and sockets are never copied out of a guest.</summary>
        public IReadOnlyList<string> Skipped => _skipped;

        internal readonly List<string> _skipped = new List<string>();

        public override string ToString() => $"{Source} -> {Destination}";
    }

    /// <summary>
    /// Copies files and folders out of a mounted guest file system (Restore-VmBackupItem), trusting nothing in it:
    /// the path asked for is walked one name at a time and a symbolic link anywhere on it is refused; inside a
    /// folder, links, devices, FIFOs and sockets are listed as skipped, never followed or recreated; folders nest at
    /// most <see cref="MaxDepth"/> deep. The guest's folders are read through descriptors, so a tree deeper than a
    /// path can name is copied whole, and names are kept byte for byte (see <see cref="FileNameText"/>); what is
    /// shown of a name is escaped (<see cref="FileNameText.Printable"/>). Owners, modes, times, holes and hard links are
    /// kept (the owner and group unless an <see cref="ItemOwner"/> gives them), except the set-user-id and set-group-id bits, which
    /// a host copy of a guest's program must not carry whoever owns it (nor are extended attributes, where file capabilities
    /// live, copied). Linux only, as mounts are.
    /// </summary>
    internal static class ItemCopier
    {
        internal const int MaxDepth = 128;
        private const uint KeptModeBits = 0x3FF | 0x200; // rwx for all, and the sticky bit; never setuid/setgid
        private const string ChangedRemedy = "Copy into a folder no other user can change (for example a new folder under /root), then move the files where they belong.";

        /// <summary>The full path of <paramref name="item"/> under <paramref name="root"/>, checked one name at a time.</summary>
        public static string Resolve(string root, string item)
        {
            string path = root;
            foreach (string name in NamesOf(item))
            {
                path = Path.Combine(path, name);
                FileStatus stat = RegularFile.StatNoFollow(path)
                    ?? throw new VmQuiesceException("ItemNotFound", FailureKind.ObjectNotFound, $"The restore point has no '{FileNameText.Printable(item)}' ('{FileNameText.Printable(name)}' is not there).", item);
                if (stat.IsSymbolicLink)
                {
                    throw new VmQuiesceException("ItemIsLink", FailureKind.SecurityError,
                        $"'{FileNameText.Printable(item)}' passes through the symbolic link '{FileNameText.Printable(name)}'; links inside a guest's file system are never followed. Ask for the path the link points to.", item);
                }
            }

            return path;
        }

        /// <summary>
        /// The names of <paramref name="item"/>, a relative path with '/' or '\\'; throws ItemPathInvalid for an absolute
        /// path, '.' or '..', or no name at all. Its form only: whether the point holds it is <see cref="Resolve"/>'s to say.
        /// </summary>
        public static string[] NamesOf(string item)
        {
            string[] names = item.Replace('\\', '/').Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries);
            if (names.Length == 0 || names.Any(name => name == "." || name == "..") || item.StartsWith("/", StringComparison.Ordinal))
            {
                throw new VmQuiesceException("ItemPathInvalid", FailureKind.InvalidArgument,
                    $"'{FileNameText.Printable(item)}' is not a path inside the mounted restore point; expected a relative path such as disk0/etc/hosts, without '.' or '..'.", item);
            }

            return names;
        }

        /// <summary>
        /// Copies <paramref name="source"/> (resolved by <see cref="Resolve"/>) to <paramref name="destination"/>, which must not
        /// exist unless <paramref name="force"/>. The destination's folder is opened once and everything is made below it
        /// through open descriptors, following no link: whoever may change that folder (its owner, or anyone in /tmp) cannot
        /// redirect a later file or folder, or a mode or owner, elsewhere by swapping a folder for a link mid-copy. The copy
        /// is made under a name of its own and renamed into place once whole: a copy that fails or is stopped leaves nothing
        /// half-made, and the item -Force replaces stays until then. Every copy gets <paramref name="owner"/>'s ids where
        /// it gives them, the guest's otherwise.
        /// </summary>
        public static void Copy(string source, string destination, bool force, RestoredItem result, CancellationToken cancel, ItemOwner? owner = null)
        {
            string name = Path.GetFileName(destination);
            using TrustedFolder parent = OpenDestination(Path.GetDirectoryName(destination)!);
            if (!force && parent.Exists(name))
            {
                throw new VmQuiesceException("ItemExists", FailureKind.ResourceBusy, $"'{destination}' exists already; nothing was overwritten.", destination)
                {
                    Remedy = "Choose another -Destination, or add -Force to replace it.",
                };
            }

            string temporary = TemporaryName("item");
            try
            {
                FileStatus? made;
                using (SafeFileHandle sourceFolder = OpenSource(Libc.AtFdCwd, Path.GetDirectoryName(source)!, Path.GetDirectoryName(source)!, Libc.OpenDirectory, expected: null))
                {
                    // Shown as asked for (disk0/etc/hosts), not by the path of a mount that ends with the command.
                    made = CopyEntry(sourceFolder, Path.GetFileName(source), string.Join("/", NamesOf(result.Source)), parent, temporary, string.Empty, new CopyRun(result, owner, cancel), 0);
                }

                if (made is FileStatus copy)
                {
                    PutInPlace(parent, temporary, name, copy, destination);
                }
            }
            catch (Exception e)
            {
                RemoveQuietly(parent, temporary);
                if (e is IOException || e is UnauthorizedAccessException)
                {
                    throw CopyFailure(result.Source, destination, e);
                }

                throw;
            }
        }

        /// <summary>
        /// Renames the finished copy <paramref name="temporary"/> (the file or folder <paramref name="copy"/>) to <paramref name="name"/>
        /// (<paramref name="destination"/>); what was there (with -Force) is moved aside first and removed after.
        /// </summary>
        private static void PutInPlace(TrustedFolder parent, string temporary, string name, FileStatus copy, string destination)
        {
            if (parent.Stat(temporary) is not FileStatus still || !still.IsSameFile(copy))
            {
                string path = parent.Combine(temporary);
                throw new VmQuiesceException("ItemDestinationChanged", FailureKind.SecurityError,
                    $"'{FileNameText.Printable(path)}', where the copy was made, is no longer what the copy made: someone changed the destination while it was copied. Nothing was put in place.", path)
                {
                    Remedy = ChangedRemedy,
                };
            }

            string? aside = parent.Exists(name) ? TemporaryName("replaced") : null;
            if (aside != null)
            {
                parent.Rename(name, aside);
            }

            try
            {
                parent.Rename(temporary, name);
            }
            catch (IOException) when (aside != null)
            {
                parent.Rename(aside, name);
                throw;
            }

            if (aside != null)
            {
                try
                {
                    RemoveForReplace(parent, aside, 0);
                }
                catch (IOException e)
                {
                    throw new VmQuiesceException("ItemCopyFailed", FailureKind.WriteError,
                        $"'{destination}' is restored, but the item it replaced, moved aside to '{FileNameText.Printable(parent.Combine(aside))}', could not be removed: {FileNameText.Printable(e.Message)}", parent.Combine(aside), e)
                    {
                        Remedy = "Remove what is left of the replaced item by hand (an immutable file, chattr +i, cannot be removed until chattr -i).",
                    };
                }
            }
        }

        /// <summary>A name in the destination's folder for a copy not yet in place, or an item being replaced: hidden, and no guest name (which may be 255 bytes long) in it.</summary>
        private static string TemporaryName(string purpose) => ".vmq-" + purpose + "-" + Guid.NewGuid().ToString("N").Substring(0, 12);

        private static void RemoveQuietly(TrustedFolder parent, string name)
        {
            try
            {
                if (parent.Exists(name))
                {
                    RemoveForReplace(parent, name, 0);
                }
            }
            catch (IOException)
            {
                // What is left is root's (0700 until finished) and named as VmQuiesce's; the failure reported is the copy's.
            }
        }

        /// <summary>A write that failed (the destination full, a folder that could not be made), as a typed error.</summary>
        private static VmQuiesceException CopyFailure(string source, string destination, Exception failure)
        {
            string said = FileNameText.Printable(failure.Message);
            return RegularFile.IsDiskFull(failure)
                ? new VmQuiesceException("ItemDestinationFull", FailureKind.LimitsExceeded,
                    $"The file system of '{destination}' is full: '{FileNameText.Printable(source)}' could not be copied whole ({said}). What the copy had made was removed; an item it was to replace is as it was.", destination, failure)
                {
                    Remedy = "Free space there, or copy into another -Destination.",
                }
                : new VmQuiesceException("ItemCopyFailed", FailureKind.WriteError,
                    $"'{FileNameText.Printable(source)}' could not be copied to '{destination}': {said} What the copy had made was removed; an item it was to replace is as it was.", destination, failure);
        }

        /// <summary>The destination's folder, made (0700) where missing (see <see cref="TrustedFolder.OpenForNewFiles"/>).</summary>
        private static TrustedFolder OpenDestination(string folder)
        {
            try
            {
                return TrustedFolder.OpenForNewFiles(folder);
            }
            catch (FolderTrustException e)
            {
                throw new VmQuiesceException("ItemDestinationUnsafe", FailureKind.SecurityError, $"{e.Message} Nothing was copied into '{folder}'.", e.Folder, e)
                {
                    Remedy = "Copy into a real folder owned by root or by the user who owns -Destination, reached without links another user made.",
                };
            }
        }

        /// <summary>One item's copy: what it reports, and where the first copy of each file the guest links under more names is.</summary>
        private sealed class CopyRun
        {
            public CopyRun(RestoredItem result, ItemOwner? owner, CancellationToken cancel)
            {
                Result = result;
                Owner = owner;
                Cancel = cancel;
            }

            public RestoredItem Result { get; }

            /// <summary>The owner and group asked for (-Owner, -Group); null keeps the guest's.</summary>
            public ItemOwner? Owner { get; }

            public CancellationToken Cancel { get; }

            /// <summary>The item's own folder, while it is made (0700 until done: no one else reaches what is below it).</summary>
            public TrustedFolder? Top { get; set; }

            /// <summary>The guest's file (device, inode) of more than one name, and the path below <see cref="Top"/> of its copy.</summary>
            public Dictionary<(ulong Device, ulong Inode), string> Copied { get; } = new Dictionary<(ulong, ulong), string>();
        }

        /// <summary>
        /// Copies <paramref name="name"/> of the guest's open folder <paramref name="sourceFolder"/> (<paramref name="shown"/> in
        /// messages) to <paramref name="target"/> in <paramref name="parent"/>, which is <paramref name="below"/> the item's folder.
        /// </summary>
        /// <returns>What it made (null when it skipped the entry).</returns>
        private static FileStatus? CopyEntry(SafeFileHandle sourceFolder, string name, string shown, TrustedFolder parent, string target, string below, CopyRun run, int depth)
        {
            run.Cancel.ThrowIfCancellationRequested();
            int folderFd = (int)sourceFolder.DangerousGetHandle();
            FileStatus stat = UnixFiles.StatAt(folderFd, name, out int errno) ?? throw RegularFile.Failure("inspect", FileNameText.Printable(shown), errno);
            if (stat.IsDirectory)
            {
                if (depth >= MaxDepth)
                {
                    run.Result._skipped.Add($"{FileNameText.Printable(shown)}: folders nest deeper than {MaxDepth}");
                    return null;
                }

                using SafeFileHandle source = OpenSource(folderFd, name, shown, Libc.OpenDirectory, stat);
                using TrustedFolder folder = Refusing(parent, target, shown, () => parent.CreateFolder(target));
                run.Top ??= folder;
                foreach (string entry in UnixFiles.Names((int)source.DangerousGetHandle(), FileNameText.Printable(shown)).OrderBy(entry => entry, StringComparer.Ordinal))
                {
                    CopyEntry(source, entry, shown + "/" + entry, folder, entry, below.Length == 0 ? entry : below + "/" + entry, run, depth + 1);
                }

                KeepMetadata(folder.Descriptor, folder.Path, stat, run.Owner);
                return UnixFiles.Stat(folder.Descriptor, folder.Path);
            }

            if (stat.IsRegularFile)
            {
                run.Result.Files++;
                var identity = (stat.Device, stat.Inode);
                if (stat.Links > 1 && run.Copied.TryGetValue(identity, out string? first) && TryLink(run.Top!, first, parent, target))
                {
                    return null; // never the item itself, which is the first name copied
                }

                using SafeFileHandle source = OpenSource(folderFd, name, shown, Libc.OpenNonBlocking, stat);
                using CreatedFile output = Refusing(parent, target, shown, () => parent.CreateNew(target, direct: false));
                CopyData(source, output, stat.Size, shown, parent.Combine(target), run.Cancel);
                KeepMetadata(output.Descriptor, parent.Combine(target), stat, run.Owner);
                run.Result.Bytes += stat.Size;
                if (stat.Links > 1 && run.Top != null)
                {
                    run.Copied[identity] = below;
                }

                return UnixFiles.Stat(output.Descriptor, parent.Combine(target));
            }

            run.Result._skipped.Add($"{FileNameText.Printable(shown)}: {stat.KindName}, never copied out of a guest");
            return null;
        }

        /// <summary>
        /// Gives the copy at <paramref name="first"/> (a path below <paramref name="top"/>) the further name <paramref name="target"/>
        /// in <paramref name="parent"/>, as the guest's file has: its data is written once, however many names it has. False
        /// when it cannot be (a path too long to name, a file system without hard links, or the file's limit of links
        /// reached): the caller copies it then.
        /// </summary>
        private static bool TryLink(TrustedFolder top, string first, TrustedFolder parent, string target)
        {
            // Below the item's own folder, which no one else may enter while it is made: nothing there can be a link.
            int fd = UnixFiles.OpenAt(top.Descriptor, first, Libc.OpenReadOnly | Libc.OpenNoFollow | Libc.OpenCloseOnExec);
            if (fd < 0)
            {
                return false;
            }

            try
            {
                if (Libc.linkat(fd, string.Empty, parent.Descriptor, target, Libc.AtEmptyPath) == 0)
                {
                    return true;
                }

                int errno = Marshal.GetLastWin32Error();
                return errno == Libc.EPERM || errno == Libc.EMLINK || errno == Libc.EOPNOTSUPP ? false : throw RegularFile.Failure("link", FileNameText.Printable(parent.Combine(target)), errno);
            }
            finally
            {
                Libc.close(fd);
            }
        }

        /// <summary>
        /// Copies the data of <paramref name="source"/> (<paramref name="size"/> bytes) into <paramref name="output"/> (<paramref name="destination"/>), leaving
        /// its holes holes: a guest's file of terabytes that holds next to nothing takes next to nothing on the host, and
        /// the copy reads only what it holds.
        /// </summary>
        private static void CopyData(SafeFileHandle source, CreatedFile output, long size, string shown, string destination, CancellationToken cancel)
        {
            IReadOnlyList<FileExtent> extents = UnixFiles.TryGetDataExtents((int)source.DangerousGetHandle(), size) ?? new[] { new FileExtent(0, size) };
            if (Libc.ftruncate(output.Descriptor, size) != 0)
            {
                throw RegularFile.Failure("set the size of", FileNameText.Printable(destination), Marshal.GetLastWin32Error());
            }

            using var input = new FileStream(source, FileAccess.Read, 1);
            byte[] buffer = new byte[1 << 20];
            foreach (FileExtent extent in extents)
            {
                input.Position = extent.Offset;
                output.Stream.Position = extent.Offset;
                for (long left = extent.Length; left > 0;)
                {
                    cancel.ThrowIfCancellationRequested();
                    int read = Read(input, buffer, (int)Math.Min(buffer.Length, left), shown);
                    if (read == 0)
                    {
                        break;
                    }

                    output.Stream.Write(buffer, 0, read);
                    left -= read;
                }
            }

            output.Stream.Flush();
        }

        /// <summary>Reads from the guest's file: a failure there (an I/O error, where a chunk of the point is damaged) is the point's, not the destination's.</summary>
        private static int Read(FileStream input, byte[] buffer, int count, string shown)
        {
            try
            {
                return input.Read(buffer, 0, count);
            }
            catch (IOException e)
            {
                throw ReadFailure(shown, e);
            }
        }

        private static VmQuiesceException ReadFailure(string shown, IOException failure) =>
            new VmQuiesceException("ItemReadFailed", FailureKind.ReadError,
                $"'{FileNameText.Printable(shown)}' could not be read from the restore point: {FileNameText.Printable(failure.Message)} Nothing was copied in its place; an item it was to replace is as it was.", shown, failure)
            {
                Remedy = "Run Test-VmBackup on the point: it names a damaged chunk, which the next backup stores again.",
            };

        /// <summary>
        /// Opens <paramref name="name"/> of the guest's folder <paramref name="folderFd"/> without following a link (and
        /// without waiting on a FIFO), checked to be the file <paramref name="expected"/> that was looked at.
        /// </summary>
        private static SafeFileHandle OpenSource(int folderFd, string name, string shown, int flags, FileStatus? expected)
        {
            int fd = UnixFiles.OpenAt(folderFd, name, Libc.OpenReadOnly | Libc.OpenNoFollow | Libc.OpenCloseOnExec | flags);
            if (fd < 0)
            {
                throw RegularFile.Failure("open", FileNameText.Printable(shown), Marshal.GetLastWin32Error());
            }

            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            if (expected is FileStatus looked && !UnixFiles.Stat(fd, shown).IsSameFile(looked))
            {
                handle.Dispose();
                throw new IOException($"'{FileNameText.Printable(shown)}' changed while it was copied.");
            }

            return handle;
        }

        /// <summary>Runs <paramref name="create"/>; a link found where the copier makes its own file or folder is refused by name.</summary>
        private static T Refusing<T>(TrustedFolder parent, string name, string source, Func<T> create)
        {
            try
            {
                return create();
            }
            catch (IOException e) when ((e as FolderTrustException)?.Problem == FolderProblem.Link || parent.Stat(name)?.IsSymbolicLink == true)
            {
                string path = parent.Combine(name);
                throw new VmQuiesceException("ItemDestinationIsLink", FailureKind.SecurityError,
                    $"'{FileNameText.Printable(path)}' is a symbolic link where the copy of '{FileNameText.Printable(source)}' was to be made: someone changed the destination while it was copied. Nothing was written through it, and what the copy had made was removed.", path, e)
                {
                    Remedy = ChangedRemedy,
                };
            }
            catch (FolderTrustException e)
            {
                string path = parent.Combine(name);
                throw new VmQuiesceException("ItemDestinationChanged", FailureKind.SecurityError, $"{FileNameText.Printable(e.Message)} The copy of '{FileNameText.Printable(source)}' stopped, and what it had made was removed.", path, e)
                {
                    Remedy = ChangedRemedy,
                };
            }
        }

        /// <summary>
        /// Mode first, then times, owner last (the guest's, or <paramref name="owner"/>'s where it gives one), all through the
        /// open descriptor (a name could be a link by then).
        /// </summary>
        private static void KeepMetadata(int fd, string destination, FileStatus stat, ItemOwner? owner)
        {
            (uint uid, uint gid) = owner?.Of(stat) ?? (stat.Uid, stat.Gid);
            if (Libc.fchmod(fd, (int)(stat.Mode & KeptModeBits)) != 0
                || Libc.futimens(fd, new[] { stat.Accessed, stat.Written }) != 0
                || Libc.fchown(fd, uid, gid) != 0)
            {
                throw new IOException($"Cannot set the mode, times and owner of '{FileNameText.Printable(destination)}': {Libc.ErrorText(Marshal.GetLastWin32Error())}.");
            }
        }

        /// <summary>Removes what -Force replaces, below the open folder: a link is removed itself, never what it points to.</summary>
        private static void RemoveForReplace(TrustedFolder parent, string name, int depth)
        {
            if (parent.Descriptor < 0)
            {
                string path = parent.Combine(name);
                if (RegularFile.StatNoFollow(path)?.IsSymbolicLink == true || File.Exists(path) || (File.GetAttributes(path) & FileAttributes.ReparsePoint) != 0)
                {
                    File.Delete(path);
                }
                else
                {
                    Directory.Delete(path, recursive: true);
                }

                return;
            }

            FileStatus? stat = parent.Stat(name);
            if (stat?.IsDirectory != true)
            {
                parent.Delete(name);
                return;
            }

            if (depth > MaxDepth)
            {
                throw new IOException($"'{parent.Combine(name)}' nests deeper than {MaxDepth} folders; it was not replaced.");
            }

            // Opened without following a link, by its own owner's id: a copy earlier kept the guest's owners.
            using (TrustedFolder folder = parent.OpenBelow(name, stat.Value.Uid, create: false))
            {
                foreach (string entry in folder.Names().ToList())
                {
                    RemoveForReplace(folder, entry, depth + 1);
                }
            }

            parent.DeleteFolder(name);
        }
    }
}
