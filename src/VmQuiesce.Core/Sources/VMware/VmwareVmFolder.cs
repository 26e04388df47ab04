using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Config;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// What VMware keeps in a VM's folder, read through the .vmx: which disks the VM writes now, and which
    /// files a snapshot froze. After a snapshot the .vmx points at new delta disks (disk-000001.vmdk) that
    /// receive every write; the base disks and older deltas, the .vmsn/.vmsd snapshot metadata and the
    /// configuration are what the snapshot froze.
    /// </summary>
    internal static class VmwareVmFolder
    {
        /// <summary>A device's disk: scsi0:0.fileName, ide1:0.fileName, sata0:2.fileName, nvme0:0.fileName.</summary>
        private static readonly Regex DiskFileKey = new Regex(@"^(?<device>(?:scsi|ide|sata|nvme)\d+:\d+)\.fileName$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

        /// <summary>An extent line of a text descriptor: RW 8388608 SPARSE "disk-s001.vmdk".</summary>
        private static readonly Regex ExtentLine = new Regex(@"^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+(?<type>\w+)\s+""(?<file>[^""]+)""", RegexOptions.CultureInvariant);

        /// <summary>Read from files that VMware may rewrite while the VM runs: copied aside right after the snapshot.</summary>
        internal static readonly string[] MutableMetadataExtensions = { ".vmx", ".vmxf", ".vmsd", ".nvram" };

        public static VmwareConfigDocument ReadVmx(string vmxPath)
        {
            VmwareConfigDocument? document = VmwareConfigFile.TryRead(vmxPath);
            if (document == null)
            {
                throw new VmQuiesceException("VmxNotFound", FailureKind.ObjectNotFound,
                    $"The VM configuration '{vmxPath}' does not exist; expected the path of the VM's .vmx file.", vmxPath);
            }

            return document;
        }

        /// <summary>The .vmdk descriptors the VM's present disk devices use now (full paths).</summary>
        public static IReadOnlyList<VmwareDisk> CurrentDisks(string vmxPath)
        {
            VmwareConfigDocument vmx = ReadVmx(vmxPath);
            string folder = Path.GetDirectoryName(vmxPath)!;
            var disks = new List<VmwareDisk>();
            foreach (VmwareConfigSetting setting in vmx.Settings)
            {
                Match match = DiskFileKey.Match(setting.Name);
                if (!match.Success || !setting.Value.EndsWith(".vmdk", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                string device = match.Groups["device"].Value;
                if (vmx.GetValue(device + ".present") is string present && !VssWriterConfig.IsTrue(present))
                {
                    continue;
                }

                string path = Path.IsPathRooted(setting.Value) ? setting.Value : Path.Combine(folder, setting.Value);
                disks.Add(new VmwareDisk(device, Path.GetFullPath(path), vmx.GetValue(device + ".mode") ?? "persistent"));
            }

            return disks;
        }

        /// <summary>A disk's files: the descriptor plus, for a text descriptor, every extent it names.</summary>
        public static IReadOnlyList<string> DiskFiles(string descriptorPath) =>
            new[] { descriptorPath }.Concat(Extents(descriptorPath).Select(extent => extent.Path)).ToList();

        /// <summary>
        /// The image format of each file of <paramref name="disks"/>, as far as it is certain: VMware opens each disk
        /// the .vmx names as a vmdk, and a text descriptor says of each extent whether it holds the guest's bytes as
        /// they are (FLAT: raw) or a hosted sparse extent (SPARSE: vmdk). Other files are not in the result.
        /// </summary>
        public static IReadOnlyDictionary<string, string> DiskFormats(IEnumerable<VmwareDisk> disks)
        {
            var formats = new Dictionary<string, string>(PathComparer);
            foreach (VmwareDisk disk in disks)
            {
                formats[disk.Path] = DiskImageFormat.Vmdk;
                foreach ((string path, string type) in Extents(disk.Path))
                {
                    if (type == "FLAT")
                    {
                        formats[path] = DiskImageFormat.Raw;
                    }
                    else if (type == "SPARSE")
                    {
                        formats[path] = DiskImageFormat.Vmdk;
                    }
                }
            }

            return formats;
        }

        /// <summary>The extents a text descriptor names (full path, type such as FLAT or SPARSE); none for a binary vmdk.</summary>
        private static IReadOnlyList<(string Path, string Type)> Extents(string descriptorPath)
        {
            var extents = new List<(string, string)>();
            if (!File.Exists(descriptorPath) || !IsTextDescriptor(descriptorPath))
            {
                return extents;
            }

            string folder = Path.GetDirectoryName(descriptorPath)!;
            foreach (string line in File.ReadAllLines(descriptorPath))
            {
                Match match = ExtentLine.Match(line);
                if (match.Success)
                {
                    extents.Add((Path.GetFullPath(Path.Combine(folder, match.Groups["file"].Value)), match.Groups["type"].Value));
                }
            }

            return extents;
        }

        /// <summary>
        /// The VM folder's files that belong in the backup, as (relative path with '/', full path), sorted:
        /// everything except lock folders (*.lck), VMware's logs (vmware*.log), the live memory file (*.vmem
        /// other than a snapshot's), and <paramref name="excluded"/> (the deltas that receive writes now).
        /// Only regular files and real folders count: a link (which could lead anywhere on the host), a FIFO or a
        /// device in the folder is left out, and <paramref name="host"/> is warned with what it is.
        /// </summary>
        public static IReadOnlyList<(string Relative, string Full)> FrozenFiles(string vmName, string vmxPath, IEnumerable<string> excluded, IOperationHost host)
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(vmxPath))!;
            var skip = new HashSet<string>(excluded.Select(Path.GetFullPath), PathComparer);
            var files = new List<(string, string)>();
            var refused = new List<string>();
            Collect(folder, string.Empty, skip, files, refused);
            if (refused.Count > 0)
            {
                host.WriteWarning($"VM '{vmName}': not backed up, since only regular files and folders of the VM folder are: {string.Join("; ", refused)}.");
            }

            return files.OrderBy(f => f.Item1, StringComparer.Ordinal).ToList();
        }

        public static bool IsExcludedName(string name, bool isDirectory)
        {
            if (name.EndsWith(".lck", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }

            if (isDirectory)
            {
                return false;
            }

            return (name.StartsWith("vmware", StringComparison.OrdinalIgnoreCase) && name.EndsWith(".log", StringComparison.OrdinalIgnoreCase)) ||
                (name.EndsWith(".vmem", StringComparison.OrdinalIgnoreCase) && name.IndexOf("-Snapshot", StringComparison.OrdinalIgnoreCase) < 0) ||
                name.EndsWith(VmwareSource.PendingMarkerSuffix, StringComparison.OrdinalIgnoreCase);
        }

        internal static StringComparer PathComparer => Platform.HostPlatform.IsWindows || Platform.HostPlatform.IsMacOS ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

        private static void Collect(string directory, string prefix, HashSet<string> skip, List<(string, string)> files, ICollection<string> refused)
        {
            foreach (FileSystemInfo entry in new DirectoryInfo(directory).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                string name = entry.Name;
                bool isFolder = (entry.Attributes & FileAttributes.Directory) != 0;
                if (IsExcludedName(name, isFolder) || skip.Contains(entry.FullName))
                {
                    continue;
                }

                if (WhyNotPlain(entry, isFolder) is string what)
                {
                    refused.Add($"'{prefix + name}' is {what}");
                }
                else if (isFolder)
                {
                    Collect(entry.FullName, prefix + name + "/", skip, files, refused);
                }
                else
                {
                    files.Add((prefix + name, entry.FullName));
                }
            }
        }

        /// <summary>What an entry is when it is neither a regular file nor a real folder (Linux: from lstat; elsewhere: a reparse point); null when it is one.</summary>
        private static string? WhyNotPlain(FileSystemInfo entry, bool isFolder)
        {
            if ((entry.Attributes & FileAttributes.ReparsePoint) != 0)
            {
                return "a link";
            }

            FileStatus? status = RegularFile.StatNoFollow(entry.FullName);
            return status == null || status.Value.IsRegularFile || (isFolder && status.Value.IsDirectory) ? null : status.Value.KindName;
        }

        private static bool IsTextDescriptor(string path)
        {
            var head = new byte[21];
            using FileStream stream = File.OpenRead(path);
            int read = stream.Read(head, 0, head.Length);
            return Encoding.ASCII.GetString(head, 0, read).StartsWith("# Disk DescriptorFile", StringComparison.Ordinal);
        }
    }

    /// <summary>One disk device of a VM as its .vmx configures it.</summary>
    internal sealed class VmwareDisk
    {
        public VmwareDisk(string device, string path, string mode)
        {
            Device = device;
            Path = path;
            Mode = mode;
        }

        public string Device { get; }

        public string Path { get; }

        /// <summary>persistent, nonpersistent, independent-persistent, independent-nonpersistent.</summary>
        public string Mode { get; }

        /// <summary>Independent disks are not part of snapshots: they keep being written.</summary>
        public bool IsIndependent => Mode.StartsWith("independent", StringComparison.OrdinalIgnoreCase);
    }
}
