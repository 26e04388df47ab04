using System.IO;

namespace VmQuiesce.Core.Logon
{
    /// <summary>The VM folders that the service logon cmdlets check and grant access to, as both backends accept them.</summary>
    internal static class VmFolders
    {
        /// <summary>
        /// The full path of <paramref name="folder"/>, which must be an existing folder and not itself a link: checking or
        /// granting through a symbolic link or junction would act on whatever folder it leads to (a grant with inheritance on
        /// C:\Windows, say), not on the VM folder that was named. On Linux a link root made is followed: its real path. A Windows volume mounted at the folder is refused too: a
        /// junction to another volume's root looks much the same.
        /// </summary>
        public static string Existing(string folder)
        {
            string path = WithoutTrailingSeparator(Path.GetFullPath(folder));
            if (!Directory.Exists(path))
            {
                throw new VmQuiesceException("FolderNotFound", FailureKind.ObjectNotFound, $"The VM folder '{folder}' does not exist or is not a folder.", folder);
            }

            // Without a trailing separator the attributes are the entry's own, not those of where a link leads.
            if ((File.GetAttributes(path) & FileAttributes.ReparsePoint) != 0)
            {
                // A Linux link root made (a datastore moved to another disk, say) is the administrator's own word: the
                // folder it leads to is checked and granted, by its real path. Anyone else's link is refused.
                if (Platform.HostPlatform.IsLinux && Platform.RegularFile.StatNoFollow(path) is Platform.FileStatus link && (link.Uid == 0 || link.Uid == Native.Libc.geteuid())
                    && Native.Libc.RealPath(path) is string real && Directory.Exists(real))
                {
                    return real;
                }

                throw new VmQuiesceException("FolderIsLink", FailureKind.InvalidArgument,
                    $"The VM folder '{folder}' is a symbolic link, junction or volume mount point; the folder itself was expected, so that no access is checked or granted on wherever the link leads. Nothing was changed.", folder)
                {
                    Remedy = "Pass the folder the link leads to, after checking that it is the VM folder; for a volume mounted at the folder, a folder inside the volume.",
                };
            }

            return path;
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
