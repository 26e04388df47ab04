using System;
using System.Collections.Generic;
using System.IO;

namespace VmQuiesce.Core.Config
{
    /// <summary>What Get-VssWriterConfig shows: where vmvsswriter.cfg is, whether it exists and what it says.</summary>
    public sealed class VssWriterConfig
    {
        /// <summary>The file VMware Server's VSS writer reads from its install folder.</summary>
        public const string FileName = "vmvsswriter.cfg";

        /// <summary>The setting that lets the writer overwrite a VM's existing snapshot.</summary>
        public const string OverwriteSnapshotsName = "vmwriter.overwriteSnapshots";

        private VssWriterConfig(string path, bool exists, DateTime? lastWriteTime, IReadOnlyList<VmwareConfigSetting> settings)
        {
            Path = path;
            Exists = exists;
            LastWriteTime = lastWriteTime;
            Settings = settings;
            foreach (VmwareConfigSetting setting in settings)
            {
                if (string.Equals(setting.Name, OverwriteSnapshotsName, StringComparison.OrdinalIgnoreCase))
                {
                    OverwriteSnapshots = IsTrue(setting.Value);
                }
            }
        }

        /// <summary>Full path of the file (whether or not it exists).</summary>
        public string Path { get; }

        public bool Exists { get; }

        /// <summary>True when <c>vmwriter.overwriteSnapshots</c> is TRUE; false when it is FALSE, anything else or absent.</summary>
        public bool OverwriteSnapshots { get; }

        /// <summary>Every effective setting in file order, unknown ones included.</summary>
        public IReadOnlyList<VmwareConfigSetting> Settings { get; }

        public DateTime? LastWriteTime { get; }

        /// <summary>Reads the file at <paramref name="path"/>; a missing file gives Exists = false and no settings.</summary>
        public static VssWriterConfig Read(string path)
        {
            VmwareConfigDocument? document = VmwareConfigFile.TryRead(path);
            return document == null
                ? new VssWriterConfig(path, false, null, Array.Empty<VmwareConfigSetting>())
                : new VssWriterConfig(path, true, File.GetLastWriteTime(path), document.Settings);
        }

        /// <summary>How VMware reads a boolean: TRUE, yes, on or 1 (any case) are true; everything else is false.</summary>
        public static bool IsTrue(string? value)
        {
            string text = (value ?? string.Empty).Trim();
            return text.Equals("TRUE", StringComparison.OrdinalIgnoreCase) || text.Equals("yes", StringComparison.OrdinalIgnoreCase) ||
                text.Equals("on", StringComparison.OrdinalIgnoreCase) || text == "1";
        }

        public override string ToString() => Path;
    }
}
