using System;
using System.Collections.Generic;
using System.IO;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The disk images a backup reads, opened before anything is frozen and held until the view is done:
    /// never through a symbolic link, regular files only, and (on Linux) only files the QEMU process itself
    /// has open, so a monitor cannot name a host file (/etc/shadow, /dev/null) and have it copied. The
    /// copy reads each through this process's own descriptor (/proc/&lt;pid&gt;/fd/&lt;n&gt;), so a path
    /// changed after the check changes nothing.
    /// </summary>
    internal sealed class QemuDiskFiles : IDisposable
    {
        private readonly Dictionary<string, string> _readPaths = new Dictionary<string, string>(StringComparer.Ordinal);
        private readonly List<SafeFileHandle> _handles = new List<SafeFileHandle>();

        private QemuDiskFiles()
        {
        }

        /// <summary>Opens and checks every disk's image; the first that fails is a DiskFileUntrusted error, and nothing stays open.</summary>
        public static QemuDiskFiles Open(IReadOnlyList<QemuDisk> disks, QemuPeer? peer, string vmName)
        {
            var files = new QemuDiskFiles();
            try
            {
                // Read before opening ours: when the stand-in QEMU is this very process, our own descriptors must not count.
                HashSet<FileIdentity>? qemuFiles = HostPlatform.IsLinux && peer != null ? LinuxProcessInspector.OpenFiles(peer.ProcessId) : null;
                foreach (QemuDisk disk in disks)
                {
                    if (!Path.IsPathRooted(disk.File))
                    {
                        throw Refused(disk, vmName, "that path is relative to QEMU's working folder, not a full path");
                    }

                    if (!files._readPaths.ContainsKey(disk.File))
                    {
                        files._readPaths[disk.File] = HostPlatform.IsLinux ? files.OpenChecked(disk, qemuFiles, peer, vmName) : CheckByPath(disk, vmName);
                    }
                }

                return files;
            }
            catch
            {
                files.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Refuses (Linux) a disk whose folder someone other than root and the user QEMU runs as could put a link into, or
        /// swap: the backup has QEMU make its overlay or scratch image there by name, and QEMU opens that name following a
        /// link and truncates what it finds, with QEMU's rights (often root's).
        /// </summary>
        public static void RefuseSharedFolders(IReadOnlyList<QemuDisk> disks, QemuPeer? peer, string vmName)
        {
            if (!HostPlatform.IsLinux)
            {
                return;
            }

            foreach (QemuDisk disk in disks)
            {
                string folder = Path.GetDirectoryName(disk.File)!;
                if (UnixFiles.DescribeOthersCanAddTo(folder, peer?.Uid) is string why)
                {
                    throw new VmQuiesceException("DiskFolderUnsafe", FailureKind.SecurityError,
                        $"Disk {disk.Name} of VM '{vmName}' lies in '{folder}', where the backup has {peer?.ToString() ?? "QEMU"} make a new image by name, but {why}: QEMU would write through it. Nothing was changed.", folder)
                    {
                        Remedy = $"Give the folder to {OwnerFor(peer)} and let no one else write it (chown {OwnerFor(peer)} '{folder}'; chmod go-w '{folder}'), below folders no other user can change; a QEMU that is not root then still makes its images there as the folder's owner.",
                    };
                }
            }
        }

        /// <summary>Who should own a disk folder: QEMU's own user when it is not root (it must still write there), else root.</summary>
        private static string OwnerFor(QemuPeer? peer) => peer == null || peer.Uid == 0 ? "root" : peer.User;

        /// <summary>Where the copy reads the image the disk had when the files were opened.</summary>
        public string ReadPathFor(string image) => _readPaths[image];

        public void Dispose()
        {
            foreach (SafeFileHandle handle in _handles)
            {
                handle.Dispose();
            }

            _handles.Clear();
        }

        private static VmQuiesceException Refused(QemuDisk disk, string vmName, string why) =>
            new VmQuiesceException("DiskFileUntrusted", FailureKind.SecurityError,
                $"Disk {disk.Name} of VM '{vmName}' names the image '{disk.File}', but {why}. VmQuiesce copies only image files the VM's QEMU itself uses; nothing was changed.", disk.File)
            {
                Remedy = "Point the VM at the real image file (not a link, device or other file), or check what runs this VM.",
            };

        private static string CheckByPath(QemuDisk disk, string vmName)
        {
            var info = new FileInfo(disk.File);
            if (!info.Exists)
            {
                throw Refused(disk, vmName, "it does not exist or is not a file");
            }

            if (ReparsePoints.RedirectionByPath(disk.File) is string link)
            {
                throw Refused(disk, vmName, "it is " + link);
            }

            return disk.File;
        }

        private string OpenChecked(QemuDisk disk, HashSet<FileIdentity>? qemuFiles, QemuPeer? peer, string vmName)
        {
            SafeFileHandle? handle = LinuxProcessInspector.OpenNoFollow(disk.File, out string? why) ?? throw Refused(disk, vmName, why!);
            _handles.Add(handle);
            FileIdentity opened = LinuxProcessInspector.Stat(handle);
            if (!opened.IsRegularFile)
            {
                throw Refused(disk, vmName, $"it is {opened.Kind}, not a regular file");
            }

            if (qemuFiles != null && !qemuFiles.Contains(opened))
            {
                throw Refused(disk, vmName, $"{peer} does not have that file open");
            }

            return UnixFiles.DescriptorPath(handle.DangerousGetHandle().ToInt64());
        }
    }
}
