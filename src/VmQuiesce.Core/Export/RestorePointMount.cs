using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Export
{
    /// <summary>One guest file system of a mounted restore point.</summary>
    public sealed class MountedFileSystem
    {
        internal MountedFileSystem(string disk, string device, string type, string path)
        {
            Disk = disk;
            Device = device;
            Type = type;
            Path = path;
        }

        /// <summary>The file of the restore point that holds it.</summary>
        public string Disk { get; }

        /// <summary>The read-only loop device (or partition of it) the host mounted.</summary>
        public string Device { get; }

        /// <summary>ext4, xfs, btrfs, vfat or ntfs3, as blkid found it.</summary>
        public string Type { get; }

        /// <summary>Where it is mounted: &lt;folder&gt;/disk0 for a disk without partitions, &lt;folder&gt;/disk0p1 for its first partition.</summary>
        public string Path { get; }

        public override string ToString() => Path;
    }

    /// <summary>
    /// Mount-VmBackup: a restore point's guest file systems, read-only, under a folder. The point is served over
    /// NBD by this process (<see cref="RestorePointServer"/>, every chunk verified); qemu-storage-daemon interprets
    /// each disk's format (a qcow2 with its backing forced off) and exposes the guest-visible disk as a read-only
    /// file through its FUSE export; losetup -r makes a read-only loop device of it and scans its partitions; each
    /// file system blkid recognises among ext2/3/4, xfs, btrfs, vfat and NTFS is mounted with ro,nodev,nosuid,noexec
    /// (and no journal replay). Every step is written to a record under /run/vmquiesce/mounts first, so a mount whose
    /// process died is found and removed by Dismount-VmBackup.
    /// </summary>
    /// <remarks>
    /// Why these tools: qemu-storage-daemon and losetup are in every QEMU host's packages and need no /dev/nbd
    /// (qemu-nbd -c needs the nbd kernel module, which many hosts and containers lack). The guest's file system is
    /// still parsed by the host kernel: that is why only a short list of mainstream file systems is mounted, each
    /// by its explicit type, read-only at every layer. libguestfs, which parses it inside an appliance VM, is the
    /// stronger isolation and the choice where that risk is not acceptable; it is not used here.
    /// </remarks>
    public sealed class RestorePointMount : IDisposable
    {
        internal const string RecordFolder = "/run/vmquiesce/mounts";
        private const int OwnerOnlyFolder = 0x1C0; // 0700

        private static readonly Dictionary<string, (string Type, string Options)> s_mountable = new Dictionary<string, (string, string)>(StringComparer.Ordinal)
        {
            ["ext2"] = ("ext2", string.Empty),
            ["ext3"] = ("ext3", ",noload"),
            ["ext4"] = ("ext4", ",noload"),
            ["xfs"] = ("xfs", ",norecovery,nouuid"),
            ["btrfs"] = ("btrfs", ",nologreplay"),
            ["vfat"] = ("vfat", string.Empty),
            ["ntfs"] = ("ntfs3", string.Empty),
        };

        private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(2);

        private readonly MountRecord _record;
        private readonly RestorePointServer? _server;

        private RestorePointMount(MountRecord record, RestorePointServer? server, IReadOnlyList<MountedFileSystem> fileSystems, RestorePoint? point)
        {
            _record = record;
            _server = server;
            FileSystems = fileSystems;
            Point = point;
        }

        /// <summary>The folder the caller named.</summary>
        public string Path => _record.Folder;

        public string Id => _record.Id;

        /// <summary>The mounted restore point; null for a mount found from its record (Get-VmBackupMount in another process).</summary>
        public RestorePoint? Point { get; }

        public string VmName => _record.VmName;

        public string RestorePointId => _record.RestorePointId;

        public IReadOnlyList<MountedFileSystem> FileSystems { get; }

        /// <summary>False when the process that served it is gone: its files then read as I/O errors; dismount it.</summary>
        public bool IsServed => _server?.IsRunning ?? ProcessIsAlive(_record.ServerProcessId);

        /// <summary>
        /// Where the disks of <paramref name="point"/> can be mounted for <paramref name="folder"/> (absolute): its real
        /// path (the folders above it resolved), checked without changing anything. The folder, when it exists, must be
        /// root's (or this user's) and not a link, and no one else may be able to rename it or a folder above it and put
        /// their own there (a guest's files keep their guest owners and modes, and a guest uid is some host user's too).
        /// </summary>
        private static string CheckMountFolder(string folder, RestorePoint point)
        {
            string name = System.IO.Path.GetFileName(folder);
            string? parent = System.IO.Path.GetDirectoryName(folder);
            if (parent == null || name.Length == 0)
            {
                throw Unsafe(point, folder, "the root of the file system");
            }

            string target = System.IO.Path.Combine(UnixFiles.RealPathOfDeepestExisting(parent), name);
            if (RegularFile.StatNoFollow(target) is FileStatus existing && (existing.IsSymbolicLink || (existing.Uid != 0 && existing.Uid != Libc.geteuid())))
            {
                throw Unsafe(point, folder, "it is " + (existing.IsSymbolicLink ? "a link" : $"a folder of user id {existing.Uid}") + ", who could open the guest's files to others");
            }

            return UnixFiles.DescribeReplaceable(target) is string why
                ? throw Unsafe(point, folder, why + ", and so open the guest's files to others")
                : target;
        }

        /// <summary>
        /// Makes <paramref name="target"/> (checked by <see cref="CheckMountFolder"/>) root's alone (0700), making it and
        /// the folders above it when missing, through descriptors: a link or another user's folder put there meanwhile is
        /// refused, not followed. Returns the mode an existing folder had (the dismount gives it back), null for a new one.
        /// </summary>
        private static int? MakePrivateFolder(string target, RestorePoint point)
        {
            try
            {
                using TrustedFolder parent = TrustedFolder.Open(System.IO.Path.GetDirectoryName(target)!, owner: null, create: true);
                string name = System.IO.Path.GetFileName(target);
                FileStatus? existing = parent.Stat(name);
                using TrustedFolder made = existing == null ? parent.CreateFolder(name) : parent.OpenBelow(name, owner: null, create: false);
                SetMode(made, OwnerOnlyFolder);
                return existing == null ? null : (int)(existing.Value.Mode & 0xFFF);
            }
            catch (FolderTrustException e)
            {
                throw Unsafe(point, target, e.Message);
            }
        }

        private static void SetMode(TrustedFolder folder, int mode)
        {
            if (Libc.fchmod(folder.Descriptor, mode) != 0)
            {
                throw RegularFile.Failure("change the mode of", folder.Path, System.Runtime.InteropServices.Marshal.GetLastWin32Error());
            }
        }

        private static VmQuiesceException Unsafe(RestorePoint point, string folder, string why) =>
            new VmQuiesceException("MountFolderUnsafe", FailureKind.SecurityError, $"Cannot mount restore point '{point.Id}' on '{folder}': {why}.", folder)
            {
                Remedy = "Mount on a new folder (it is made readable by root alone) or an empty folder root owns, below folders only root can change (such as /mnt, /srv or /tmp).",
            };

        /// <summary>
        /// Mounts <paramref name="point"/> under <paramref name="folder"/> (made when missing; it must be empty).
        /// Linux, as root. Nothing is left when it fails. The mount owns <paramref name="repository"/> once it serves
        /// it: a connection to object storage is closed when the mount ends.
        /// </summary>
        public static RestorePointMount Mount(IRestorePointSource repository, RestorePoint point, string folder, CancellationToken cancel)
        {
            if (!HostPlatform.IsLinux || Libc.geteuid() != 0)
            {
                throw new VmQuiesceException("MountNotSupported", FailureKind.NotSupported,
                    $"Mounting a restore point needs Linux and root (loop devices and mounts); this is {HostPlatform.Name}{(HostPlatform.IsLinux ? " as a user other than root" : string.Empty)}.", point.Id)
                {
                    Remedy = "Run as root on a Linux host, or restore the point and open its disks with the tools of this host.",
                };
            }

            folder = System.IO.Path.GetFullPath(folder);
            if (File.Exists(folder) || (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any()))
            {
                throw new VmQuiesceException("MountFolderNotEmpty", FailureKind.InvalidArgument, $"Cannot mount restore point '{point.Id}' on '{folder}': it is not an empty folder.", folder);
            }

            string target = CheckMountFolder(folder, point);
            RestorePointServer server = RestorePointServer.Start(repository, point, new RestorePointServerOptions { OwnsRepository = true });
            MountRecord? record = null;
            var fileSystems = new List<MountedFileSystem>();
            try
            {
                // Made once the point is served: a point that cannot be served leaves no folder behind.
                int? folderMode = MakePrivateFolder(target, point);
                record = new MountRecord(NewId(), target, point.VmName, point.Id, HostPlatform.ProcessId) { FolderMode = folderMode };
                record.Scratch = ScratchFolder.Create("vmq-mount").Path;
                record.Save();
                for (int i = 0; i < server.Disks.Count; i++)
                {
                    cancel.ThrowIfCancellationRequested();
                    fileSystems.AddRange(MountDisk(server, server.Disks[i], i, record, cancel));
                }

                if (fileSystems.Count == 0)
                {
                    throw new VmQuiesceException("MountNoFileSystems", FailureKind.InvalidData,
                        $"The restore point '{point.Id}' of VM '{point.VmName}' holds no file system this host mounts (ext2/3/4, xfs, btrfs, vfat, ntfs) on its disks or their partitions.", point.Id);
                }

                var mount = new RestorePointMount(record, server, fileSystems, point);
                s_live[record.Id] = mount;
                return mount;
            }
            catch
            {
                if (record != null)
                {
                    Undo(record, null);
                }

                server.Stop();
                throw;
            }
        }

        /// <summary>
        /// The mount among <paramref name="mounts"/> on <paramref name="folder"/>, named as given to Mount-VmBackup or by
        /// its real path (what a mount records, the folders above it resolved); null when none is.
        /// </summary>
        public static RestorePointMount? FindOn(IEnumerable<RestorePointMount> mounts, string folder)
        {
            string given = folder.Length > 1 ? folder.TrimEnd(System.IO.Path.DirectorySeparatorChar) : folder;
            string real = HostPlatform.IsLinux ? UnixFiles.RealPathOfDeepestExisting(given) : given;
            return mounts.FirstOrDefault(mount => string.Equals(mount.Path, given, StringComparison.Ordinal) || string.Equals(mount.Path, real, StringComparison.Ordinal));
        }

        /// <summary>The mounts of this host, from their records: made by this process or by one that is gone.</summary>
        public static IReadOnlyList<RestorePointMount> Find()
        {
            if (!Directory.Exists(RecordFolder))
            {
                return Array.Empty<RestorePointMount>();
            }

            var found = new List<RestorePointMount>();
            foreach (string file in Directory.EnumerateFiles(RecordFolder, "*.json"))
            {
                MountRecord? record = MountRecord.TryLoad(file);
                if (record != null)
                {
                    found.Add(s_live.TryGetValue(record.Id, out RestorePointMount? live) ? live : new RestorePointMount(record, null, record.FileSystems, null));
                }
            }

            return found.OrderBy(mount => mount.Path, StringComparer.Ordinal).ToList();
        }

        /// <summary>
        /// Where <paramref name="item"/> (a path under the mount folder: disk0/etc/hosts, or disk0\etc\hosts) lands in
        /// <paramref name="destinationFolder"/>: under its own last name. Known before anything is mounted, so a
        /// confirmation names the file that is written; throws ItemPathInvalid for an item that cannot be in a point.
        /// </summary>
        public static string TargetOf(string item, string destinationFolder) =>
            System.IO.Path.Combine(System.IO.Path.GetFullPath(destinationFolder), ItemCopier.NamesOf(item).Last());

        /// <summary>
        /// Copies <paramref name="item"/> into <paramref name="destinationFolder"/> (see <see cref="ItemCopier"/>), keeping
        /// owners (or <paramref name="owner"/>'s ids), modes and times; an existing file or folder of that name is replaced
        /// only when <paramref name="force"/>.
        /// </summary>
        public RestoredItem CopyItem(string item, string destinationFolder, bool force, CancellationToken cancel, ItemOwner? owner = null)
        {
            string source = ItemCopier.Resolve(Path, item);
            string destination = TargetOf(item, destinationFolder);
            var result = new RestoredItem(item, destination);
            ItemCopier.Copy(source, destination, force, result, cancel, owner);
            return result;
        }

        /// <summary>Unmounts, detaches the loop devices, ends the storage daemons, stops serving and removes the record. Throws when a file system is busy (nothing more is undone then).</summary>
        public void Dismount()
        {
            Undo(_record, this);
            _server?.Stop();
        }

        public void Dispose() => Dismount();

        public override string ToString() => $"{VmName} {RestorePointId} on {Path}";

        private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, RestorePointMount> s_live = new System.Collections.Concurrent.ConcurrentDictionary<string, RestorePointMount>(StringComparer.Ordinal);

        private static IEnumerable<MountedFileSystem> MountDisk(RestorePointServer server, ServedDisk disk, int index, MountRecord record, CancellationToken cancel)
        {
            string format = disk.Format ?? throw new VmQuiesceException("MountFormatUnknown", FailureKind.InvalidData,
                $"The disk '{disk.Path}' of restore point '{server.RestorePointId}' has no recorded format, and the format is never guessed from bytes the guest wrote; it is not mounted.", disk.Path);
            if (format != DiskImageFormat.Raw && format != DiskImageFormat.Qcow2)
            {
                throw new VmQuiesceException("MountFormatUnsupported", FailureKind.NotSupported, $"The disk '{disk.Path}' is a {format} image; Mount-VmBackup mounts raw and qcow2 disks.", disk.Path);
            }

            if (QemuImage.References(disk.Uri, format, server.ReadStart(disk, QemuImage.Qcow2HeaderBytes, cancel), cancel).Describe() is string why)
            {
                throw new VmQuiesceException("ImageNamesOtherFiles", FailureKind.SecurityError, $"The disk '{disk.Path}' is not mounted: {why}, and a backed-up disk may name only itself.", disk.Path);
            }

            string name = "disk" + index.ToString(CultureInfo.InvariantCulture);
            string guestView = System.IO.Path.Combine(record.Scratch!, name + ".raw");
            using (File.Create(guestView))
            {
            }

            var nbd = new JsonObject().With("driver", "nbd").With("node-name", "nbd").With("read-only", true).With("export", disk.ExportName)
                .With("server", new JsonObject().With("type", "unix").With("path", server.Endpoint.SocketPath));
            var arguments = new List<string> { "--daemonize", "--blockdev", JsonText.Serialize(nbd, indented: false) };
            string node = "nbd";
            if (format == DiskImageFormat.Qcow2)
            {
                arguments.AddRange(new[] { "--blockdev", JsonText.Serialize(new JsonObject().With("driver", "qcow2").With("node-name", "fmt").With("file", "nbd").With("read-only", true).With("backing", null), indented: false) });
                node = "fmt";
            }

            arguments.AddRange(new[] { "--export", JsonText.Serialize(new JsonObject().With("type", "fuse").With("id", "view").With("node-name", node).With("mountpoint", guestView).With("writable", false), indented: false) });
            record.Daemons.Add(guestView);
            record.Save();
            Run("qemu-storage-daemon", arguments, "MountFailed", cancel);
            string loop = Run("losetup", new[] { "--read-only", "--find", "--show", "--partscan", guestView }, "MountFailed", cancel).Trim();
            if (!loop.StartsWith("/dev/loop", StringComparison.Ordinal))
            {
                throw new VmQuiesceException("MountFailed", FailureKind.InvalidOperation, $"losetup named '{loop}' as the loop device of '{disk.Path}'; expected /dev/loopN.", disk.Path);
            }

            string device = System.IO.Path.GetFileName(loop);
            var partitions = Directory.Exists("/sys/block/" + device)
                ? Directory.EnumerateDirectories("/sys/block/" + device, device + "p*").Select(System.IO.Path.GetFileName).OrderBy(p => p!.Length).ThenBy(p => p, StringComparer.Ordinal).ToList()
                : new List<string?>();
            var candidates = partitions.Count == 0 ? new[] { (Device: loop, Name: name) } : partitions.Select(p => (Device: "/dev/" + p, Name: name + p!.Substring(device.Length))).ToArray();
            foreach (var (candidate, mountName) in candidates)
            {
                string? type = FileSystemType(candidate, cancel);
                if (type == null || !s_mountable.TryGetValue(type, out var how))
                {
                    continue;
                }

                string target = System.IO.Path.Combine(record.Folder, mountName);
                Directory.CreateDirectory(target);
                record.Mounts.Add(target);
                record.Save();
                Run("mount", new[] { "-t", how.Type, "-o", "ro,nodev,nosuid,noexec" + how.Options, candidate, target }, "MountFailed", cancel);
                var mounted = new MountedFileSystem(disk.Path, candidate, how.Type, target);
                record.FileSystems.Add(mounted);
                record.Save();
                yield return mounted;
            }
        }

        /// <summary>What blkid's low-level probe finds on <paramref name="device"/>, or null.</summary>
        private static string? FileSystemType(string device, CancellationToken cancel)
        {
            ToolResult result = ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find("blkid"), new[] { "-p", "-o", "export", device }) { Timeout = ToolTimeout, OutputLimit = 64 * 1024 }, cancel);
            return result.ExitCode != 0 ? null : result.StandardOutput.Split('\n').Where(line => line.StartsWith("TYPE=", StringComparison.Ordinal)).Select(line => line.Substring(5).Trim()).FirstOrDefault();
        }

        private static string Run(string tool, IEnumerable<string> arguments, string errorId, CancellationToken cancel)
        {
            ToolResult result = ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find(tool), arguments) { Timeout = ToolTimeout, OutputLimit = 64 * 1024 }, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidOperation, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", tool);
            }

            return result.StandardOutput;
        }

        /// <summary>Undoes a record's steps newest first. A busy file system stops it, and the record stays to try again.</summary>
        private static void Undo(MountRecord record, RestorePointMount? live)
        {
            foreach (string target in record.Mounts.AsEnumerable().Reverse().ToList())
            {
                if (IsMountPoint(target))
                {
                    ToolResult result = ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find("umount"), new[] { target }) { Timeout = ToolTimeout }, CancellationToken.None);
                    if (result.ExitCode != 0)
                    {
                        throw new VmQuiesceException("DismountBusy", FailureKind.ResourceBusy, $"Cannot unmount '{target}': {result.Message}", target)
                        {
                            Remedy = $"Close what uses files under '{record.Folder}' (a shell's current folder, an open file), then run Dismount-VmBackup again.",
                        };
                    }
                }

                TryDeleteFolder(target);
                record.Mounts.Remove(target);
                record.Save();
            }

            // Loop devices and daemons are found by the FUSE file they serve, never by a recorded name or id alone: a
            // device detached meanwhile may be someone else's now, and a losetup or daemon start stopped by Ctrl+C may
            // have made one it never named.
            foreach (string loop in LoopsReading(record.Daemons))
            {
                ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find("losetup"), new[] { "--detach", loop }) { Timeout = ToolTimeout }, CancellationToken.None);
            }

            foreach (int pid in DaemonsServing(record.Daemons))
            {
                EndDaemon(pid);
            }

            foreach (string guestView in record.Daemons.Where(IsMountPoint))
            {
                // A daemon that is gone leaves its FUSE mount behind ("transport endpoint is not connected").
                ToolProcess.Run(new ToolCommand(HostTools.ForThisHost.Find("umount"), new[] { guestView }) { Timeout = ToolTimeout }, CancellationToken.None);
            }

            if (record.Scratch != null)
            {
                try
                {
                    Directory.Delete(record.Scratch, recursive: true);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                }
            }

            if (record.FolderMode is int mode)
            {
                // The caller's own folder: it stays, as it was.
                try
                {
                    using TrustedFolder folder = TrustedFolder.OpenNoFollow(record.Folder);
                    SetMode(folder, mode);
                }
                catch (FolderTrustException)
                {
                    // Removed or replaced since: nothing of the caller's is left there to give back.
                }
            }
            else
            {
                TryDeleteFolder(record.Folder);
            }

            record.Delete();
            if (live != null)
            {
                s_live.TryRemove(record.Id, out _);
            }
        }

        /// <summary>The loop devices whose backing file is one of <paramref name="guestViews"/> (the FUSE files of a mount's daemons).</summary>
        private static IEnumerable<string> LoopsReading(IReadOnlyList<string> guestViews)
        {
            const string deleted = " (deleted)";
            foreach (string device in Directory.Exists("/sys/block") ? Directory.EnumerateDirectories("/sys/block", "loop*") : Enumerable.Empty<string>())
            {
                string backing;
                try
                {
                    backing = File.ReadAllText(System.IO.Path.Combine(device, "loop", "backing_file")).TrimEnd('\n');
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    continue; // not attached
                }

                if (guestViews.Contains(backing.EndsWith(deleted, StringComparison.Ordinal) ? backing.Substring(0, backing.Length - deleted.Length) : backing))
                {
                    yield return "/dev/" + System.IO.Path.GetFileName(device);
                }
            }
        }

        /// <summary>The processes of this user that were started to export one of <paramref name="guestViews"/> (its path is in their arguments).</summary>
        private static IEnumerable<int> DaemonsServing(IReadOnlyList<string> guestViews)
        {
            var exported = guestViews.Select(view => "\"mountpoint\":" + JsonText.Serialize(view, indented: false)).ToList();
            foreach (int pid in ProcessIdentity.ProcessIds())
            {
                string folder = "/proc/" + pid.ToString(CultureInfo.InvariantCulture);
                string commandLine;
                try
                {
                    commandLine = File.ReadAllText(folder + "/cmdline");
                    if (UnixFiles.Stat(folder).Uid != Libc.geteuid())
                    {
                        continue;
                    }
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    continue; // ended meanwhile
                }

                if (exported.Any(export => commandLine.Contains(export)))
                {
                    yield return pid;
                }
            }
        }

        private static void EndDaemon(int pid)
        {
            try
            {
                using var process = System.Diagnostics.Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(10_000);
            }
            catch (Exception e) when (e is ArgumentException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
            {
            }
        }

        private static bool IsMountPoint(string path) =>
            File.ReadAllLines("/proc/self/mountinfo").Select(line => line.Split(' ')).Any(fields => fields.Length > 4 && Unescape(fields[4]) == path);

        /// <summary>mountinfo writes space, tab, newline and backslash as octal escapes.</summary>
        private static string Unescape(string field) =>
            System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-7]{3})", match => ((char)Convert.ToInt32(match.Groups[1].Value, 8)).ToString());

        private static void TryDeleteFolder(string folder)
        {
            try
            {
                if (Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any())
                {
                    Directory.Delete(folder);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
            }
        }

        private static bool ProcessIsAlive(int pid) => Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}");

        private static string NewId() => Guid.NewGuid().ToString("N").Substring(0, 8);
    }
}
