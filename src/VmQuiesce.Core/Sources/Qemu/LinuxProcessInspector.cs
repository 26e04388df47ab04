using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// Which file an inode is, and what it is: from statx. A class: a set of these (a process's open files) over a value
    /// type would be compiled at run time, on the way to every freeze, where the framework's shared code is precompiled.
    /// </summary>
    internal sealed class FileIdentity : IEquatable<FileIdentity>
    {
        public FileIdentity(ulong device, ulong inode, uint mode, uint uid)
        {
            Device = device;
            Inode = inode;
            Mode = mode;
            Uid = uid;
        }

        public ulong Device { get; }

        public ulong Inode { get; }

        /// <summary>File type and permission bits (st_mode).</summary>
        public uint Mode { get; }

        public uint Uid { get; }

        public bool IsRegularFile => (Mode & 0xF000) == 0x8000;

        public bool IsSymbolicLink => (Mode & 0xF000) == 0xA000;

        public bool IsSocket => (Mode & 0xF000) == 0xC000;

        /// <summary>"a regular file", "a character device", ...: for messages.</summary>
        public string Kind => (Mode & 0xF000) switch
        {
            0x8000 => "a regular file",
            0x4000 => "a folder",
            0xA000 => "a symbolic link",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0x1000 => "a FIFO",
            0xC000 => "a socket",
            _ => "an unknown kind of file",
        };

        public bool Equals(FileIdentity? other) => other != null && Device == other.Device && Inode == other.Inode;

        public override bool Equals(object? obj) => obj is FileIdentity other && Equals(other);

        public override int GetHashCode() => unchecked((int)(Device * 31 + Inode));
    }

    /// <summary>
    /// Linux facts about processes, sockets and files that the trust checks need and the BCL lacks (on top of
    /// <see cref="UnixFiles"/> and the account and statx calls of the logon backend):
    /// who serves the other end of a socket, what a process runs and has open, statx without following
    /// links, opening without following links. Callers use it only behind HostPlatform.IsLinux.
    /// </summary>
    internal static class LinuxProcessInspector
    {

        /// <summary>The process at the other end of a connected socket, or null when it cannot be told (another host, no permission).</summary>
        public static int? PeerProcessId(Socket socket)
        {
            if (socket.AddressFamily == AddressFamily.Unix)
            {
                // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
                var credentials = new byte[12];
                uint length = (uint)credentials.Length;
                return Libc.getsockopt((int)socket.Handle, Libc.SolSocket, Libc.SoPeerCred, credentials, ref length) == 0 && length >= 4
                    ? BitConverter.ToInt32(credentials, 0)
                    : (int?)null;
            }

            return socket.LocalEndPoint is IPEndPoint local && socket.RemoteEndPoint is IPEndPoint remote ? TcpPeerProcessId(local, remote) : null;
        }

        /// <summary>statx of a path; null when it does not exist or cannot be read.</summary>
        public static FileIdentity? Stat(string path, bool followLinks)
        {
            var buffer = new byte[256];
            return Libc.statx(Libc.AtFdCwd, path, followLinks ? 0 : Libc.AtSymlinkNoFollow, Libc.StatxBasicStats, buffer) == 0 ? Identity(buffer) : (FileIdentity?)null;
        }

        /// <summary>statx of an open descriptor.</summary>
        public static FileIdentity Stat(SafeFileHandle handle)
        {
            var buffer = new byte[256];
            if (Libc.statx((int)handle.DangerousGetHandle(), Libc.StatxBasicStats, buffer) != 0)
            {
                throw new IOException("statx of an open file failed: " + Libc.ErrorText(Marshal.GetLastWin32Error()));
            }

            return Identity(buffer);
        }

        /// <summary>
        /// Opens <paramref name="path"/> for reading without following a symbolic link in its last part and
        /// without blocking on a FIFO; the error text when it cannot (ELOOP: "is a symbolic link").
        /// </summary>
        public static SafeFileHandle? OpenNoFollow(string path, out string? why)
        {
            int fd = Libc.open(path, Libc.OpenNonBlocking | Libc.OpenCloseOnExec | Libc.OpenNoFollow);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                why = errno == Libc.ELOOP ? "it is a symbolic link" : Libc.ErrorText(errno);
                return null;
            }

            why = null;
            return new SafeFileHandle((IntPtr)fd, ownsHandle: true);
        }

        /// <summary>The files a process has open (what its /proc/&lt;pid&gt;/fd entries lead to).</summary>
        public static HashSet<FileIdentity> OpenFiles(int processId)
        {
            var files = new HashSet<FileIdentity>();
            foreach (string entry in SafeEnumerate("/proc/" + processId.ToString(CultureInfo.InvariantCulture) + "/fd"))
            {
                if (Stat(entry, followLinks: true) is FileIdentity identity)
                {
                    files.Add(identity);
                }
            }

            return files;
        }

        /// <summary>The program a process runs, as the kernel knows it: the path (" (deleted)" when replaced since) and its inode.</summary>
        public static (string? Path, FileIdentity? File) Executable(int processId)
        {
            string exe = "/proc/" + processId.ToString(CultureInfo.InvariantCulture) + "/exe";
            return (UnixFiles.ReadLink(exe), Stat(exe, followLinks: true));
        }

        /// <summary>The real, effective, saved and file-system user ids of a process (/proc/&lt;pid&gt;/status), or null when it is gone.</summary>
        public static uint[]? UserIds(int processId)
        {
            string? line = ReadLines("/proc/" + processId.ToString(CultureInfo.InvariantCulture) + "/status")?.FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            return line?.Substring(4).Split(new[] { '\t', ' ' }, StringSplitOptions.RemoveEmptyEntries).Select(id => uint.Parse(id, CultureInfo.InvariantCulture)).ToArray();
        }

        /// <summary>The account name of a user id (NSS-aware), or null when it has none.</summary>
        public static string? UserName(uint uid)
        {
            IntPtr entry = Libc.getpwuid(uid);
            return entry == IntPtr.Zero ? null : Marshal.PtrToStringAnsi(Marshal.ReadIntPtr(entry));
        }

        /// <summary>When a process started, in clock ticks since boot (/proc/&lt;pid&gt;/stat field 22): with the pid, it names one process for good.</summary>
        public static ulong? StartTime(int processId)
        {
            string? stat = ReadLines("/proc/" + processId.ToString(CultureInfo.InvariantCulture) + "/stat")?.FirstOrDefault();
            if (stat == null)
            {
                return null;
            }

            // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
            string[] fields = stat.Substring(stat.LastIndexOf(')') + 2).Split(' ');
            return fields.Length > 19 && ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out ulong ticks) ? ticks : (ulong?)null;
        }

        private static IEnumerable<string> SafeEnumerate(string folder)
        {
            try
            {
                return Directory.GetFileSystemEntries(folder);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return Array.Empty<string>();
            }
        }

        private static string[]? ReadLines(string path)
        {
            try
            {
                return File.ReadAllLines(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }

        /// <summary>
        /// A TCP connection's other end on this host: the socket in /proc/net/tcp{,6} whose local address is our
        /// remote one and whose remote address is our local one, then the process holding that socket's inode.
        /// </summary>
        private static int? TcpPeerProcessId(IPEndPoint local, IPEndPoint remote)
        {
            string? inode = null;
            foreach (string table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
            {
                foreach (string row in (ReadLines(table) ?? Array.Empty<string>()).Skip(1))
                {
                    string[] fields = row.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
                    if (fields.Length > 9 && SameEndPoint(fields[1], remote) && SameEndPoint(fields[2], local))
                    {
                        inode = fields[9];
                    }
                }
            }

            if (inode == null || inode == "0")
            {
                return null;
            }

            string target = "socket:[" + inode + "]";
            foreach (string process in SafeEnumerate("/proc"))
            {
                if (int.TryParse(Path.GetFileName(process), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
                    && SafeEnumerate(process + "/fd").Any(fd => UnixFiles.ReadLink(fd) == target))
                {
                    return pid;
                }
            }

            return null;
        }

        /// <summary>/proc/net/tcp's "0100007F:1F90": the address as the kernel stores it (32-bit words in host order), then the port.</summary>
        private static bool SameEndPoint(string field, IPEndPoint endPoint)
        {
            int colon = field.IndexOf(':');
            if (colon < 0 || !int.TryParse(field.Substring(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int port) || port != endPoint.Port)
            {
                return false;
            }

            string hex = field.Substring(0, colon);
            byte[] address = endPoint.Address.IsIPv4MappedToIPv6 ? endPoint.Address.MapToIPv4().GetAddressBytes() : endPoint.Address.GetAddressBytes();
            var stored = new byte[hex.Length / 2];
            for (int i = 0; i < stored.Length; i++)
            {
                stored[i] = byte.Parse(hex.Substring(i * 2, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }

            // Each 32-bit word is printed as the host (little-endian) reads it: reverse the bytes of every word.
            for (int word = 0; word + 4 <= stored.Length; word += 4)
            {
                Array.Reverse(stored, word, 4);
            }

            if (stored.Length == 16 && address.Length == 4)
            {
                // An IPv4 peer of an IPv6 socket: ::ffff:a.b.c.d.
                return stored.Take(10).All(b => b == 0) && stored[10] == 0xFF && stored[11] == 0xFF && stored.Skip(12).SequenceEqual(address);
            }

            return stored.SequenceEqual(address);
        }

        private static FileIdentity Identity(byte[] statx)
        {
            // struct statx: stx_uid at 20, stx_mode (u16) at 28, stx_ino at 32, stx_dev_major at 136, stx_dev_minor at 140.
            ulong device = ((ulong)BitConverter.ToUInt32(statx, 136) << 32) | BitConverter.ToUInt32(statx, 140);
            return new FileIdentity(device, BitConverter.ToUInt64(statx, 32), BitConverter.ToUInt16(statx, 28), BitConverter.ToUInt32(statx, 20));
        }
    }
}
