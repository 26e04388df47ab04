using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>
    /// Where a scheduled job finds PowerShell and VmQuiesce when it runs as root or SYSTEM: an installed PowerShell
    /// at a path that stays (never the PowerShell that registered the job, which may be a file in a NuGet cache or a
    /// dotnet tool, and never one found on the registering user's PATH), and the module by its absolute path.
    /// </summary>
    public static class JobEnvironment
    {
        /// <summary>Where PowerShell installs, in order of preference (PowerShell 7 before Windows PowerShell).</summary>
        public static IReadOnlyList<string> PowerShellCandidates() => HostPlatform.IsWindows
            ? new[]
            {
                Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.ProgramFiles), "PowerShell", "7", "pwsh.exe"),
                Path.Combine(Environment.SystemDirectory, "WindowsPowerShell", "v1.0", "powershell.exe"),
            }
            : new[] { "/usr/bin/pwsh", "/opt/microsoft/powershell/7/pwsh", "/usr/local/bin/pwsh", "/snap/bin/pwsh", "/usr/local/microsoft/powershell/7/pwsh" };

        /// <summary>The first installed PowerShell, or an error that says where it was looked for.</summary>
        public static string FindPowerShell(Func<string, bool>? exists = null)
        {
            exists ??= File.Exists;
            IReadOnlyList<string> candidates = PowerShellCandidates();
            return candidates.FirstOrDefault(exists) ?? throw new VmQuiesceException("PowerShellNotFound", FailureKind.ObjectNotFound,
                $"No installed PowerShell was found for the job ({string.Join(", ", candidates)}); the PowerShell running now is not used, since it may be a file in a package cache that goes away.", candidates[0])
            {
                Remedy = "Install PowerShell (Debian: the powershell package from packages.microsoft.com), or give -PowerShellPath the absolute path of a pwsh that root or SYSTEM can run.",
            };
        }

        /// <summary>
        /// What the job imports: the module's folder above its version folder (…/VmQuiesce, so an update to a newer
        /// version is what the next run loads), else the folder the module loaded from.
        /// </summary>
        public static string ModuleImportPath(string moduleBase)
        {
            string trimmed = moduleBase.TrimEnd('/', '\\');
            string? parent = Path.GetDirectoryName(trimmed);
            return parent != null && Version.TryParse(Path.GetFileName(trimmed), out _)
                && string.Equals(Path.GetFileName(parent), "VmQuiesce", StringComparison.OrdinalIgnoreCase)
                ? parent
                : trimmed;
        }

        /// <summary>
        /// Why the job's account should not run the module from <paramref name="modulePath"/>, or null: a module in a
        /// user's home or profile is installed for that user only (it goes with the profile, and that user could
        /// change what root or SYSTEM runs).
        /// </summary>
        public static string? WhyNotForJobAccount(string modulePath) =>
            WhyNotForJobAccount(modulePath, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), HostPlatform.IsWindows);

        /// <param name="home">The registering user's home or profile folder.</param>
        internal static string? WhyNotForJobAccount(string modulePath, string home, bool windows)
        {
            string account = windows ? "SYSTEM" : "root";
            char separator = windows ? '\\' : '/';
            home = home.TrimEnd('/', '\\');
            // root's own home is the job's account's home on Linux.
            bool underHome = home.Length > 1 && (windows || home != "/root")
                && modulePath.StartsWith(home + separator, windows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
            return underHome
                ? $"VmQuiesce is installed for the current user only ('{modulePath}' is in '{home}'): the job runs as {account}, and that user could change what {account} runs. " +
                  "Install it for all users (Install-PSResource VmQuiesce -Scope AllUsers, or copy it under the system module folder)."
                : null;
        }
    }
}
