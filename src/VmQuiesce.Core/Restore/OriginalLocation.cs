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

        /// <summary>The folders a restore of <paramref name="point"/> to its original location may write in; throws RestoreVmFolderProtected when one is a system location.</summary>
        public static IReadOnlyList<string> AllowedFolders(RestorePoint point)
        {
            IReadOnlyList<string> recorded = point.VmFolders ?? RestorePoint.FoldersOf(point.Files.Select(file => file.OriginalPath));
            var folders = new List<string>();
            // A folder that is not absolute allows nothing: the targets it was meant for are refused as outside.
            foreach (string full in recorded.Where(Path.IsPathRooted).Select(folder => Trimmed(Path.GetFullPath(folder))).Distinct())
            {
                if ((ProtectedBy(full) ?? ProtectedBy(Resolved(full))) is string system)
                {
                    throw new VmQuiesceException("RestoreVmFolderProtected", FailureKind.SecurityError,
                        $"Restore point '{point.Id}' says VM '{point.VmName}' used the folder '{full}', which is the system location '{system}': nothing is restored there. Nothing was restored.", full)
                    {
                        Remedy = "Restore with -Destination <folder>, which writes the files there instead, and look at them before moving any into place.",
                    };
                }

                folders.Add(full);
            }

            return folders;
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

        /// <summary>The system location <paramref name="folder"/> is or lies in, or null.</summary>
        private static string? ProtectedBy(string folder)
        {
            if (string.Equals(folder, Trimmed(Path.GetPathRoot(folder) ?? folder), PathComparison))
            {
                return folder;
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
                foreach (string folder in new[] { "/etc", "/usr", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys", "/run", "/var/lib/vmquiesce" })
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
