using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// A VM folder as it was right before a snapshot that is released after the copy: which files existed, and
    /// copies of the configuration VMware rewrites (the .vmx then names the disks the snapshot freezes, not the
    /// deltas that follow it). A point made from it restores whole without reverting to a snapshot.
    /// </summary>
    internal sealed class VmFolderBefore
    {
        private readonly HashSet<string> _existed;
        private readonly Dictionary<string, string> _copies;

        private VmFolderBefore(HashSet<string> existed, Dictionary<string, string> copies)
        {
            _existed = existed;
            _copies = copies;
        }

        /// <summary>A configuration file is a few kilobytes (an .nvram a few hundred): far more is not one, and is not copied aside.</summary>
        internal const long MetadataMaxBytes = 16 << 20;

        /// <param name="copyFolder">Where the configuration copies go (inside the view's staging folder).</param>
        public static VmFolderBefore Capture(string vmxPath, string copyFolder)
        {
            // The view's enumeration after the snapshot warns about what it leaves out; this one stays quiet.
            using VmFolderFiles files = VmwareVmFolder.OpenFrozenFiles(string.Empty, vmxPath, Enumerable.Empty<string>(), OperationHost.None);
            var copies = new Dictionary<string, string>(VmwareVmFolder.PathComparer);
            foreach (VmFolderFile file in files.Files.Where(file => VmwareVmFolder.IsMutableMetadata(file.Full)))
            {
                string copy = Path.Combine(copyFolder, file.Relative.Replace('/', Path.DirectorySeparatorChar));
                Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
                VmFolderFiles.CopySmall(file, copy, MetadataMaxBytes);
                copies[file.Relative] = copy;
            }

            return new VmFolderBefore(new HashSet<string>(files.Files.Select(file => file.Relative), VmwareVmFolder.PathComparer), copies);
        }

        public bool Existed(string relative) => _existed.Contains(relative);

        /// <summary>The copy taken before the snapshot, for the configuration files; null for the others.</summary>
        public string? CopyOf(string relative) => _copies.TryGetValue(relative, out string? copy) ? copy : null;
    }
}
