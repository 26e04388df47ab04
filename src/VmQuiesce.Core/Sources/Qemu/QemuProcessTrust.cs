using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>A QEMU process that passed the trust checks: who it is and as whom it runs.</summary>
    internal sealed class QemuPeer
    {
        public QemuPeer(int processId, uint uid, string user, string executable)
        {
            ProcessId = processId;
            Uid = uid;
            User = user;
            Executable = executable;
        }

        public int ProcessId { get; }

        public uint Uid { get; }

        public string User { get; }

        public string Executable { get; }

        public override string ToString() => $"QEMU process {ProcessId} ('{Executable}', user {User})";
    }

    /// <summary>
    /// Which processes VmQuiesce believes are QEMU (Linux): the program the kernel runs for them
    /// (/proc/&lt;pid&gt;/exe, not the name on their command line, which any process can choose) is a
    /// qemu-system-* or qemu-kvm binary in a system folder, owned by root and writable by no one else; and
    /// they run as root or as one of the QEMU users (libvirt-qemu and qemu unless VMQUIESCE_QEMU_USERS
    /// names others). A monitor or an agent is believed only when such a process serves its socket,
    /// and what it says about disks only for files that process itself has open.
    /// </summary>
    public sealed class QemuProcessTrust
    {
        /// <summary>Comma-separated account names that replace <see cref="DefaultUsers"/> (root is always trusted).</summary>
        public const string UsersVariable = "VMQUIESCE_QEMU_USERS";

        private static readonly string[] SystemFolders =
        {
            "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/libexec", "/usr/local/bin", "/usr/local/sbin", "/usr/local/libexec",
        };

        private readonly Func<string, bool> _isQemuExecutable;

        public QemuProcessTrust(IEnumerable<string> users)
            : this(users, IsSystemQemu)
        {
        }

        private QemuProcessTrust(IEnumerable<string> users, Func<string, bool> isQemuExecutable)
        {
            Users = users.Where(u => u.Length > 0).Distinct(StringComparer.Ordinal).ToList();
            _isQemuExecutable = isQemuExecutable;
        }

        /// <summary>The accounts Debian's and Red Hat's QEMU packages and libvirt run VMs as.</summary>
        public static IReadOnlyList<string> DefaultUsers { get; } = new[] { "libvirt-qemu", "qemu" };

        /// <summary>Accounts besides root whose QEMU processes are trusted.</summary>
        public IReadOnlyList<string> Users { get; }

        /// <summary>The default users, or those VMQUIESCE_QEMU_USERS names.</summary>
        public static QemuProcessTrust FromEnvironment()
        {
            string? configured = Environment.GetEnvironmentVariable(UsersVariable);
            return new QemuProcessTrust(configured == null ? DefaultUsers : configured.Split(',').Select(u => u.Trim()));
        }

        /// <summary>For tests whose stand-in QEMU is the test process itself: trusts that one executable, with the same user rules.</summary>
        internal static QemuProcessTrust WithExecutable(string executable, IEnumerable<string>? users = null) =>
            new QemuProcessTrust(users ?? DefaultUsers, path => path == executable);

        /// <summary>qemu-system-x86_64 and friends, and qemu-kvm as Red Hat ships it: by name only (for picking candidates).</summary>
        internal static bool LooksLikeQemu(string program) =>
            program.StartsWith("qemu-system-", StringComparison.Ordinal) || program == "qemu-kvm";

        /// <summary>Why process <paramref name="processId"/> is not a trusted QEMU, or null (then <paramref name="peer"/> describes it). Linux only.</summary>
        internal string? WhyUntrusted(int processId, out QemuPeer? peer)
        {
            peer = null;
            (string? exe, FileIdentity? file) = LinuxProcessInspector.Executable(processId);
            uint[]? uids = LinuxProcessInspector.UserIds(processId);
            if (exe == null || file == null || uids == null || uids.Length == 0)
            {
                return "its program and user cannot be read (it ended, or VmQuiesce does not run as root)";
            }

            const string Deleted = " (deleted)";
            string path = exe.EndsWith(Deleted, StringComparison.Ordinal) ? exe.Substring(0, exe.Length - Deleted.Length) : exe;
            string user = LinuxProcessInspector.UserName(uids[1]) ?? uids[1].ToString(CultureInfo.InvariantCulture);
            if (!_isQemuExecutable(path))
            {
                return $"its program is {GuestText.Quote(exe)}, not a QEMU binary (qemu-system-* or qemu-kvm) in a system folder ({string.Join(", ", SystemFolders)})";
            }

            if (!file.IsRegularFile || file.Uid != 0 || (file.Mode & 0x12) != 0)
            {
                return $"its program {GuestText.Quote(exe)} is not a root-owned file that only root can change";
            }

            var trusted = new HashSet<uint> { 0 };
            foreach (string name in Users)
            {
                if (Logon.Linux.PosixUser.Find(name) is Logon.Linux.PosixUser account)
                {
                    trusted.Add(account.Uid);
                }
            }

            if (uids.Any(uid => !trusted.Contains(uid)))
            {
                return $"it runs as user {GuestText.Quote(user)}, not as root or a QEMU user ({string.Join(", ", Users)}; set {UsersVariable} to name others)";
            }

            peer = new QemuPeer(processId, uids[1], user, path);
            return null;
        }

        /// <summary>Why a socket path named on a QEMU command line is not that QEMU's own socket, or null.</summary>
        internal static string? WhySocketUntrusted(string path, QemuPeer peer)
        {
            FileIdentity? socket = LinuxProcessInspector.Stat(path, followLinks: false);
            if (socket == null)
            {
                return $"its socket '{path}' does not exist";
            }

            if (!socket.IsSocket)
            {
                return $"'{path}' is {socket.Kind}, not a socket";
            }

            return socket.Uid == peer.Uid || socket.Uid == 0
                ? null
                : $"its socket '{path}' belongs to user {LinuxProcessInspector.UserName(socket.Uid) ?? socket.Uid.ToString(CultureInfo.InvariantCulture)}, not to {peer.User}, as whom QEMU runs";
        }

        /// <summary>
        /// The trusted QEMU process serving a connection, or an error naming the socket and the rule. Off Linux
        /// nothing can be checked: null, and the caller says so.
        /// </summary>
        internal QemuPeer? Verify(int? processId, string address, string what)
        {
            if (!HostPlatform.IsLinux)
            {
                return null;
            }

            if (processId == null)
            {
                throw Untrusted(address, $"the process that serves the {what} at '{address}' cannot be found on this host, so VmQuiesce cannot tell it is QEMU",
                    "Give the unix socket QEMU itself listens on (-qmp unix:<path>,server=on,wait=off), or a tcp address on this host.");
            }

            if (WhyUntrusted(processId.Value, out QemuPeer? peer) is string why)
            {
                throw Untrusted(address, $"process {processId} serves the {what} at '{address}', but {why}",
                    $"Back up only VMs run by a system QEMU as root or a QEMU user; to trust another account, set {UsersVariable} (for example 'libvirt-qemu,qemu,vmrunner').");
            }

            return peer;
        }

        private static VmQuiesceException Untrusted(string address, string why, string remedy) =>
            new VmQuiesceException("QemuProcessUntrusted", FailureKind.SecurityError, $"VmQuiesce does not trust this VM: {why}. Nothing was changed.", address)
            {
                Remedy = remedy,
            };

        private static bool IsSystemQemu(string path) =>
            LooksLikeQemu(Path.GetFileName(path)) && SystemFolders.Contains(Path.GetDirectoryName(path), StringComparer.Ordinal);
    }
}
