using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VmQuiesce.Core.Logon
{
    /// <summary>The VM folders that the service logon cmdlets check and grant access to, as both backends accept them.</summary>
    internal static class VmFolders
    {
        /// <summary>Links followed before a path is given up on, as the kernel's ELOOP limit.</summary>
        private const int MaxLinksFollowed = 40;

        /// <summary>
        /// The full path of <paramref name="folder"/>, which must be an existing folder reached through no link: checking or
        /// granting through a symbolic link, at the folder or at any folder above it, would act on whatever tree it leads
        /// to, not on the VM folder that was named. A link root made is followed, one link at a time, and the path returned
        /// holds no link at all. The systemd backend's check; the Windows backend holds its folders open instead (<see cref="Windows.HeldFolder"/>).
        /// </summary>
        public static string Existing(string folder)
        {
            string path = FullPath(folder);
            for (int followed = 0; ; followed++)
            {
                if (!Directory.Exists(path))
                {
                    throw NotFound(folder);
                }

                string? link = FirstLinkOn(path);
                if (link == null)
                {
                    return path;
                }

                // A Linux link root made (a datastore moved to another disk, say) is the administrator's own word: the
                // path is read on through its target, whose own links are judged in turn. Anyone else's link is refused.
                if (followed < MaxLinksFollowed && TargetOfTrustedLink(link) is string target)
                {
                    path = WithoutTrailingSeparator(Path.GetFullPath(Path.Combine(target, path.Substring(link.Length).TrimStart(Path.DirectorySeparatorChar))));
                    continue;
                }

                throw IsLink(folder, link, link.Length == path.Length, "a symbolic link, junction or volume mount point");
            }
        }

        /// <summary>The full path of <paramref name="folder"/>, without a trailing separator: what a VM folder is known by.</summary>
        public static string FullPath(string folder) => WithoutTrailingSeparator(Path.GetFullPath(folder));

        /// <summary>The folders on the way to <paramref name="path"/> (a <see cref="FullPath"/>) below its root, then the path itself: C:\vm, C:\vm\a for C:\vm\a.</summary>
        public static IEnumerable<string> LeadingParts(string path)
        {
            int root = Path.GetPathRoot(path)?.Length ?? 0;
            for (int end = root + 1; end < path.Length; end++)
            {
                if (path[end] == Path.DirectorySeparatorChar)
                {
                    yield return path.Substring(0, end);
                }
            }

            yield return path;
        }

        public static VmQuiesceException NotFound(string folder) =>
            new VmQuiesceException("FolderNotFound", FailureKind.ObjectNotFound, $"The VM folder '{folder}' does not exist or is not a folder.", folder);

        /// <summary>The refusal of <paramref name="folder"/> because <paramref name="link"/>, the folder itself or one above it, is <paramref name="what"/>.</summary>
        public static VmQuiesceException IsLink(string folder, string link, bool isTheFolder, string what)
        {
            string where = isTheFolder ? $"The VM folder '{folder}' is" : $"The VM folder '{folder}' lies under '{link}', which is";
            return new VmQuiesceException("FolderIsLink", FailureKind.InvalidArgument,
                $"{where} {what}; a folder reached through none was expected, so that no access is checked or granted on wherever the link leads. Nothing was changed.", folder)
            {
                Remedy = "Pass the path the link leads to, after checking that it is the VM folder; for a folder on a volume mounted in a folder, a path through the volume's drive letter.",
            };
        }

        /// <summary>The shortest leading part of <paramref name="path"/> (a full path) that is a link, or null when none is.</summary>
        private static string? FirstLinkOn(string path)
        {
            // Without a trailing separator the attributes are the entry's own, not those of where a link leads.
            return LeadingParts(path).FirstOrDefault(part => (File.GetAttributes(part) & FileAttributes.ReparsePoint) != 0);
        }

        /// <summary>Where a link that root or this user made leads (Linux), as a full path; null for anyone else's link and elsewhere.</summary>
        private static string? TargetOfTrustedLink(string link)
        {
            if (!Platform.HostPlatform.IsLinux || !(Platform.RegularFile.StatNoFollow(link) is Platform.FileStatus status) || (status.Uid != 0 && status.Uid != Native.Libc.geteuid())
                || !(Platform.UnixFiles.ReadLink(link) is string target))
            {
                return null;
            }

            // Relative to the folder holding the link, which is reached through no link: its ".." is the lexical one.
            return Path.Combine(Path.GetDirectoryName(link)!, target);
        }

        private static string WithoutTrailingSeparator(string path)
        {
            int root = Path.GetPathRoot(path)?.Length ?? 0;
            int end = path.Length;
            while (end > root && (path[end - 1] == Path.DirectorySeparatorChar || path[end - 1] == Path.AltDirectorySeparatorChar))
            {
                end--;
            }

            return path.Substring(0, end);
        }
    }
}
