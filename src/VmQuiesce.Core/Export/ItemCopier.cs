using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
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
    /// most <see cref="MaxDepth"/> deep. Owners, modes and times are kept, except the set-user-id and set-group-id
    /// bits, which a host copy of a guest's program must not carry.
    /// </summary>
    internal static class ItemCopier
    {
        internal const int MaxDepth = 128;
        private const uint KeptModeBits = 0x3FF | 0x200; // rwx for all, and the sticky bit; never setuid/setgid

        /// <summary>The full path of <paramref name="item"/> under <paramref name="root"/>, checked one name at a time.</summary>
        public static string Resolve(string root, string item)
        {
            string path = root;
            foreach (string name in NamesOf(item))
            {
                path = Path.Combine(path, name);
                FileStatus stat = RegularFile.StatNoFollow(path)
                    ?? throw new VmQuiesceException("ItemNotFound", FailureKind.ObjectNotFound, $"The restore point has no '{item}' ('{name}' is not there).", item);
                if (stat.IsSymbolicLink)
                {
                    throw new VmQuiesceException("ItemIsLink", FailureKind.SecurityError,
                        $"'{item}' passes through the symbolic link '{name}'; links inside a guest's file system are never followed. Ask for the path the link points to.", item);
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
                    $"'{item}' is not a path inside the mounted restore point; expected a relative path such as disk0/etc/hosts, without '.' or '..'.", item);
            }

            return names;
        }

        /// <summary>
        /// Copies <paramref name="source"/> (resolved by <see cref="Resolve"/>) to <paramref name="destination"/>, which must not
        /// exist unless <paramref name="force"/>. The destination's folder is opened once and everything is made below it
        /// through open descriptors, following no link: whoever may change that folder (its owner, or anyone in /tmp) cannot
        /// redirect a later file or folder, or a mode or owner, elsewhere by swapping a folder for a link mid-copy.
        /// </summary>
        public static void Copy(string source, string destination, bool force, RestoredItem result, CancellationToken cancel)
        {
            string name = Path.GetFileName(destination);
            using TrustedFolder parent = OpenDestination(Path.GetDirectoryName(destination)!);
            if (parent.Exists(name))
            {
                if (!force)
                {
                    throw new VmQuiesceException("ItemExists", FailureKind.ResourceBusy, $"'{destination}' exists already; nothing was overwritten.", destination)
                    {
                        Remedy = "Choose another -Destination, or add -Force to replace it.",
                    };
                }

                RemoveForReplace(parent, name, 0);
            }

            CopyEntry(source, parent, name, result, 0, cancel);
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

        private static void CopyEntry(string source, TrustedFolder parent, string name, RestoredItem result, int depth, CancellationToken cancel)
        {
            cancel.ThrowIfCancellationRequested();
            FileStatus stat = RegularFile.StatNoFollow(source) ?? throw new FileNotFoundException($"'{source}' went away while it was copied.", source);
            if (stat.IsDirectory)
            {
                if (depth >= MaxDepth)
                {
                    result._skipped.Add($"{source}: folders nest deeper than {MaxDepth}");
                    return;
                }

                using TrustedFolder folder = Refusing(parent, name, source, () => parent.CreateFolder(name));
                foreach (string entry in Directory.EnumerateFileSystemEntries(source).OrderBy(e => e, StringComparer.Ordinal))
                {
                    CopyEntry(entry, folder, Path.GetFileName(entry), result, depth + 1, cancel);
                }

                KeepMetadata(folder.Descriptor, folder.Path, source, stat);
            }
            else if (stat.IsRegularFile)
            {
                using (var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
                using (CreatedFile output = Refusing(parent, name, source, () => parent.CreateNew(name, direct: false)))
                {
                    byte[] buffer = new byte[1 << 20];
                    int read;
                    while ((read = input.Read(buffer, 0, buffer.Length)) > 0)
                    {
                        cancel.ThrowIfCancellationRequested();
                        output.Stream.Write(buffer, 0, read);
                        result.Bytes += read;
                    }

                    output.Stream.Flush();
                    KeepMetadata(output.Descriptor, parent.Combine(name), source, stat);
                }

                result.Files++;
            }
            else
            {
                result._skipped.Add($"{source}: {stat.KindName}, never copied out of a guest");
            }
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
                    $"'{path}' is a symbolic link where the copy of '{source}' was to be made: someone changed the destination while it was copied. Nothing was written through it; what was copied before stays.", path, e)
                {
                    Remedy = "Copy into a folder no other user can change (for example a new folder under /root), then move the files where they belong.",
                };
            }
            catch (FolderTrustException e)
            {
                string path = parent.Combine(name);
                throw new VmQuiesceException("ItemDestinationChanged", FailureKind.SecurityError, $"{e.Message} The copy of '{source}' stopped; what was copied before stays.", path, e)
                {
                    Remedy = "Copy into a folder no other user can change (for example a new folder under /root), then move the files where they belong.",
                };
            }
        }

        /// <summary>
        /// Mode first, then times, owner last, all through the open descriptor (a name could be a link by then). Elsewhere
        /// (no descriptor) only the times are kept, by path.
        /// </summary>
        private static void KeepMetadata(int fd, string destination, string source, FileStatus stat)
        {
            DateTime written = stat.IsDirectory ? Directory.GetLastWriteTimeUtc(source) : File.GetLastWriteTimeUtc(source);
            DateTime accessed = stat.IsDirectory ? Directory.GetLastAccessTimeUtc(source) : File.GetLastAccessTimeUtc(source);
            if (fd < 0)
            {
                if (stat.IsDirectory)
                {
                    Directory.SetLastWriteTimeUtc(destination, written);
                    Directory.SetLastAccessTimeUtc(destination, accessed);
                }
                else
                {
                    File.SetLastWriteTimeUtc(destination, written);
                    File.SetLastAccessTimeUtc(destination, accessed);
                }

                return;
            }

            if (Libc.fchmod(fd, (int)(stat.Mode & KeptModeBits)) != 0
                || Libc.futimens(fd, new[] { Libc.Timespec.From(accessed), Libc.Timespec.From(written) }) != 0
                || Libc.fchown(fd, stat.Uid, stat.Gid) != 0)
            {
                throw new IOException($"Cannot set the mode, times and owner of '{destination}': {Libc.ErrorText(Marshal.GetLastWin32Error())}.");
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
