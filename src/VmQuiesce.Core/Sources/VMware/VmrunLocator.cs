using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.Versioning;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>A place vmrun may be, and why it was looked for there.</summary>
    public sealed class VmrunCandidate
    {
        public VmrunCandidate(string path, string origin)
        {
            Path = path;
            Origin = origin;
        }

        public string Path { get; }

        /// <summary>E.g. "-VmrunPath", "registry VMware Workstation (64-bit view)", "usual location".</summary>
        public string Origin { get; }

        public override string ToString() => $"{Path} ({Origin})";
    }

    /// <summary>
    /// Finds vmrun: an explicit path wins; then the environment variable VMQUIESCE_TOOL_VMRUN (as <see cref="HostTools"/>
    /// names a program for this host); then, on Windows, the InstallPath that VMware Workstation,
    /// Player and VIX (the vmrun that drives VMware Server 2.0) record in the registry, 64- then 32-bit view;
    /// then the usual Linux and macOS locations. Never PATH (see <see cref="HostTools"/>): it may hold relative or
    /// user-writable folders, and vmrun runs as the backup's administrator. Nothing found: one error listing every place.
    /// </summary>
    public sealed class VmrunLocator
    {
        /// <summary>Registry keys under HKLM\SOFTWARE whose InstallPath holds a vmrun.</summary>
        internal static readonly (string Key, string Product)[] RegistryProducts =
        {
            (@"SOFTWARE\VMware, Inc.\VMware Workstation", "VMware Workstation"),
            (@"SOFTWARE\VMware, Inc.\VMware Player", "VMware Player"),
            (@"SOFTWARE\VMware, Inc.\VMware VIX", "VMware VIX"),
        };

        internal static readonly string[] UnixLocations =
        {
            "/usr/bin/vmrun",
            "/usr/local/bin/vmrun",
            "/Applications/VMware Fusion.app/Contents/Library/vmrun",
            "/Applications/VMware Fusion.app/Contents/Public/vmrun",
        };

        /// <summary>The environment variable that names this host's vmrun, looked at before the usual places.</summary>
        internal static readonly string Setting = HostTools.SettingName("vmrun");

        private readonly bool _isWindows;
        private readonly Func<string, string, string?> _readInstallPath;
        private readonly Func<string, bool> _fileExists;
        private readonly Func<string, string?> _readSetting;

        /// <param name="isWindows">Whether to look in the registry and for vmrun.exe.</param>
        /// <param name="readInstallPath">(key, view name) -> InstallPath or null; view name is "64-bit" or "32-bit".</param>
        /// <param name="fileExists">File.Exists, replaceable for tests.</param>
        /// <param name="readSetting">Reads <see cref="Setting"/> (the environment); null: not set.</param>
        internal VmrunLocator(bool isWindows, Func<string, string, string?> readInstallPath, Func<string, bool> fileExists, Func<string, string?>? readSetting = null)
        {
            _isWindows = isWindows;
            _readInstallPath = readInstallPath;
            _fileExists = fileExists;
            _readSetting = readSetting ?? (_ => null);
        }

        /// <summary>The locator for this computer.</summary>
        public static VmrunLocator ForThisHost() =>
            new VmrunLocator(HostPlatform.IsWindows, ReadRegistryInstallPath, File.Exists, Environment.GetEnvironmentVariable);

        /// <summary>
        /// vmrun for a snapshot a restore point recorded: the recorded path when it is one of the places this host looks
        /// (<see cref="Candidates"/>) and exists, else the first that exists. A manifest may be written by others, so it
        /// may choose among this host's own vmrun installations but never name a program for root to run.
        /// </summary>
        public string LocateRecorded(string? recorded)
        {
            StringComparison comparison = _isWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            VmrunCandidate? same = recorded == null ? null : Candidates().FirstOrDefault(c => string.Equals(c.Path, recorded, comparison) && _fileExists(c.Path));
            return same?.Path ?? Locate(null);
        }

        /// <summary>The first existing vmrun, or an error naming every place looked at.</summary>
        public string Locate(string? explicitPath)
        {
            if (!string.IsNullOrWhiteSpace(explicitPath))
            {
                string full = System.IO.Path.GetFullPath(explicitPath);
                if (_fileExists(full))
                {
                    return full;
                }

                throw new VmQuiesceException("VmrunNotFound", FailureKind.ObjectNotFound,
                    $"-VmrunPath names '{full}', which does not exist; expected the full path of the vmrun program.", explicitPath)
                {
                    Remedy = "Give the path of an existing vmrun (vmrun.exe on Windows).",
                };
            }

            IReadOnlyList<VmrunCandidate> candidates = Candidates();
            VmrunCandidate? found = candidates.FirstOrDefault(c => _fileExists(c.Path));
            if (found != null)
            {
                return found.Path;
            }

            throw new VmQuiesceException("VmrunNotFound", FailureKind.ObjectNotFound,
                "vmrun was not found. Looked in: " + string.Join("; ", candidates.Select(c => c.ToString())) + ".", null)
            {
                Remedy = "Install VMware Workstation, Player, Fusion or VIX, or give vmrun's full path with -VmrunPath.",
            };
        }

        /// <summary>
        /// A vmrun named by -VmrunPath: run only when the path is absolute and a regular file, not a link (which anyone
        /// who can write its folder could point elsewhere; on Windows a reparse point that redirects the name, so a vmrun.exe
        /// compressed by CompactOS is run).
        /// </summary>
        public static string CheckProgram(string path) => CheckProgram(path, ReparsePoints.ThisHostsTags);

        /// <summary><see cref="CheckProgram(string)"/> with Windows' reparse tags read through <paramref name="tags"/>.</summary>
        internal static string CheckProgram(string path, IFolderHandles? tags)
        {
            const string origin = "-VmrunPath";
            if (!HostTools.IsAbsolute(path))
            {
                throw new VmQuiesceException("VmrunPathInvalid", FailureKind.InvalidArgument,
                    $"{origin} names vmrun as '{path}', which is not an absolute path; expected the full path of the vmrun program.", path);
            }

            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new VmQuiesceException("VmrunNotFound", FailureKind.ObjectNotFound,
                    $"{origin} names vmrun as '{path}', which does not exist or is not a file; expected the full path of the vmrun program.", path)
                {
                    Remedy = "Give the path of an existing vmrun (vmrun.exe on Windows) with -VmrunPath.",
                };
            }

            if (ReparsePoints.RedirectionByPath(path, tags) != null)
            {
                throw new VmQuiesceException("VmrunPathInvalid", FailureKind.SecurityError,
                    $"{origin} names vmrun as '{path}', which is a link; VmQuiesce runs vmrun only from the file itself, never through a link.", path)
                {
                    Remedy = "Give the path of the vmrun program itself with -VmrunPath.",
                };
            }

            return path;
        }

        /// <summary>Every place looked at, in order.</summary>
        internal IReadOnlyList<VmrunCandidate> Candidates()
        {
            var candidates = new List<VmrunCandidate>();
            string? configured = _readSetting(Setting)?.Trim();
            if (!string.IsNullOrEmpty(configured))
            {
                if (!HostTools.IsAbsolute(configured!, _isWindows))
                {
                    throw new VmQuiesceException("VmrunPathInvalid", FailureKind.InvalidArgument,
                        $"The environment variable {Setting} is '{configured}', which is not an absolute path; expected the full path of the vmrun program.", configured);
                }

                candidates.Add(new VmrunCandidate(configured!, "environment variable " + Setting));
            }

            string fileName = _isWindows ? "vmrun.exe" : "vmrun";
            if (_isWindows)
            {
                foreach ((string key, string product) in RegistryProducts)
                {
                    foreach (string view in new[] { "64-bit", "32-bit" })
                    {
                        string? folder = _readInstallPath(key, view);
                        // A relative InstallPath would be looked up in the current folder.
                        if (!string.IsNullOrWhiteSpace(folder) && HostTools.IsAbsolute(folder!.Trim(), windows: true))
                        {
                            candidates.Add(new VmrunCandidate(System.IO.Path.Combine(folder.Trim(), fileName), $"registry {product} InstallPath, {view} view"));
                        }
                    }
                }
            }
            else
            {
                candidates.AddRange(UnixLocations.Select(path => new VmrunCandidate(path, "usual location")));
            }

            return candidates;
        }

        private static string? ReadRegistryInstallPath(string key, string view)
        {
            if (!HostPlatform.IsWindows)
            {
                return null;
            }

            return ReadWindowsInstallPath(key, view == "64-bit" ? WindowsRegistry.View.Registry64 : WindowsRegistry.View.Registry32);
        }

        [SupportedOSPlatform("windows")]
        private static string? ReadWindowsInstallPath(string key, WindowsRegistry.View view)
        {
            try
            {
                return WindowsRegistry.ReadLocalMachineString(key, "InstallPath", view);
            }
            catch (VmQuiesceException)
            {
                // An unreadable key (access denied) is one place less to look, not a reason to stop looking.
                return null;
            }
        }
    }
}
