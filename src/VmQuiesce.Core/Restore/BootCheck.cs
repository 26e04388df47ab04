using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Restore
{
    /// <summary>
    /// How to boot restored disks for a check. The disks boot from their own boot loader unless a
    /// kernel is given (a VM booted with -kernel, such as this project's test guest).
    /// </summary>
    public sealed class BootCheckOptions
    {
        public string QemuExecutable { get; set; } = "qemu-system-x86_64";

        /// <summary>
        /// QEMU's -accel value. Emulation (tcg) works everywhere; "kvm:tcg" is faster where KVM can run the
        /// guest, but a nested KVM that cannot (as on some cloud hosts) hangs the boot until the timeout.
        /// </summary>
        public string Accelerator { get; set; } = "tcg";

        /// <summary>QEMU's machine type (-machine: "q35", "pc-i440fx-7.2"); null: as the restore point recorded it, else QEMU's default.</summary>
        public string? MachineType { get; set; }

        /// <summary>Memory in MiB (-m); null: as the restore point recorded it, else <see cref="DefaultMemoryMiB"/>.</summary>
        public int? MemoryMiB { get; set; }

        /// <summary>CPU count (-smp); null: as the restore point recorded it, else 1.</summary>
        public int? Cpus { get; set; }

        /// <summary>QEMU's CPU model (-cpu: "max", "Skylake-Server"); null: as the restore point recorded it, else QEMU's default.</summary>
        public string? CpuModel { get; set; }

        /// <summary>The memory a VM gets when neither these options nor its restore point say.</summary>
        public const int DefaultMemoryMiB = 512;

        /// <summary>A kernel to boot directly (QEMU -kernel), as the VM's own command line does.</summary>
        public string? Kernel { get; set; }

        public string? Initrd { get; set; }

        /// <summary>The kernel command line (QEMU -append).</summary>
        public string? Append { get; set; }

        /// <summary>How long the guest agent may take to answer after QEMU starts.</summary>
        public TimeSpan BootTimeout { get; set; } = TimeSpan.FromMinutes(5);

        /// <summary>
        /// The machine to start: machine type, memory, CPUs and CPU model each as given here (the caller wins), else as
        /// <paramref name="recorded"/> (what the restore point recorded; null for points without it), else QEMU's
        /// default (memory: <see cref="DefaultMemoryMiB"/>). A recorded CPU model "host" needs KVM: under tcg alone
        /// QEMU's "max" (every feature emulation has) stands in for it.
        /// </summary>
        public VmMachine MachineFor(VmMachine? recorded)
        {
            var given = new VmMachine { Type = MachineType, MemoryMiB = MemoryMiB, Cpus = Cpus, CpuModel = CpuModel };
            var refused = new List<string>();
            given.Allowed(refused);
            if (refused.Count > 0)
            {
                throw new VmQuiesceException("VmOptionInvalid", FailureKind.InvalidArgument, $"The VM options give {string.Join("; ", refused)}.", this);
            }

            var fromPoint = new List<string>();
            T Pick<T>(T mine, T theirs, string name)
            {
                if (mine == null && theirs != null)
                {
                    fromPoint.Add(name);
                    return theirs;
                }

                return mine;
            }

            string? cpuModel = recorded?.CpuModel == "host" && Accelerator == "tcg" ? "max" : recorded?.CpuModel;
            return new VmMachine
            {
                Type = Pick(MachineType, recorded?.Type, nameof(MachineType)),
                MemoryMiB = Pick(MemoryMiB, recorded?.MemoryMiB, nameof(MemoryMiB)) ?? DefaultMemoryMiB,
                Cpus = Pick(Cpus, recorded?.Cpus, nameof(Cpus)),
                CpuModel = Pick(CpuModel, cpuModel, nameof(CpuModel)),
                FromRestorePoint = fromPoint,
            };
        }
    }

    /// <summary>A restored disk to boot, with the image format its restore point recorded (null: not recorded).</summary>
    public sealed class BootDisk
    {
        public BootDisk(string path, string? format)
        {
            Path = path;
            Format = format;
        }

        /// <summary>The disk's file, or for a disk served from its repository the file's path inside the restore point.</summary>
        public string Path { get; }

        public string? Format { get; }

        /// <summary>Where QEMU reads the disk: the file's full path, or the NBD URI of a served disk (which may hold a secret: never shown).</summary>
        internal string Location => ServedHeader != null ? _uri! : System.IO.Path.GetFullPath(Path);

        /// <summary>The first bytes of a served disk, read from the repository: qcow2's header is checked before qemu-img reads the disk.</summary>
        internal byte[]? ServedHeader { get; private set; }

        private string? _uri;

        /// <summary>A disk of a restore point served over NBD (<see cref="RestorePointServer"/>).</summary>
        internal static BootDisk Served(ServedDisk disk, byte[] header) => new BootDisk(disk.Path, disk.Format) { ServedHeader = header, _uri = disk.Uri };

        public override string ToString() => Path;
    }

    /// <summary>
    /// Boots restored disks the way Test-VmBackup -Boot and Restore-VmSnapshot -Verify do: a throwaway
    /// qcow2 overlay over each disk (the disks themselves are never written), QEMU with a guest-agent
    /// channel, wait for guest-ping, read guest-get-fsinfo, shut the guest down, then e2fsck the
    /// overlays' content and look for a journal that needs replaying.
    /// </summary>
    /// <para>
    /// The disks are the backup's data, and a guest wrote their bytes. So each is read only as the format its
    /// restore point recorded (qemu-img -f/-F, never a guess from the bytes), refused when it names another file
    /// (a backing file or an external data file would pull a host file into the copy), and booted by a QEMU that
    /// runs with -sandbox on and, when this process is root on Linux, drops to a throwaway user id no account has
    /// (-runas) once it has opened its files: it can then reach nothing of the host. All scratch files live in a
    /// folder only this user may enter.
    /// </para>
    /// </summary>
    public static class BootCheck
    {
        private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(90);
        private static readonly TimeSpan QemuImgTimeout = TimeSpan.FromMinutes(30);

        /// <summary>The formats the check boots: the ones QEMU/KVM VMs use and whose references it can see.</summary>
        private static readonly string[] BootableFormats = { DiskImageFormat.Raw, DiskImageFormat.Qcow2 };

        /// <summary>Throwaway user ids are drawn from here: far above any account or subordinate-id range in use.</summary>
        private const uint ThrowawayIdBase = 2_000_000_000;
        private const int ThrowawayIdCount = 100_000_000;

        /// <summary>
        /// Test-VmBackup -Boot: boots the point straight from its repository, served over NBD by this process (every
        /// chunk verified as it is read), with throwaway overlays in a private temp folder: nothing is restored first,
        /// nothing is written to the repository. A range the export could not serve (a damaged chunk) fails the check.
        /// </summary>
        public static BootCheckResult RunRestorePoint(Repository.IRestorePointSource repository, Repository.RestorePoint point, BootCheckOptions options, CancellationToken cancel)
        {
            using RestorePointServer served = RestorePointServer.Start(repository, point);
            BootCheckResult result;
            try
            {
                var disks = served.Disks.Select(disk => BootDisk.Served(disk, served.ReadStart(disk, QemuImage.Qcow2HeaderBytes, cancel))).ToList();
                result = Run(disks, options, cancel, point.Machine);
            }
            catch (VmQuiesceException e) when (served.Errors.Count > 0 || e.ErrorId.StartsWith("ExportChunk", StringComparison.Ordinal))
            {
                // A damaged chunk under the header, or under what the file system check read after the boot.
                return new BootCheckResult(false, TimeSpan.Zero, Array.Empty<GuestFileSystem>(), Array.Empty<DiskCheck>(), Unserved(served, e.Message));
            }

            return served.Errors.Count == 0 ? result : new BootCheckResult(result.AgentAnswered, result.BootElapsed, result.FileSystems, result.Disks, Unserved(served, result.Failure))
            {
                QemuUid = result.QemuUid,
                Machine = result.Machine,
            };
        }

        /// <summary>The check's failure plus the ranges the export could not serve (damaged chunks, named).</summary>
        private static string Unserved(RestorePointServer served, string? failure)
        {
            string unserved = served.Errors.Count == 0 ? string.Empty
                : "the repository could not serve all that was read: " + string.Join("; ", served.Errors.Take(3).Select(error => error.Message));
            return failure == null ? "The guest booted, but " + unserved : unserved.Length == 0 ? failure : failure + "; " + unserved;
        }

        /// <summary>Restore-VmSnapshot -Verify: boots what a restore wrote, each file as the format its restore point recorded.</summary>
        public static BootCheckResult Run(RestoreResult restored, BootCheckOptions options, CancellationToken cancel)
        {
            var formats = restored.RestorePoint.Files.ToDictionary(file => file.Path, file => file.RestoredFormat, StringComparer.Ordinal);
            return Run(restored.Files.Select(file => new BootDisk(file.Path, formats.TryGetValue(file.RelativePath, out string? format) ? format : null)).ToList(), options, cancel, restored.RestorePoint.Machine);
        }

        /// <summary>Boots <paramref name="disks"/> as the machine <paramref name="options"/> give, with what they leave out as <paramref name="recorded"/> (their restore point's machine).</summary>
        public static BootCheckResult Run(IReadOnlyList<BootDisk> disks, BootCheckOptions options, CancellationToken cancel, VmMachine? recorded = null)
        {
            VmMachine machine = options.MachineFor(recorded);
            if (disks.Select(disk => WhyNotBootable(disk, cancel)).FirstOrDefault(why => why != null) is string refused)
            {
                return new BootCheckResult(false, TimeSpan.Zero, Array.Empty<GuestFileSystem>(), Array.Empty<DiskCheck>(), refused);
            }

            // Short: unix socket paths are limited to 107 bytes.
            using ScratchFolder scratch = ScratchFolder.Create("vmq-boot");
            var overlays = new List<string>();
            for (int i = 0; i < disks.Count; i++)
            {
                string overlay = Path.Combine(scratch.Path, $"disk{i}.qcow2");
                RunQemuImg(new[] { "create", "-q", "-f", DiskImageFormat.Qcow2, "-b", disks[i].Location, "-F", disks[i].Format!, overlay }, cancel);
                overlays.Add(overlay);
            }

            string agentSocket = Path.Combine(scratch.Path, "qga.sock");
            string console = Path.Combine(scratch.Path, "console.log");
            uint? dropTo = HostPlatform.IsLinux && Libc.geteuid() == 0 ? PickThrowawayId() : (uint?)null;
            var clock = Stopwatch.StartNew();
            using ToolProcess qemu = StartQemu(options, machine, overlays, agentSocket, console, dropTo);
            var (answered, fileSystems, failure, ranAs) = WaitForAgent(qemu, agentSocket, console, options.BootTimeout, cancel);
            TimeSpan bootTime = clock.Elapsed;
            if (dropTo != null && answered && ranAs != dropTo)
            {
                failure ??= $"QEMU still ran as user id {ranAs?.ToString(CultureInfo.InvariantCulture) ?? "unknown"} after the guest booted, not as the throwaway user id {dropTo} it was told to drop to.";
            }

            if (!qemu.WaitForExit(ShutdownTimeout, cancel))
            {
                failure ??= $"The guest did not power off within {ShutdownTimeout.TotalSeconds:0} s of guest-shutdown.";
                qemu.Kill();
            }

            var checks = answered && failure == null
                ? overlays.Select((overlay, i) => CheckFileSystem(disks[i], overlay, scratch.Path, cancel)).ToList()
                : new List<DiskCheck>();
            return new BootCheckResult(answered, bootTime, fileSystems, checks, failure) { QemuUid = ranAs, Machine = machine };
        }

        /// <summary>Why <paramref name="disk"/> is not booted: its format is unknown or not bootable, or it names another file.</summary>
        private static string? WhyNotBootable(BootDisk disk, CancellationToken cancel)
        {
            if (disk.Format == null)
            {
                return $"Refused to boot '{disk.Path}': its restore point does not record its disk format (a restore point from before VmQuiesce recorded formats, or a source that could not be certain), " +
                    "and the format is never guessed from the disk's own bytes, which the guest wrote. Back the VM up again to get a restore point that can be booted.";
            }

            if (!BootableFormats.Contains(disk.Format, StringComparer.Ordinal))
            {
                return $"Refused to boot '{disk.Path}': it is a {disk.Format} image; the boot check boots {string.Join(" and ", BootableFormats)} disks.";
            }

            ImageReferences names = disk.ServedHeader is byte[] header
                ? QemuImage.References(disk.Location, disk.Format, header, cancel)
                : QemuImage.References(disk.Location, disk.Format, cancel);
            return names.Describe() is string why
                ? $"Refused to boot '{disk.Path}' ({disk.Format}): {why}, and a restored disk may name only itself; nothing was started."
                : null;
        }

        /// <summary>A user and group id that no account, group or running process has (Linux, as root).</summary>
        private static uint PickThrowawayId()
        {
            byte[] random = new byte[4];
            using var generator = RandomNumberGenerator.Create();
            for (int attempt = 0; ; attempt++)
            {
                generator.GetBytes(random);
                uint id = ThrowawayIdBase + (BitConverter.ToUInt32(random, 0) % ThrowawayIdCount);
                if ((Libc.getpwuid(id) == IntPtr.Zero && Libc.getgrgid(id) == IntPtr.Zero && !ProcessRunsAs(id)) || attempt >= 100)
                {
                    return id;
                }
            }
        }

        private static bool ProcessRunsAs(uint uid) =>
            ProcessIdentity.ProcessIds().Any(pid => SingleUidOf(pid) == uid);

        /// <summary>The user id of a process whose real, effective, saved and file-system ids are one (/proc/&lt;pid&gt;/status); null when they differ or it is gone.</summary>
        private static uint? SingleUidOf(int pid)
        {
            try
            {
                string? line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(text => text.StartsWith("Uid:", StringComparison.Ordinal));
                string[]? ids = line?.Substring(4).Split(new[] { '\t', ' ' }, StringSplitOptions.RemoveEmptyEntries);
                // Real, effective, saved and file-system ids must all have dropped.
                return ids != null && ids.Length == 4 && ids.Distinct().Count() == 1 && uint.TryParse(ids[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid) ? uid : (uint?)null;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }

        private static ToolProcess StartQemu(BootCheckOptions options, VmMachine machine, IReadOnlyList<string> overlays, string agentSocket, string console, uint? dropTo)
        {
            string program = HostTools.ForThisHost.Resolve(options.QemuExecutable, "The boot option QemuExecutable");
            var arguments = new List<string>();
            if (HostPlatform.IsLinux)
            {
                // seccomp: no obsolete or privileged system calls, no new programs, no scheduler games. Raising
                // privileges stays allowed only until -runas has dropped them (the filter cannot tell the two apart).
                arguments.AddRange(new[] { "-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny" + (dropTo == null ? ",elevateprivileges=deny" : string.Empty) });
            }

            if (dropTo is uint id)
            {
                string user = id.ToString(CultureInfo.InvariantCulture) + ":" + id.ToString(CultureInfo.InvariantCulture);
                arguments.AddRange(SupportsRunWith(program) ? new[] { "-run-with", "user=" + user } : new[] { "-runas", user });
            }

            arguments.AddRange(MachineArguments(options, machine, console));
            for (int i = 0; i < overlays.Count; i++)
            {
                arguments.AddRange(new[]
                {
                    "-drive", $"if=none,id=disk{i},file={QemuPath(overlays[i])},format=qcow2",
                    "-device", $"virtio-blk-pci,drive=disk{i}" + (i == 0 && options.Kernel == null ? ",bootindex=0" : string.Empty),
                });
            }

            arguments.AddRange(new[]
            {
                "-device", "virtio-serial-pci",
                "-chardev", $"socket,id=qga0,path={QemuPath(agentSocket)},server=on,wait=off",
                "-device", "virtserialport,chardev=qga0,name=" + QemuDiscovery.AgentPortName,
            });
            return ToolProcess.Start(new ToolCommand(program, arguments)
            {
                OutputLimit = 64 * 1024,
                StartFailureRemedy = "Install QEMU (Debian: apt-get install qemu-system-x86) or set QemuExecutable in the boot options to its absolute path.",
            });
        }

        /// <summary>
        /// The machine <paramref name="machine"/> (from <see cref="BootCheckOptions.MachineFor"/>: allowlisted values
        /// only) with the accelerator <paramref name="options"/> give, headless, its serial console to a file, and the
        /// kernel, initrd and command line when the VM boots a kernel directly.
        /// </summary>
        internal static List<string> MachineArguments(BootCheckOptions options, VmMachine machine, string console)
        {
            var arguments = new List<string>
            {
                "-accel", options.Accelerator, "-m", (machine.MemoryMiB ?? BootCheckOptions.DefaultMemoryMiB).ToString(CultureInfo.InvariantCulture),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", "file:" + QemuPath(console),
            };
            if (machine.Type != null)
            {
                arguments.AddRange(new[] { "-machine", machine.Type });
            }

            if (machine.Cpus is int cpus)
            {
                arguments.AddRange(new[] { "-smp", cpus.ToString(CultureInfo.InvariantCulture) });
            }

            if (machine.CpuModel != null)
            {
                arguments.AddRange(new[] { "-cpu", machine.CpuModel });
            }
            if (options.Kernel != null)
            {
                arguments.AddRange(new[] { "-kernel", QemuPath(options.Kernel) });
                if (options.Initrd != null)
                {
                    arguments.AddRange(new[] { "-initrd", QemuPath(options.Initrd) });
                }

                if (options.Append != null)
                {
                    arguments.AddRange(new[] { "-append", options.Append });
                }
            }

            return arguments;
        }

        /// <summary>QEMU 9.1 replaced -runas with -run-with user=...; its help says which this QEMU knows.</summary>
        private static bool SupportsRunWith(string program) =>
            ToolProcess.Run(new ToolCommand(program, new[] { "-help" }) { Timeout = TimeSpan.FromMinutes(1) }, CancellationToken.None)
                .StandardOutput.Split('\n').Any(line => line.StartsWith("-run-with", StringComparison.Ordinal) && line.Contains("user="));

        /// <returns>Whether the agent answered, the guest's file systems, why not, and the user id QEMU ran as once the guest ran (Linux), read before the guest is shut down: after, QEMU may be gone.</returns>
        private static (bool Answered, IReadOnlyList<GuestFileSystem> FileSystems, string? Failure, uint? RanAs) WaitForAgent(ToolProcess qemu, string agentSocket, string console, TimeSpan timeout, CancellationToken cancel)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!File.Exists(agentSocket))
            {
                if (qemu.WaitForExit(TimeSpan.FromMilliseconds(100), cancel))
                {
                    string said = qemu.Result(TimeSpan.FromSeconds(5)).Message;
                    return (false, Array.Empty<GuestFileSystem>(), $"QEMU exited with code {qemu.ExitCode} before the guest booted{(said.Length > 0 ? ": " + said : ".")}{ConsoleTail(console)}", null);
                }

                if (DateTime.UtcNow > deadline)
                {
                    return (false, Array.Empty<GuestFileSystem>(), "QEMU did not open the guest agent channel.", null);
                }
            }

            try
            {
                using GuestAgentClient agent = GuestAgentClient.Connect(agentSocket, TimeSpan.FromSeconds(30), cancel);
                TimeSpan left = deadline - DateTime.UtcNow;
                agent.Sync(left > TimeSpan.Zero ? left : TimeSpan.FromSeconds(1), cancel);
                agent.Ping(cancel: cancel);
                IReadOnlyList<GuestFileSystem> fileSystems = agent.GetFileSystems(cancel);
                uint? ranAs = HostPlatform.IsLinux ? SingleUidOf(qemu.Id) : null;
                try
                {
                    // No reply on success: the guest powers off.
                    agent.Execute("guest-shutdown", timeout: TimeSpan.FromSeconds(5), cancel: cancel);
                }
                catch (VmQuiesceException)
                {
                }

                return (true, fileSystems, null, ranAs);
            }
            catch (VmQuiesceException e)
            {
                return (false, Array.Empty<GuestFileSystem>(), $"The guest agent did not answer within {timeout.TotalSeconds:0} s: {e.Message}{ConsoleTail(console)}", null);
            }
        }

        /// <summary>
        /// e2fsck -fn and the needs_recovery flag, on the disk as the guest left it (the overlay over the restored disk).
        /// QEMU could write the overlay's header: it is read again, and converted only while it names just the disk.
        /// </summary>
        private static DiskCheck CheckFileSystem(BootDisk disk, string overlay, string folder, CancellationToken cancel)
        {
            if (WhyOverlayChanged(disk, overlay, cancel) is string changed)
            {
                return new DiskCheck(disk.Path, DiskCheckStatus.Damaged, $"the guest's overlay was changed to name another file ({changed}); it was not read");
            }

            string raw = Path.Combine(folder, Path.GetFileNameWithoutExtension(overlay) + ".raw");
            RunQemuImg(new[] { "convert", "-f", DiskImageFormat.Qcow2, "-O", DiskImageFormat.Raw, overlay, raw }, cancel);
            try
            {
                if (!HasExtSuperblock(raw))
                {
                    return new DiskCheck(disk.Path, DiskCheckStatus.NotChecked, "no ext2/3/4 file system at the start of the disk");
                }

                ToolResult header = ToolProcess.Run(ToolCommand.For("dumpe2fs", new[] { "-h", raw }), cancel);
                bool needsRecovery = header.StandardOutput.Split('\n').Any(line => line.StartsWith("Filesystem features:", StringComparison.Ordinal) && line.Contains("needs_recovery"));
                ToolResult fsck = ToolProcess.Run(ToolCommand.For("e2fsck", new[] { "-fn", raw }), cancel);
                if (fsck.ExitCode != 0 || needsRecovery)
                {
                    return new DiskCheck(disk.Path, DiskCheckStatus.Damaged, needsRecovery ? "the journal needs replaying (needs_recovery)" : $"e2fsck -fn exit code {fsck.ExitCode}: {GuestText(fsck.Message)}");
                }

                return new DiskCheck(disk.Path, DiskCheckStatus.Clean, "e2fsck -fn found no errors; journal clean");
            }
            finally
            {
                File.Delete(raw);
            }
        }

        /// <summary>Null while the overlay names exactly the restored disk, as its recorded format, and nothing else.</summary>
        private static string? WhyOverlayChanged(BootDisk disk, string overlay, CancellationToken cancel)
        {
            ImageReferences names = QemuImage.References(overlay, DiskImageFormat.Qcow2, cancel);
            return names.BackingFile == disk.Location && names.BackingFormat == disk.Format && names.DataFile == null && names.Extent == null
                ? null
                : (new ImageReferences { DataFile = names.DataFile, Extent = names.Extent }.Describe() ?? $"its backing file is '{names.BackingFile}' ({names.BackingFormat})");
        }

        private static bool HasExtSuperblock(string raw)
        {
            using var file = new FileStream(raw, FileMode.Open, FileAccess.Read);
            if (file.Length < 1082)
            {
                return false;
            }

            file.Position = 1080;
            return file.ReadByte() == 0x53 && file.ReadByte() == 0xEF;
        }

        private static void RunQemuImg(IEnumerable<string> arguments, CancellationToken cancel)
        {
            ToolResult result = QemuImage.Run(arguments, QemuImgTimeout, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("BootCheckFailed", FailureKind.InvalidOperation, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", result.CommandLine);
            }
        }

        /// <summary>The guest's last console lines (from at most the file's last 8 KiB: the guest decides how much it writes).</summary>
        private static string ConsoleTail(string console)
        {
            const int TailBytes = 8192;
            try
            {
                using var stream = new FileStream(console, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                stream.Position = Math.Max(0, stream.Length - TailBytes);
                byte[] tail = new byte[TailBytes];
                string text = Encoding.UTF8.GetString(tail, 0, stream.ReadFully(tail, TailBytes));
                string[] lines = text.Split('\n').Where(line => line.Trim().Length > 0).ToArray();
                return lines.Length == 0 ? string.Empty : " Last console lines: " + GuestText(string.Join(" | ", lines.Skip(Math.Max(0, lines.Length - 5)).Select(line => line.Trim())));
            }
            catch (IOException)
            {
                return string.Empty;
            }
        }

        /// <summary>Text the guest wrote, with control characters shown as \xNN: no escape sequence of the guest's reaches a terminal.</summary>
        private static string GuestText(string text)
        {
            var shown = new StringBuilder(text.Length);
            foreach (char c in text)
            {
                if (char.IsControl(c))
                {
                    shown.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                }
                else
                {
                    shown.Append(c);
                }
            }

            return shown.ToString();
        }

        /// <summary>QEMU option values separate with commas: a comma inside a path is doubled.</summary>
        internal static string QemuPath(string path) => Path.GetFullPath(path).Replace(",", ",,");
    }
}
