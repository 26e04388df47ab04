using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
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

        public int MemoryMiB { get; set; } = 512;

        /// <summary>A kernel to boot directly (QEMU -kernel), as the VM's own command line does.</summary>
        public string? Kernel { get; set; }

        public string? Initrd { get; set; }

        /// <summary>The kernel command line (QEMU -append).</summary>
        public string? Append { get; set; }

        /// <summary>How long the guest agent may take to answer after QEMU starts.</summary>
        public TimeSpan BootTimeout { get; set; } = TimeSpan.FromMinutes(5);
    }

    /// <summary>
    /// Boots restored disks the way Test-VmBackup -Boot and Restore-VmSnapshot -Verify do: a throwaway
    /// qcow2 overlay over each disk (the disks themselves are never written), QEMU with a guest-agent
    /// channel, wait for guest-ping, read guest-get-fsinfo, shut the guest down, then e2fsck the
    /// overlays' content and look for a journal that needs replaying.
    /// </summary>
    public static class BootCheck
    {
        private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(90);
        private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(30);

        /// <summary>
        /// Test-VmBackup -Boot: restores the point into a temp folder (verified, sparse), boots it there and
        /// deletes it again. Needs room for the point's data in the temp folder.
        /// </summary>
        public static BootCheckResult RunRestorePoint(Repository.BackupRepository repository, Repository.RestorePoint point, BootCheckOptions options, CancellationToken cancel)
        {
            string folder = Path.Combine(Path.GetTempPath(), "vmq-boot-restore-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            try
            {
                var engine = new RestoreEngine(repository);
                RestoreResult restored = engine.Run(engine.Plan(new RestoreRequest(point) { Destination = folder }, cancel), null, cancel);
                return Run(restored.Files.Select(file => file.Path).ToList(), options, cancel);
            }
            finally
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
            }
        }

        public static BootCheckResult Run(IReadOnlyList<string> disks, BootCheckOptions options, CancellationToken cancel)
        {
            // Short: unix socket paths are limited to 107 bytes.
            string folder = Path.Combine(Path.GetTempPath(), "vmq-boot-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(folder);
            Process? qemu = null;
            try
            {
                var overlays = new List<string>();
                for (int i = 0; i < disks.Count; i++)
                {
                    string format = QemuImage.Info(disks[i], forceShare: false, cancel).Format;
                    string overlay = Path.Combine(folder, $"disk{i}.qcow2");
                    RunTool(QemuImage.Tool, new[] { "create", "-q", "-f", "qcow2", "-b", Path.GetFullPath(disks[i]), "-F", format, overlay }, cancel);
                    overlays.Add(overlay);
                }

                string agentSocket = Path.Combine(folder, "qga.sock");
                string console = Path.Combine(folder, "console.log");
                var clock = Stopwatch.StartNew();
                qemu = StartQemu(options, overlays, agentSocket, console);
                var (answered, fileSystems, failure) = WaitForAgent(qemu, agentSocket, console, options.BootTimeout, cancel);
                TimeSpan bootTime = clock.Elapsed;
                if (!qemu.HasExited && !qemu.WaitForExit((int)ShutdownTimeout.TotalMilliseconds))
                {
                    failure ??= $"The guest did not power off within {ShutdownTimeout.TotalSeconds:0} s of guest-shutdown.";
                    qemu.Kill();
                }

                qemu.WaitForExit();
                var checks = answered ? overlays.Select((overlay, i) => CheckFileSystem(disks[i], overlay, folder, cancel)).ToList() : new List<DiskCheck>();
                return new BootCheckResult(answered, bootTime, fileSystems, checks, failure);
            }
            finally
            {
                if (qemu != null)
                {
                    if (!qemu.HasExited)
                    {
                        qemu.Kill();
                        qemu.WaitForExit();
                    }

                    qemu.Dispose();
                }

                try
                {
                    Directory.Delete(folder, recursive: true);
                }
                catch (IOException)
                {
                    // A leftover temp folder is harmless.
                }
            }
        }

        private static Process StartQemu(BootCheckOptions options, IReadOnlyList<string> overlays, string agentSocket, string console)
        {
            var arguments = new List<string>
            {
                "-accel", options.Accelerator, "-m", options.MemoryMiB.ToString(CultureInfo.InvariantCulture),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", "file:" + QemuPath(console),
            };
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
            var start = new ProcessStartInfo(options.QemuExecutable, string.Join(" ", arguments.Select(ExternalTool.Quote)))
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                CreateNoWindow = true,
            };
            try
            {
                Process process = Process.Start(start) ?? throw new System.ComponentModel.Win32Exception("QEMU did not start");
                process.StandardInput.Close();
                process.OutputDataReceived += (_, _) => { };
                process.ErrorDataReceived += (_, _) => { };
                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
                return process;
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new VmQuiesceException("ToolNotFound", FailureKind.ResourceUnavailable, $"QEMU ('{options.QemuExecutable}') cannot be started for the boot check: {e.Message}.", options.QemuExecutable, e)
                {
                    Remedy = "Install QEMU (Debian: apt-get install qemu-system-x86) or set QemuExecutable in the boot options.",
                };
            }
        }

        private static (bool Answered, IReadOnlyList<GuestFileSystem> FileSystems, string? Failure) WaitForAgent(Process qemu, string agentSocket, string console, TimeSpan timeout, CancellationToken cancel)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!File.Exists(agentSocket))
            {
                cancel.ThrowIfCancellationRequested();
                if (qemu.WaitForExit(100))
                {
                    return (false, Array.Empty<GuestFileSystem>(), $"QEMU exited with code {qemu.ExitCode} before the guest booted.{ConsoleTail(console)}");
                }

                if (DateTime.UtcNow > deadline)
                {
                    return (false, Array.Empty<GuestFileSystem>(), "QEMU did not open the guest agent channel.");
                }
            }

            try
            {
                using GuestAgentClient agent = GuestAgentClient.Connect(agentSocket, TimeSpan.FromSeconds(30), cancel);
                TimeSpan left = deadline - DateTime.UtcNow;
                agent.Sync(left > TimeSpan.Zero ? left : TimeSpan.FromSeconds(1), cancel);
                agent.Ping(cancel: cancel);
                IReadOnlyList<GuestFileSystem> fileSystems = agent.GetFileSystems(cancel);
                try
                {
                    // No reply on success: the guest powers off.
                    agent.Execute("guest-shutdown", timeout: TimeSpan.FromSeconds(5), cancel: cancel);
                }
                catch (VmQuiesceException)
                {
                }

                return (true, fileSystems, null);
            }
            catch (VmQuiesceException e)
            {
                return (false, Array.Empty<GuestFileSystem>(), $"The guest agent did not answer within {timeout.TotalSeconds:0} s: {e.Message}{ConsoleTail(console)}");
            }
        }

        /// <summary>e2fsck -fn and the needs_recovery flag, on the disk as the guest left it (the overlay over the restored disk).</summary>
        private static DiskCheck CheckFileSystem(string disk, string overlay, string folder, CancellationToken cancel)
        {
            string raw = Path.Combine(folder, Path.GetFileNameWithoutExtension(overlay) + ".raw");
            RunTool(QemuImage.Tool, new[] { "convert", "-O", "raw", overlay, raw }, cancel);
            try
            {
                if (!HasExtSuperblock(raw))
                {
                    return new DiskCheck(disk, DiskCheckStatus.NotChecked, "no ext2/3/4 file system at the start of the disk");
                }

                ToolResult header = ExternalTool.Run("dumpe2fs", new[] { "-h", raw }, ToolTimeout, cancel);
                bool needsRecovery = header.StandardOutput.Split('\n').Any(line => line.StartsWith("Filesystem features:", StringComparison.Ordinal) && line.Contains("needs_recovery"));
                ToolResult fsck = ExternalTool.Run("e2fsck", new[] { "-fn", raw }, ToolTimeout, cancel);
                if (fsck.ExitCode != 0 || needsRecovery)
                {
                    return new DiskCheck(disk, DiskCheckStatus.Damaged, needsRecovery ? "the journal needs replaying (needs_recovery)" : $"e2fsck -fn exit code {fsck.ExitCode}: {fsck.Message}");
                }

                return new DiskCheck(disk, DiskCheckStatus.Clean, "e2fsck -fn found no errors; journal clean");
            }
            finally
            {
                File.Delete(raw);
            }
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

        private static void RunTool(string tool, IEnumerable<string> arguments, CancellationToken cancel)
        {
            ToolResult result = ExternalTool.Run(tool, arguments, ToolTimeout, cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("BootCheckFailed", FailureKind.InvalidOperation, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", tool);
            }
        }

        private static string ConsoleTail(string console)
        {
            try
            {
                using var stream = new FileStream(console, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                string text = new StreamReader(stream).ReadToEnd();
                string[] lines = text.Split('\n').Where(line => line.Trim().Length > 0).ToArray();
                return lines.Length == 0 ? string.Empty : " Last console lines: " + string.Join(" | ", lines.Skip(Math.Max(0, lines.Length - 5)).Select(line => line.Trim()));
            }
            catch (IOException)
            {
                return string.Empty;
            }
        }

        /// <summary>QEMU option values separate with commas: a comma inside a path is doubled.</summary>
        private static string QemuPath(string path) => Path.GetFullPath(path).Replace(",", ",,");
    }
}
