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
            string[] names = item.Replace('\\', '/').Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries);
            if (names.Length == 0 || names.Any(name => name == "." || name == "..") || item.StartsWith("/", StringComparison.Ordinal))
            {
                throw new VmQuiesceException("ItemPathInvalid", FailureKind.InvalidArgument,
                    $"'{item}' is not a path inside the mounted restore point; expected a relative path such as disk0/etc/hosts, without '.' or '..'.", item);
            }

            string path = root;
            foreach (string name in names)
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

        /// <summary>Copies <paramref name="source"/> (resolved by <see cref="Resolve"/>) to <paramref name="destination"/>, which must not exist unless <paramref name="force"/>.</summary>
        public static void Copy(string source, string destination, bool force, RestoredItem result, CancellationToken cancel)
        {
            if (File.Exists(destination) || Directory.Exists(destination) || IsLinkAt(destination))
            {
                if (!force)
                {
                    throw new VmQuiesceException("ItemExists", FailureKind.ResourceBusy, $"'{destination}' exists already; nothing was overwritten.", destination)
                    {
                        Remedy = "Choose another -Destination, or add -Force to replace it.",
                    };
                }

                RemoveForReplace(destination);
            }

            CopyEntry(source, destination, result, 0, cancel);
        }

        private static void CopyEntry(string source, string destination, RestoredItem result, int depth, CancellationToken cancel)
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

                Directory.CreateDirectory(destination);
                foreach (string entry in Directory.EnumerateFileSystemEntries(source).OrderBy(e => e, StringComparer.Ordinal))
                {
                    CopyEntry(entry, Path.Combine(destination, Path.GetFileName(entry)), result, depth + 1, cancel);
                }
            }
            else if (stat.IsRegularFile)
            {
                using (var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
                using (var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1))
                {
                    byte[] buffer = new byte[1 << 20];
                    int read;
                    while ((read = input.Read(buffer, 0, buffer.Length)) > 0)
                    {
                        cancel.ThrowIfCancellationRequested();
                        output.Write(buffer, 0, read);
                        result.Bytes += read;
                    }
                }

                result.Files++;
            }
            else
            {
                result._skipped.Add($"{source}: {stat.KindName}, never copied out of a guest");
                return;
            }

            KeepMetadata(source, destination, stat);
        }

        private static void KeepMetadata(string source, string destination, FileStatus stat)
        {
            if (Libc.lchown(destination, stat.Uid, stat.Gid) != 0 || Libc.chmod(destination, stat.Mode & KeptModeBits) != 0)
            {
                throw new IOException($"Cannot set the owner and mode of '{destination}': {Libc.ErrorText(Marshal.GetLastWin32Error())}.");
            }

            if (stat.IsDirectory)
            {
                Directory.SetLastWriteTimeUtc(destination, Directory.GetLastWriteTimeUtc(source));
                Directory.SetLastAccessTimeUtc(destination, Directory.GetLastAccessTimeUtc(source));
            }
            else
            {
                File.SetLastWriteTimeUtc(destination, File.GetLastWriteTimeUtc(source));
                File.SetLastAccessTimeUtc(destination, File.GetLastAccessTimeUtc(source));
            }
        }

        private static bool IsLinkAt(string path) => RegularFile.StatNoFollow(path)?.IsSymbolicLink == true;

        /// <summary>Removes what -Force replaces; a link is removed itself, never what it points to.</summary>
        private static void RemoveForReplace(string destination)
        {
            if (IsLinkAt(destination) || File.Exists(destination))
            {
                File.Delete(destination);
            }
            else
            {
                Directory.Delete(destination, recursive: true);
            }
        }
    }
}
