using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Restore
{
    /// <summary>
    /// Where a restore to the original location may write: only inside the folders the point's VM used at backup time
    /// (<see cref="RestorePoint.VmFolders"/>; for a point made before they were recorded, the folders of its files'
    /// recorded paths), none of them a system location. A manifest is data: even an authentic one (made with the key)
    /// must not turn a restore into a write to /etc/cron.d. Each target is checked as written and with its existing
    /// folders' links resolved, so a link inside a VM folder does not lead out of it.
    /// </summary>
    internal static class OriginalLocation
    {
        private static StringComparison PathComparison => HostPlatform.IsWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;

        /// <summary>
        /// The folders a restore of <paramref name="point"/> to its original location may write in; throws
        /// RestoreManifestUntrusted when the manifest cannot be trusted to say where that is (<see cref="WhyUntrusted"/>),
        /// RestoreVmFolderProtected when a folder is a system location.
        /// </summary>
        public static IReadOnlyList<string> AllowedFolders(IRestorePointSource repository, RestorePoint point)
        {
            if (WhyUntrusted(repository, point) is string untrusted)
            {
                throw new VmQuiesceException("RestoreManifestUntrusted", FailureKind.SecurityError,
                    $"Restore point '{point.Id}' names where its files go, and {untrusted}: it is not restored to the folders it names. Nothing was restored.", point.Id)
                {
                    Remedy = "Restore with -Destination <folder>, which writes the files there instead, and look at them before moving any into place; " +
                        "keep repositories encrypted (New-VmBackupRepository; Copy-VmBackup into one) or writable by root alone.",
                };
            }

            IReadOnlyList<string> recorded = point.VmFolders ?? RestorePoint.FoldersOf(point.Files.Select(file => file.OriginalPath));
            var folders = new List<string>();
            // A folder that is not absolute allows nothing: the targets it was meant for are refused as outside.
            foreach (string full in recorded.Where(Path.IsPathRooted).Select(folder => Trimmed(Path.GetFullPath(folder))).Distinct())
            {
                if ((ProtectedBy(full) ?? ProtectedBy(Resolved(full))) is string system)
                {
                    throw new VmQuiesceException("RestoreVmFolderProtected", FailureKind.SecurityError,
                        $"Restore point '{point.Id}' says VM '{point.VmName}' used the folder '{full}', which is or lies in '{system}', a system location or a hidden (configuration) folder: nothing is restored there. Nothing was restored.", full)
                    {
                        Remedy = "Restore with -Destination <folder>, which writes the files there instead, and look at them before moving any into place.",
                    };
                }

                folders.Add(full);
            }

            return folders;
        }

        /// <summary>
        /// Why the manifest of <paramref name="point"/> is no more than the word of someone other than root, or null. A
        /// sealed manifest (an encrypted repository) was made with the key. An unsealed one counts only in a folder
        /// repository whose folder, points folder and manifest no one else can write; an unencrypted bucket's manifests
        /// are whatever anyone with its credentials wrote.
        /// </summary>
        internal static string? WhyUntrusted(IRestorePointSource repository, RestorePoint point)
        {
            if (repository.Encryption.IsEncrypted)
            {
                return null;
            }

            if (!(repository is BackupRepository folder))
            {
                return $"the repository '{repository.Location}' is not encrypted, so its manifests are whatever anyone with its credentials wrote";
            }

            string? writable = new[] { folder.Path, folder.PointsFolder, point.ManifestFile }.Select(RepositoryLayout.DescribeOthersWrite).FirstOrDefault(why => why != null);
            return writable == null ? null : $"the repository '{folder.Path}' is not encrypted and {writable}, so its manifest may be someone else's";
        }

        /// <summary>Throws RestoreOutsideVmFolders unless <paramref name="target"/> (a full path) lies inside one of <paramref name="allowed"/>, as written and with links resolved.</summary>
        public static void Check(RestorePoint point, IReadOnlyList<string> allowed, string target)
        {
            string folder = Path.GetDirectoryName(target)!;
            string resolved = Resolved(folder);
            if (!allowed.Any(root => IsWithin(folder, root) && IsWithin(resolved, Resolved(root))))
            {
                string where = resolved == folder ? string.Empty : $" (its folder resolves to '{resolved}')";
                string folders = allowed.Count == 0 ? "none" : string.Join(", ", allowed.Select(root => $"'{root}'"));
                throw new VmQuiesceException("RestoreOutsideVmFolders", FailureKind.SecurityError,
                    $"The restore target '{target}'{where} of restore point '{point.Id}' is outside the folders VM '{point.VmName}' used at backup time ({folders}). Nothing was restored.", target)
                {
                    Remedy = "Restore with -Destination <folder>, which writes the files there instead.",
                };
            }
        }

        /// <summary>
        /// The system location or hidden folder <paramref name="folder"/> is or lies in, or null. A hidden folder
        /// (~/.ssh, ~/.config/autostart, ~/.local/bin) holds what a user's or root's programs and logins act on, never a VM.
        /// </summary>
        private static string? ProtectedBy(string folder)
        {
            if (string.Equals(folder, Trimmed(Path.GetPathRoot(folder) ?? folder), PathComparison))
            {
                return folder;
            }

            string[] parts = folder.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
            int hidden = Array.FindIndex(parts, part => part.StartsWith(".", StringComparison.Ordinal));
            if (hidden >= 0)
            {
                return string.Join(Path.DirectorySeparatorChar.ToString(), parts, 0, hidden + 1);
            }

            if (!HostPlatform.IsWindows && folder.Split('/')[1].StartsWith("lib", StringComparison.Ordinal))
            {
                return "/" + folder.Split('/')[1];
            }

            return SystemFolders().FirstOrDefault(system => IsWithin(folder, system));
        }

        private static IEnumerable<string> SystemFolders()
        {
            yield return Trimmed(HostKeyStore.Folder);
            if (!HostPlatform.IsWindows)
            {
                foreach (string folder in new[] { "/etc", "/usr", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys", "/run", "/var/spool", "/var/lib/vmquiesce" })
                {
                    yield return folder;
                }

                yield break;
            }

            foreach (Environment.SpecialFolder special in new[] { Environment.SpecialFolder.Windows, Environment.SpecialFolder.System, Environment.SpecialFolder.ProgramFiles, Environment.SpecialFolder.ProgramFilesX86 })
            {
                string folder = Environment.GetFolderPath(special);
                if (folder.Length > 0)
                {
                    yield return Trimmed(folder);
                }
            }

            yield return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmQuiesce");
        }

        /// <summary>
        /// <paramref name="folder"/> with the links of its existing part resolved (its missing part appended as it is);
        /// as it is where links are not resolved here (Windows: restores refuse reparse points on the way).
        /// </summary>
        private static string Resolved(string folder)
        {
            if (HostPlatform.IsWindows)
            {
                return folder;
            }

            string existing = folder;
            while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is string parent)
            {
                existing = parent;
            }

            string real = Libc.RealPath(existing) ?? existing;
            return Trimmed(existing.Length == folder.Length ? real : Path.Combine(real, folder.Substring(existing.Length).TrimStart('/')));
        }

        private static bool IsWithin(string path, string folder) =>
            string.Equals(path, folder, PathComparison) || path.StartsWith(folder.EndsWith(Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? folder : folder + Path.DirectorySeparatorChar, PathComparison);

        private static string Trimmed(string path) =>
            path.Length > (Path.GetPathRoot(path) ?? string.Empty).Length ? path.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar) : path;
    }
}
