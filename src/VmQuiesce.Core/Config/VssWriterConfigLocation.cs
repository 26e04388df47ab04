using System;
using System.IO;
using System.Linq;
using System.Runtime.Versioning;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Config
{
    /// <summary>Finds vmvsswriter.cfg: from a path the user gave, or from VMware Server's install folder.</summary>
    public static class VssWriterConfigLocation
    {
        private const string ServerKey = @"SOFTWARE\VMware, Inc.\VMware Server";
        private const string InstallPathValue = "InstallPath";

        /// <summary>
        /// The file for <paramref name="fullPath"/> (already made absolute): an existing folder means the
        /// vmvsswriter.cfg inside it; an existing file, or a not yet existing *.cfg in an existing folder,
        /// means that file. Anything else is taken as a folder that does not exist.
        /// </summary>
        public static string Resolve(string fullPath)
        {
            if (Directory.Exists(fullPath))
            {
                return Path.Combine(fullPath, VssWriterConfig.FileName);
            }

            if (File.Exists(fullPath))
            {
                return fullPath;
            }

            string trimmed = fullPath.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
            bool namesFile = trimmed.Length == fullPath.Length && fullPath.EndsWith(".cfg", StringComparison.OrdinalIgnoreCase);
            if (!namesFile)
            {
                throw VmwareConfigFile.FolderNotFound(fullPath);
            }

            string? folder = Path.GetDirectoryName(fullPath);
            if (string.IsNullOrEmpty(folder) || !Directory.Exists(folder))
            {
                throw VmwareConfigFile.FolderNotFound(folder ?? fullPath);
            }

            return fullPath;
        }

        /// <summary>vmvsswriter.cfg in VMware Server's install folder, as the registry records it.</summary>
        public static string FindDefault()
        {
            if (!HostPlatform.IsWindows)
            {
                throw NotFound($"VMware Server's VSS writer runs only on Windows, and this is {HostPlatform.Name}: there is no install folder to find.");
            }

            string? folder = FindServerInstallFolder();
            if (folder == null)
            {
                throw NotFound($"VMware Server is not installed: HKLM\\{ServerKey} has no '{InstallPathValue}' (64-bit or 32-bit registry view).");
            }

            if (!Directory.Exists(folder))
            {
                throw NotFound($"The registry names '{folder}' as VMware Server's install folder, but that folder does not exist.");
            }

            return Path.Combine(folder, VssWriterConfig.FileName);
        }

        [SupportedOSPlatform("windows")]
        private static string? FindServerInstallFolder() =>
            new[] { WindowsRegistry.View.Registry64, WindowsRegistry.View.Registry32 }
                .Select(view => WindowsRegistry.ReadLocalMachineString(ServerKey, InstallPathValue, view))
                .FirstOrDefault(path => !string.IsNullOrWhiteSpace(path))?.Trim();

        private static VmQuiesceException NotFound(string why) =>
            new VmQuiesceException("VMwareServerNotFound", FailureKind.ObjectNotFound,
                why + " Specify the folder or file with -Path.", null)
            {
                Remedy = "Run the command again with -Path <folder or vmvsswriter.cfg path>.",
            };
    }
}
