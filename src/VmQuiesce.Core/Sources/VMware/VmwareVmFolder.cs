using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Config;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

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

        private const string DescriptorMagic = "# Disk DescriptorFile";

        /// <summary>A descriptor names a disk's extents in a few hundred bytes; one far larger is not a descriptor.</summary>
        private const int DescriptorMaxBytes = 1 << 20;

        /// <summary>
        /// The start of a hosted sparse extent's header (SparseExtentHeader, little-endian): the magic number "KDMV"
        /// (0x564d444b), version, flags, capacity, grainSize, then where its embedded descriptor lies and how long it is,
        /// both in 512-byte sectors.
        /// </summary>
        private const int SparseHeaderFieldsBytes = 44;

        private const int SparseDescriptorOffsetAt = 28;

        private const int SparseDescriptorSizeAt = 36;

        private const int SectorBytes = 512;

        private static readonly char[] LineBreaks = { '\r', '\n' };

        /// <summary>A delta disk's descriptor line naming the disk it is a delta of (a snapshot's parent, a linked clone's base).</summary>
        private static readonly Regex ParentHintLine = new Regex(@"^\s*parentFileNameHint\s*=\s*""(?<file>[^""]+)""", RegexOptions.CultureInvariant);

        /// <summary>More deltas than any VM's snapshot tree holds: a longer chain (or a loop) is not followed further.</summary>
        private const int MaxChainLength = 256;

        /// <summary>Read from files that VMware may rewrite while the VM runs: copied aside right after the snapshot.</summary>
        private static readonly string[] MutableMetadataExtensions = { ".vmx", ".vmxf", ".vmsd", ".nvram" };

        /// <summary>Whether <paramref name="path"/> is configuration or snapshot metadata that VMware may rewrite while the VM runs.</summary>
        internal static bool IsMutableMetadata(string path) => MutableMetadataExtensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

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

        /// <summary>
        /// A disk's files and those of the disks it is a delta of (parentFileNameHint: its snapshots' bases, a linked clone's
        /// base disk), as far as their descriptors name them (text descriptors, and those sparse extents embed): what a
        /// restore of the disk needs.
        /// </summary>
        public static IReadOnlyList<string> DiskChainFiles(string descriptorPath)
        {
            var files = new List<string>();
            var seen = new HashSet<string>(PathComparer);
            for (string? current = descriptorPath; current != null && seen.Count < MaxChainLength && seen.Add(current);)
            {
                // Each descriptor read once: its extents and its parent come from the same text.
                string? descriptor = ReadDescriptor(current);
                string folder = Path.GetDirectoryName(current)!;
                files.Add(current);
                files.AddRange(ExtentsIn(current, descriptor).Select(extent => extent.Path));
                current = descriptor?.Split(LineBreaks).Select(line => ParentHintLine.Match(line)).Where(match => match.Success)
                    .Select(match => Path.GetFullPath(Path.Combine(folder, match.Groups["file"].Value))).FirstOrDefault();
            }

            return files.Distinct(PathComparer).ToList();
        }

        /// <summary>A disk's files: the descriptor plus every extent its descriptor names, each once (a sparse extent's embedded descriptor names the file itself).</summary>
        public static IReadOnlyList<string> DiskFiles(string descriptorPath) =>
            new[] { descriptorPath }.Concat(Extents(descriptorPath).Select(extent => extent.Path)).Distinct(PathComparer).ToList();

        /// <summary>
        /// The image format of each file of <paramref name="disks"/>, as far as it is certain: VMware opens each disk
        /// the .vmx names as a vmdk, and a descriptor says of each extent whether it holds the guest's bytes as
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

        /// <summary>The extents a descriptor names (full path, type such as FLAT or SPARSE); none for a binary vmdk that embeds none.</summary>
        private static IReadOnlyList<(string Path, string Type)> Extents(string descriptorPath) => ExtentsIn(descriptorPath, ReadDescriptor(descriptorPath));

        /// <summary>The extents named in <paramref name="descriptor"/>, the text of the descriptor at <paramref name="descriptorPath"/> (null: none).</summary>
        private static IReadOnlyList<(string Path, string Type)> ExtentsIn(string descriptorPath, string? descriptor)
        {
            var extents = new List<(string, string)>();
            if (descriptor == null)
            {
                return extents;
            }

            string folder = Path.GetDirectoryName(descriptorPath)!;
            foreach (string line in descriptor.Split(LineBreaks))
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
        /// The VM folder's files that belong in the backup, as (relative path with '/', full path), sorted; see
        /// <see cref="OpenFrozenFiles"/>. For a reader that reads them by path (the host's shadow copies).
        /// </summary>
        public static IReadOnlyList<(string Relative, string Full)> FrozenFiles(string vmName, string vmxPath, IEnumerable<string> excluded, IOperationHost host)
        {
            using VmFolderFiles files = OpenFrozenFiles(vmName, vmxPath, excluded, host);
            return files.Files.Select(file => (file.Relative, file.Full)).ToList();
        }

        /// <summary>
        /// The VM folder's files that belong in the backup, sorted by relative path: everything except lock folders (*.lck),
        /// VMware's logs (vmware*.log), the live memory file (*.vmem other than a snapshot's), and <paramref name="excluded"/>
        /// (the deltas that receive writes now). Only regular files and real folders count: a link (which could lead
        /// anywhere on the host), a FIFO or a device in the folder is left out, and <paramref name="host"/> is warned with
        /// what it is. On Linux each file is opened as it is found, through its open folder and following no link, and
        /// held until the result is disposed: read through <see cref="VmFolderFile.ReadPath"/>, it stays the file that was
        /// found whatever is renamed or linked in the folder meanwhile, and <see cref="VmFolderFile.Owner"/> is that file's.
        /// On Windows each entry is opened without following a reparse point and held: a folder or a disk-side file so that
        /// nobody can rename, delete or replace it while held (see <see cref="CollectHeld"/>).
        /// </summary>
        public static VmFolderFiles OpenFrozenFiles(string vmName, string vmxPath, IEnumerable<string> excluded, IOperationHost host)
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(vmxPath))!;
            var skip = new HashSet<string>(excluded.Select(Path.GetFullPath), PathComparer);
            var files = new List<VmFolderFile>();
            var handles = new List<SafeFileHandle>();
            var refused = new List<string>();
            try
            {
                if (HostPlatform.IsLinux)
                {
                    // The folder the .vmx path names now, which the .vmx was read from: a link on that path is the administrator's.
                    using SafeFileHandle top = OpenFolder(Libc.AtFdCwd, folder, folder, followLink: true)!;
                    CollectOpen(top, folder, string.Empty, skip, files, handles, refused);
                }
                else if (HostPlatform.IsWindows)
                {
                    CollectHeld(folder, string.Empty, skip, files, handles, refused);
                }
                else
                {
                    Collect(folder, string.Empty, skip, files, refused);
                }
            }
            catch
            {
                handles.ForEach(handle => handle.Dispose());
                throw;
            }

            if (refused.Count > 0)
            {
                host.WriteWarning($"VM '{vmName}': not backed up, since only regular files and folders of the VM folder are: {string.Join("; ", refused)}.");
            }

            return new VmFolderFiles(files.OrderBy(f => f.Relative, StringComparer.Ordinal).ToList(), handles);
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

        private static void Collect(string directory, string prefix, HashSet<string> skip, List<VmFolderFile> files, ICollection<string> refused)
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
                    files.Add(new VmFolderFile(prefix + name, entry.FullName, entry.FullName));
                }
            }
        }

        /// <summary>
        /// Linux: lists the open folder <paramref name="folder"/> and opens each entry through it with O_NOFOLLOW, so that
        /// neither an entry nor a folder on the way is reached through a link; each file's descriptor is kept in
        /// <paramref name="handles"/>. An entry that is (or has become) anything but a regular file or a folder is refused.
        /// </summary>
        private static void CollectOpen(SafeFileHandle folder, string directory, string prefix, HashSet<string> skip, List<VmFolderFile> files,
            List<SafeFileHandle> handles, ICollection<string> refused)
        {
            int folderFd = (int)folder.DangerousGetHandle();
            IEnumerable<string> names = Directory.EnumerateFileSystemEntries(UnixFiles.DescriptorPath(folderFd)).Select(entry => Path.GetFileName(entry));
            foreach (string name in names.OrderBy(n => n, StringComparer.Ordinal))
            {
                string full = Path.Combine(directory, name);
                FileStatus? status = UnixFiles.StatAt(folderFd, name, out _);
                if (status == null || IsExcludedName(name, status.Value.IsDirectory) || skip.Contains(full))
                {
                    continue;
                }

                if (status.Value.IsDirectory)
                {
                    using SafeFileHandle? below = OpenFolder(folderFd, name, full, followLink: false);
                    if (below == null)
                    {
                        refused.Add($"'{prefix + name}' is a link");
                        continue;
                    }

                    CollectOpen(below, full, prefix + name + "/", skip, files, handles, refused);
                }
                else if (!status.Value.IsRegularFile)
                {
                    refused.Add($"'{prefix + name}' is {KindOf(status.Value)}");
                }
                else if (OpenRegularFile(folderFd, name, full, out FileStatus? found) is SafeFileHandle file)
                {
                    handles.Add(file);
                    FileStatus held = found!.Value;
                    files.Add(new VmFolderFile(prefix + name, full, UnixFiles.DescriptorPath(file.DangerousGetHandle().ToInt64()), new FileOwner(held.Uid, held.Gid, held.Permissions)));
                }
                else
                {
                    refused.Add($"'{prefix + name}' is {(found is FileStatus other ? KindOf(other) : "a link")}");
                }
            }
        }

        /// <summary>
        /// Windows: lists <paramref name="directory"/> and opens each entry without following a reparse point (a symbolic
        /// link, junction, mount point or other name surrogate is opened itself, and refused; a deduplicated, cloud or
        /// compressed file or folder is taken as any other: <see cref="ReparsePoints"/>), keeping each handle in <paramref name="handles"/>.
        /// The engine reads the files by path, so a folder and a disk-side file are held without FILE_SHARE_DELETE: while
        /// the backup holds them nobody can rename, delete or replace them, and the path keeps leading to what was checked.
        /// Configuration that VMware rewrites while the VM runs is held shareable, not to hinder VMware, and is copied
        /// through its handle (<see cref="VmFolderFiles.CopySmall"/>).
        /// </summary>
        [SupportedOSPlatform("windows")]
        private static void CollectHeld(string directory, string prefix, HashSet<string> skip, List<VmFolderFile> files,
            List<SafeFileHandle> handles, ICollection<string> refused)
        {
            foreach (FileSystemInfo entry in new DirectoryInfo(directory).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                string name = entry.Name;
                bool isFolder = (entry.Attributes & FileAttributes.Directory) != 0;
                if (IsExcludedName(name, isFolder) || skip.Contains(entry.FullName))
                {
                    continue;
                }

                SafeFileHandle? handle = OpenHeld(entry.FullName, IsHeldUnshared(entry.FullName, isFolder), out uint attributes, out uint reparseTag);
                if (handle == null)
                {
                    // Gone since the listing, as a file the Linux listing no longer finds.
                    continue;
                }

                if (WhyNotAsListed(attributes, reparseTag, isFolder) is string what)
                {
                    handle.Dispose();
                    refused.Add($"'{prefix + name}' is {what}");
                    continue;
                }

                handles.Add(handle);
                if (isFolder)
                {
                    CollectHeld(entry.FullName, prefix + name + "/", skip, files, handles, refused);
                }
                else
                {
                    files.Add(new VmFolderFile(prefix + name, entry.FullName, entry.FullName, handle: handle, keptByFilter: (attributes & ReparsePoints.ReparsePointAttribute) != 0));
                }
            }
        }

        /// <summary>Windows: whether the entry is held without FILE_SHARE_DELETE (see <see cref="CollectHeld"/>): all but the configuration VMware rewrites.</summary>
        internal static bool IsHeldUnshared(string path, bool isFolder) => isFolder || !IsMutableMetadata(path);

        /// <summary>
        /// Windows: what an entry opened without following reparse points is (its <paramref name="attributes"/> and
        /// <paramref name="reparseTag"/>) when it is not a real folder or a regular file as the listing found; null when it
        /// is. Only a reparse point that redirects the name is a link (<see cref="ReparsePoints.RedirectsName"/>): a
        /// deduplicated file or a OneDrive placeholder is a file as any other.
        /// </summary>
        internal static string? WhyNotAsListed(uint attributes, uint reparseTag, bool listedAsFolder)
        {
            if (ReparsePoints.RedirectsName(attributes, reparseTag))
            {
                return ReparsePoints.Describe(reparseTag);
            }

            bool isFolder = (attributes & ReparsePoints.DirectoryAttribute) != 0;
            return isFolder == listedAsFolder ? null : isFolder ? "a folder now, where a file was listed" : "a file now, where a folder was listed";
        }

        /// <summary>
        /// Windows: <paramref name="path"/> opened for reading without following a reparse point, with its attributes and reparse tag; null
        /// when it no longer exists. <paramref name="unshared"/>: without FILE_SHARE_DELETE, unless another program holds it
        /// with the right to delete it (VMware may), which that would refuse: then shared, as before.
        /// </summary>
        [SupportedOSPlatform("windows")]
        private static SafeFileHandle? OpenHeld(string path, bool unshared, out uint attributes, out uint reparseTag)
        {
            // Backup semantics open a folder too, and let a holder of SeBackupPrivilege read what its ACL would refuse.
            const int flags = Kernel32.FileFlagOpenReparsePoint | Kernel32.FileFlagBackupSemantics;
            SafeFileHandle handle = Kernel32.CreateFileW(path, Kernel32.GenericRead, unshared ? Kernel32.FileShareReadWrite : Kernel32.FileShareAll, IntPtr.Zero, Kernel32.OpenExisting, flags, IntPtr.Zero);
            int error = handle.IsInvalid ? Marshal.GetLastWin32Error() : Win32Error.Success;
            if (error == Win32Error.SharingViolation && unshared)
            {
                handle.Dispose();
                return OpenHeld(path, unshared: false, out attributes, out reparseTag);
            }

            attributes = 0;
            reparseTag = 0;
            if (error == Win32Error.FileNotFound || error == Win32Error.PathNotFound)
            {
                handle.Dispose();
                return null;
            }

            if (error != Win32Error.Success || !Kernel32.GetFileInformationByHandleEx(handle, Kernel32.FileAttributeTagInfo, out Kernel32.FileAttributeTagInformation information,
                Marshal.SizeOf<Kernel32.FileAttributeTagInformation>()))
            {
                error = error != Win32Error.Success ? error : Marshal.GetLastWin32Error();
                handle.Dispose();
                throw new IOException($"Could not open '{path}': {Win32Error.Describe(error)}");
            }

            attributes = information.FileAttributes;
            reparseTag = information.ReparseTag;
            return handle;
        }

        /// <summary>The folder <paramref name="name"/> under <paramref name="parentFd"/>; without <paramref name="followLink"/>, null when it is a link or no folder (any more).</summary>
        private static SafeFileHandle? OpenFolder(int parentFd, string name, string shown, bool followLink)
        {
            int fd = UnixFiles.OpenAt(parentFd, name, Libc.OpenReadOnly | Libc.OpenDirectory | (followLink ? 0 : Libc.OpenNoFollow) | Libc.OpenCloseOnExec, 0);
            if (fd >= 0)
            {
                return new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            }

            int errno = Marshal.GetLastWin32Error();
            return !followLink && (errno == Libc.ELOOP || errno == Libc.ENOTDIR) ? null : throw RegularFile.Failure("open the folder", shown, errno);
        }

        /// <summary>
        /// The regular file <paramref name="name"/> under <paramref name="folderFd"/>, opened without following a link (or
        /// waiting on a FIFO), and what the open descriptor is (<paramref name="found"/>: owner and mode of the file held);
        /// null when it is no regular file any more, with <paramref name="found"/> null for a link.
        /// </summary>
        private static SafeFileHandle? OpenRegularFile(int folderFd, string name, string shown, out FileStatus? found)
        {
            int fd = UnixFiles.OpenAt(folderFd, name, Libc.OpenReadOnly | Libc.OpenNoFollow | Libc.OpenNonBlocking | Libc.OpenCloseOnExec, 0);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                found = null;
                return errno == Libc.ELOOP ? null : throw RegularFile.Failure("open", shown, errno);
            }

            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            FileStatus opened = UnixFiles.Stat(fd, shown);
            found = opened;
            if (opened.IsRegularFile)
            {
                return handle;
            }

            handle.Dispose();
            return null;
        }

        private static string KindOf(FileStatus status) => status.IsSymbolicLink ? "a link" : status.KindName;

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

        /// <summary>
        /// The descriptor of a disk file: all of a text descriptor (one that starts "# Disk DescriptorFile"), or the one a
        /// hosted sparse extent embeds (<see cref="ReadEmbeddedDescriptor"/>); null for other binary files (a flat extent),
        /// a missing file, and what is no regular file: the VM folder's listing names a link, FIFO or device and leaves it
        /// out, and a FIFO opened here would hang the backup. A text descriptor larger than <see cref="DescriptorMaxBytes"/>
        /// is refused.
        /// </summary>
        private static string? ReadDescriptor(string path)
        {
            FileStream? stream;
            try
            {
                // Any size: a binary vmdk (gigabytes) is told apart by its first bytes only.
                stream = RegularFile.TryOpenRead(path, long.MaxValue);
            }
            catch (UnexpectedFileException)
            {
                return null;
            }

            if (stream == null)
            {
                return null;
            }

            using (stream)
            {
                var head = new byte[SparseHeaderFieldsBytes];
                int read = stream.ReadFully(head, head.Length);
                if (read >= head.Length && IsSparseExtentHeader(head))
                {
                    return ReadEmbeddedDescriptor(stream, head, path);
                }

                if (read < DescriptorMagic.Length || Encoding.ASCII.GetString(head, 0, DescriptorMagic.Length) != DescriptorMagic)
                {
                    return null;
                }

                stream.Position = 0;
                if (stream.Length > DescriptorMaxBytes)
                {
                    throw new UnexpectedFileException(path, $"a text disk descriptor of {stream.Length:N0} bytes", $"at most {DescriptorMaxBytes:N0} bytes");
                }

                return RegularFile.ReadToEnd(stream, path, DescriptorMaxBytes);
            }
        }

        private static bool IsSparseExtentHeader(byte[] head) => head[0] == 'K' && head[1] == 'D' && head[2] == 'M' && head[3] == 'V';

        /// <summary>
        /// The descriptor that a hosted sparse extent (monolithicSparse, streamOptimized, a snapshot's delta) embeds, read
        /// from its open <paramref name="stream"/> after the header <paramref name="header"/> (VMware Virtual Disk Format
        /// 1.1, SparseExtentHeader); null when it embeds none (an extent of a split disk, named by a text descriptor). Its
        /// version and flags are not looked at: whatever VMware makes of them, a parent the descriptor names is found.
        /// Whoever can write the VM folder wrote the header: a descriptor longer than <see cref="DescriptorMaxBytes"/>, or
        /// placed on the header or past the end of the file, is refused rather than allocated or read.
        /// </summary>
        private static string? ReadEmbeddedDescriptor(FileStream stream, byte[] header, string path)
        {
            ulong offset = LittleEndianUInt64(header, SparseDescriptorOffsetAt);
            ulong sectors = LittleEndianUInt64(header, SparseDescriptorSizeAt);
            if (sectors == 0)
            {
                return null;
            }

            const ulong maxSectors = DescriptorMaxBytes / SectorBytes;
            if (sectors > maxSectors)
            {
                throw new UnexpectedFileException(path, $"a sparse disk whose header gives its embedded descriptor {sectors:N0} sectors",
                    $"at most {maxSectors:N0} sectors ({DescriptorMaxBytes:N0} bytes)");
            }

            ulong fileSectors = (ulong)stream.Length / SectorBytes;
            if (offset == 0 || offset > fileSectors || sectors > fileSectors - offset)
            {
                throw new UnexpectedFileException(path, $"a sparse disk whose header places its embedded descriptor at sector {offset:N0}, {sectors:N0} sectors long",
                    $"a descriptor after the header and inside the file's {fileSectors:N0} whole sectors");
            }

            stream.Position = (long)offset * SectorBytes;
            var bytes = new byte[(int)sectors * SectorBytes];
            int read = stream.ReadFully(bytes, bytes.Length);
            // The text ends where the zeros that pad it to whole sectors begin.
            int end = Array.IndexOf(bytes, (byte)0, 0, read);
            return RegularFile.DecodeText(new ArraySegment<byte>(bytes, 0, end < 0 ? read : end));
        }

        private static ulong LittleEndianUInt64(byte[] buffer, int offset)
        {
            ulong value = 0;
            for (int i = 7; i >= 0; i--)
            {
                value = (value << 8) | buffer[offset + i];
            }

            return value;
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
