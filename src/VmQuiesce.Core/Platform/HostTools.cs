using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Finds the host programs VmQuiesce runs (qemu-img, qemu-system-x86_64, e2fsck, systemctl, ...) as absolute
    /// paths: from an explicit setting (the environment variable VMQUIESCE_TOOL_&lt;NAME&gt;, e.g.
    /// VMQUIESCE_TOOL_QEMU_IMG, holding an absolute path), else from the system directories only. Never from the
    /// current directory (where .NET looks first for a bare name) and never from PATH: PATH is whatever the
    /// caller's environment brought (sudo, su, a scheduler, a service), may hold relative or user-writable entries,
    /// and VmQuiesce runs as root. On Linux a program found in a system directory is also refused when it, or a
    /// folder above it, is owned or writable by anyone but root (or the user running VmQuiesce).
    /// </summary>
    public sealed class HostTools
    {
        public const string SettingPrefix = "VMQUIESCE_TOOL_";

        /// <summary>Where Linux and macOS distributions install programs, the distribution's own folders first.</summary>
        internal static readonly IReadOnlyList<string> UnixDirectories = new[]
        {
            "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin",
        };

        private const uint GroupOrOtherWrite = 0x12; // S_IWGRP | S_IWOTH

        private readonly IReadOnlyList<string> _directories;
        private readonly Func<string, string?> _readSetting;
        private readonly bool _checkOwners;

        /// <param name="directories">Where to look, in order.</param>
        /// <param name="readSetting">Reads an explicit setting by name (the environment, or a test's dictionary).</param>
        /// <param name="checkOwners">Refuse programs that someone other than root or this user could have replaced.</param>
        internal HostTools(IReadOnlyList<string> directories, Func<string, string?> readSetting, bool checkOwners)
        {
            _directories = directories;
            _readSetting = readSetting;
            _checkOwners = checkOwners;
        }

        /// <summary>The system directories of this host, the environment's explicit settings.</summary>
        public static HostTools ForThisHost { get; } = new HostTools(SystemDirectories(), Environment.GetEnvironmentVariable, HostPlatform.IsLinux);

        /// <summary>The environment variable that names <paramref name="tool"/> explicitly: VMQUIESCE_TOOL_QEMU_IMG for qemu-img.</summary>
        public static string SettingName(string tool) => SettingPrefix + Regex.Replace(tool.ToUpperInvariant(), "[^A-Z0-9]", "_");

        /// <summary>The absolute path of <paramref name="tool"/> (a bare program name such as "qemu-img").</summary>
        public string Find(string tool)
        {
            string setting = SettingName(tool);
            string? configured = _readSetting(setting);
            if (!string.IsNullOrWhiteSpace(configured))
            {
                return Explicit(configured!, setting);
            }

            string fileName = HostPlatform.IsWindows && !tool.EndsWith(".exe", StringComparison.OrdinalIgnoreCase) ? tool + ".exe" : tool;
            foreach (string directory in _directories)
            {
                string candidate = Path.Combine(directory, fileName);
                if (File.Exists(candidate))
                {
                    if (_checkOwners)
                    {
                        CheckReplaceableOnlyByRoot(candidate, tool, setting);
                    }

                    return candidate;
                }
            }

            throw new VmQuiesceException("ToolNotFound", FailureKind.ResourceUnavailable,
                $"The program '{tool}' is not in the system directories ({string.Join(", ", _directories)}); VmQuiesce does not look in PATH or the current directory.", tool)
            {
                Remedy = (tool.StartsWith("qemu", StringComparison.Ordinal) ? "Install QEMU (Debian: apt-get install qemu-utils qemu-system-x86), or set " : $"Install {tool}, or set ") +
                    $"the environment variable {setting} to the program's absolute path.",
            };
        }

        /// <summary>
        /// A program the caller chose: a bare name is found as <see cref="Find"/> does; anything else must be the
        /// absolute path of an existing file. <paramref name="setting"/> names where the value came from, for errors.
        /// </summary>
        public string Resolve(string nameOrPath, string setting) =>
            nameOrPath.IndexOfAny(new[] { '/', '\\' }) < 0 ? Find(nameOrPath) : Explicit(nameOrPath, setting);

        private static string Explicit(string path, string setting)
        {
            if (!IsAbsolute(path))
            {
                throw new VmQuiesceException("ToolPathInvalid", FailureKind.InvalidArgument,
                    $"{setting} is '{path}', which is not an absolute path; expected the full path of the program.", path);
            }

            if (!File.Exists(path))
            {
                throw new VmQuiesceException("ToolPathInvalid", FailureKind.ObjectNotFound,
                    $"{setting} names '{path}', which does not exist or is not a file; expected the full path of the program.", path);
            }

            return path;
        }

        /// <summary>Rooted and not relative to a current drive or folder (on Windows "\x" and "C:x" are relative).</summary>
        internal static bool IsAbsolute(string path) => IsAbsolute(path, HostPlatform.IsWindows);

        internal static bool IsAbsolute(string path, bool windows) => windows
            ? path.StartsWith(@"\\", StringComparison.Ordinal) || (path.Length >= 3 && char.IsLetter(path[0]) && path[1] == ':' && (path[2] == '\\' || path[2] == '/'))
            : path.StartsWith("/", StringComparison.Ordinal);

        /// <summary>
        /// Every link resolved, the program and each folder above it (and above the folder that named it) must be
        /// owned by root or this user and writable by no one else: otherwise someone else could swap the program.
        /// </summary>
        private static void CheckReplaceableOnlyByRoot(string candidate, string tool, string setting)
        {
            uint self = Libc.geteuid();
            string? program = Libc.RealPath(candidate);
            string? folder = Libc.RealPath(Path.GetDirectoryName(candidate)!);
            if (program == null || folder == null)
            {
                throw NotTrusted(candidate, tool, setting, "its real path cannot be resolved");
            }

            IEnumerable<string> checkedPaths = new[] { program }.Concat(SelfAndParents(Path.GetDirectoryName(program)!)).Concat(SelfAndParents(folder)).Distinct(StringComparer.Ordinal);
            foreach (string path in checkedPaths)
            {
                FileStatus stat = UnixFiles.Stat(path);
                if (stat.Uid != 0 && stat.Uid != self)
                {
                    throw NotTrusted(candidate, tool, setting, $"'{path}' belongs to uid {stat.Uid}");
                }

                if ((stat.Mode & GroupOrOtherWrite) != 0)
                {
                    throw NotTrusted(candidate, tool, setting, $"'{path}' is writable by its group or by others (mode {Convert.ToString(stat.Mode & 0xFFF, 8)})");
                }
            }
        }

        private static IEnumerable<string> SelfAndParents(string folder)
        {
            for (string? current = folder; !string.IsNullOrEmpty(current); current = Path.GetDirectoryName(current))
            {
                yield return current!;
            }
        }

        private static VmQuiesceException NotTrusted(string candidate, string tool, string setting, string why) =>
            new VmQuiesceException("ToolNotTrusted", FailureKind.SecurityError,
                $"'{candidate}' is not run: {why}, so someone other than root could replace the program VmQuiesce would run as '{tool}'.", candidate)
            {
                Remedy = $"Make the program and its folders owned by root and not writable by others, or set {setting} to the absolute path of a program you trust.",
            };

        private static IReadOnlyList<string> SystemDirectories()
        {
            if (!HostPlatform.IsWindows)
            {
                return UnixDirectories;
            }

            // System32 for Windows' own programs; QEMU's installer puts its programs under Program Files.
            string programFiles = Environment.GetFolderPath(Environment.SpecialFolder.ProgramFiles);
            return new[] { Environment.SystemDirectory, Path.Combine(programFiles, "qemu") };
        }
    }
}
