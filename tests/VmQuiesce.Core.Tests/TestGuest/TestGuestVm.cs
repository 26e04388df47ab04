using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>
    /// One real test guest under QEMU (TCG): a temporary folder with its data disks, a QMP socket, a
    /// guest-agent socket, the serial console log and QEMU's own output. Dispose kills QEMU if it still
    /// runs and deletes the folder.
    /// </summary>
    public sealed class TestGuestVm : IDisposable
    {
        /// <summary>The line the guest's init prints on the serial console once qemu-ga holds its port open.</summary>
        public const string ReadyMarker = "VMQUIESCE-GUEST-READY";

        /// <summary>The line the guest's init prints before powering off when it cannot get ready.</summary>
        public const string FailedMarker = "VMQUIESCE-GUEST-FAILED";

        /// <summary>Printed when qemu-ga ended, with its exit status.</summary>
        public const string AgentExitedMarker = "VMQUIESCE-GUEST-AGENT-EXITED";

        /// <summary>Printed once a respawned qemu-ga holds its port open again.</summary>
        public const string AgentRestartedMarker = "VMQUIESCE-GUEST-AGENT-RESTARTED";

        // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
        private const int MaxSocketPathBytes = 107;
        private static readonly TimeSpan s_pollInterval = TimeSpan.FromMilliseconds(50);

        private readonly TestGuestOptions _options;
        private readonly Stopwatch _sinceStart = new();
        private bool _disposed;

        private TestGuestVm(TestGuestOptions options)
        {
            if (options.DiskCount < 0 || options.DiskCount > 16)
            {
                throw new ArgumentOutOfRangeException(nameof(options), options.DiskCount, "DiskCount must be 0 to 16.");
            }
            if (options.MemoryMiB < 96)
            {
                throw new ArgumentOutOfRangeException(nameof(options), options.MemoryMiB, "MemoryMiB must be at least 96: the guest kernel does not boot in 64 MiB.");
            }
            _options = options;
            WorkFolder = Path.Combine(Path.GetTempPath(), "vmq-guest-" + Guid.NewGuid().ToString("N", CultureInfo.InvariantCulture).Substring(0, 12));
            QmpSocketPath = Path.Combine(WorkFolder, "qmp.sock");
            AgentSocketPath = Path.Combine(WorkFolder, "qga.sock");
            ConsoleLog = Path.Combine(WorkFolder, "console.log");
            QemuLog = Path.Combine(WorkFolder, "qemu.log");
            string extension = options.DiskFormat == GuestDiskFormat.Qcow2 ? "qcow2" : "raw";
            DiskPaths = Enumerable.Range(0, options.DiskCount).Select(i => Path.Combine(WorkFolder, $"disk{i}.{extension}")).ToArray();
        }

        public string WorkFolder { get; }

        public string QmpSocketPath { get; }

        public string AgentSocketPath { get; }

        /// <summary>The guest's serial console (kernel and init output, the readiness line).</summary>
        public string ConsoleLog { get; }

        /// <summary>QEMU's own stdout and stderr.</summary>
        public string QemuLog { get; }

        /// <summary>Data disk images in guest order: vda (/mnt/data), vdb (/mnt/data1), ...</summary>
        public IReadOnlyList<string> DiskPaths { get; }

        /// <summary>QEMU's drive ids, one per disk (disk0, disk1, ...); their node names add "fmt".</summary>
        public IReadOnlyList<string> DriveIds => Enumerable.Range(0, DiskPaths.Count).Select(i => $"disk{i}").ToArray();

        public Process Process { get; private set; } = null!;

        /// <summary>The readiness line, once <see cref="WaitUntilReady()"/> returned.</summary>
        public string? ReadyLine { get; private set; }

        /// <summary>From QEMU's start to the readiness line being seen.</summary>
        public TimeSpan? BootToReady { get; private set; }

        /// <summary>Creates the disks and starts QEMU; returns at once (see <see cref="WaitUntilReady()"/>).</summary>
        public static TestGuestVm Start(TestGuestOptions? options = null)
        {
            TestGuestEnvironment.ThrowIfUnavailable();
            var vm = new TestGuestVm(options ?? new TestGuestOptions());
            try
            {
                vm.Launch(createDisks: true);
                return vm;
            }
            catch
            {
                vm.Dispose();
                throw;
            }
        }

        /// <summary>Starts a guest and waits until its agent is up.</summary>
        public static TestGuestVm Boot(TestGuestOptions? options = null)
        {
            TestGuestVm vm = Start(options);
            try
            {
                vm.WaitUntilReady();
                return vm;
            }
            catch
            {
                vm.Dispose();
                throw;
            }
        }

        public void WaitUntilReady() => WaitUntilReady(_options.ReadyTimeout);

        /// <summary>
        /// Waits for the readiness line on the serial console; fails at once, with the console and QEMU
        /// output, when QEMU exits or the guest reports a failure.
        /// </summary>
        public void WaitUntilReady(TimeSpan timeout)
        {
            ReadyLine = WaitForConsoleLine(ReadyMarker, 1, timeout);
            BootToReady ??= _sinceStart.Elapsed;
        }

        /// <summary>
        /// Waits until the console has <paramref name="count"/> lines starting with <paramref name="marker"/>
        /// and returns the last of them; fails at once when QEMU exits or the guest reports a failure.
        /// </summary>
        public string WaitForConsoleLine(string marker, int count, TimeSpan timeout)
        {
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                // Complete lines only: QEMU may have written part of the last one (a marker's line cut short).
                string console = ReadConsole();
                string[] lines = console.Substring(0, console.LastIndexOf('\n') + 1).Split('\n').Select(line => line.TrimEnd('\r')).ToArray();
                string[] matches = lines.Where(line => line.StartsWith(marker, StringComparison.Ordinal)).ToArray();
                if (matches.Length >= count)
                {
                    return matches[count - 1];
                }
                if (lines.FirstOrDefault(line => line.StartsWith(FailedMarker, StringComparison.Ordinal)) is string failure)
                {
                    throw new InvalidOperationException($"The test guest in {WorkFolder} failed: {failure}{Diagnostics()}");
                }
                if (Process.HasExited)
                {
                    throw new InvalidOperationException($"QEMU exited with code {Process.ExitCode} before the test guest in {WorkFolder} printed {marker}.{Diagnostics()}");
                }
                if (deadline.Elapsed > timeout)
                {
                    throw new TimeoutException($"The test guest in {WorkFolder} did not print {marker} within {timeout.TotalSeconds:0} s.{Diagnostics()}");
                }
                // Doubles as the poll interval: returns early when QEMU exits.
                Process.WaitForExit(s_pollInterval);
            }
        }

        /// <summary>Waits for QEMU to end by itself (e.g. after guest-shutdown); true when it did.</summary>
        public bool WaitForExit(TimeSpan timeout)
        {
            if (!Process.WaitForExit(timeout))
            {
                return false;
            }
            Process.WaitForExit();
            return true;
        }

        /// <summary>Ends QEMU at once, like pulling the plug.</summary>
        public void Kill()
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
            }
            Process.WaitForExit();
        }

        /// <summary>Ends QEMU at once (kill -9) and starts it again on the same disks; returns at once (see <see cref="WaitUntilReady()"/>).</summary>
        public void KillAndRestart()
        {
            Kill();
            Relaunch();
        }

        /// <summary>Ends QEMU cleanly (QMP quit: images closed, persistent bitmaps stored) and starts it again on the same disks.</summary>
        public void QuitAndRestart()
        {
            using (var qmp = VmQuiesce.Core.Sources.Qemu.QmpClient.Connect(QmpSocketPath))
            {
                qmp.Execute("quit");
            }

            if (!WaitForExit(TimeSpan.FromSeconds(60)))
            {
                throw new TimeoutException($"QEMU of the test guest in {WorkFolder} did not exit within 60 s of 'quit'.{Diagnostics()}");
            }

            Relaunch();
        }

        private void Relaunch()
        {
            Process.Dispose();
            File.Delete(ConsoleLog);
            _sinceStart.Restart();
            Launch(createDisks: false);
        }

        public string ReadConsole()
        {
            if (!File.Exists(ConsoleLog))
            {
                return string.Empty;
            }
            // QEMU keeps the file open for writing.
            using var stream = new FileStream(ConsoleLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return reader.ReadToEnd();
        }

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            if (Process is not null)
            {
                Kill();
                Process.Dispose();
            }
            if (Directory.Exists(WorkFolder))
            {
                Directory.Delete(WorkFolder, recursive: true);
            }

            // A run record a failed test left names this VM only.
            Qemu.FakeVm.RemoveRunRecord(QmpSocketPath);
        }

        private void Launch(bool createDisks)
        {
            if (Encoding.UTF8.GetByteCount(QmpSocketPath) > MaxSocketPathBytes)
            {
                throw new InvalidOperationException($"The socket path {QmpSocketPath} is too long for a unix socket; set TMPDIR to a shorter folder.");
            }
            Directory.CreateDirectory(WorkFolder);
            for (int i = 0; i < DiskPaths.Count && createDisks; i++)
            {
                GuestDiskImage.Create(DiskPaths[i], _options.DiskSizeBytes, _options.DiskFormat, $"data{i}");
            }

            // QEMU is exec'd by a shell only to send its stdout and stderr straight into a file, which
            // outlives this process; the Process object is QEMU itself after the exec.
            var startInfo = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = WorkFolder };
            startInfo.ArgumentList.Add("-c");
            startInfo.ArgumentList.Add("exec \"$0\" \"$@\" </dev/null >>\"$VMQUIESCE_QEMU_LOG\" 2>&1");
            startInfo.ArgumentList.Add(TestGuestEnvironment.QemuExecutable);
            foreach (string argument in BuildQemuArguments())
            {
                startInfo.ArgumentList.Add(argument);
            }
            startInfo.Environment["VMQUIESCE_QEMU_LOG"] = QemuLog;
            File.WriteAllText(QemuLog, "qemu-system-x86_64 " + string.Join(" ", startInfo.ArgumentList.Skip(3)) + Environment.NewLine);
            _sinceStart.Start();
            Process = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not start QEMU.");
        }

        private IEnumerable<string> BuildQemuArguments()
        {
            string format = _options.DiskFormat == GuestDiskFormat.Qcow2 ? "qcow2" : "raw";
            // Below 128 MiB the default TCG translation cache does not fit next to the guest. no_timer_check: on a
            // loaded host the kernel's IO-APIC timer probe can miss its ticks under TCG and panic the boot.
            var arguments = new List<string>
            {
                "-accel", _options.MemoryMiB < 128 ? "tcg,tb-size=32" : "tcg",
                "-m", _options.MemoryMiB.ToString(CultureInfo.InvariantCulture),
                "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", "file:" + QemuPath(ConsoleLog),
                "-kernel", QemuPath(TestGuestEnvironment.KernelPath),
                "-initrd", QemuPath(TestGuestEnvironment.InitramfsPath),
                "-append", $"console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks={DiskPaths.Count} vmquiesce.agent={(_options.AgentRespawns ? "respawn" : "once")}",
            };
            for (int i = 0; i < DiskPaths.Count; i++)
            {
                arguments.AddRange(new[]
                {
                    "-drive", $"if=none,id={DriveIds[i]},node-name={DriveIds[i]}fmt,file={QemuPath(DiskPaths[i])},format={format}",
                    "-device", $"virtio-blk-pci,drive={DriveIds[i]}",
                });
            }
            arguments.AddRange(new[]
            {
                "-device", "virtio-serial-pci",
                "-chardev", $"socket,id=qga0,path={QemuPath(AgentSocketPath)},server=on,wait=off",
                "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0,id=qgaport",
                "-qmp", $"unix:{QemuPath(QmpSocketPath)},server=on,wait=off",
            });
            arguments.AddRange(_options.ExtraQemuArguments);
            return arguments;
        }

        // QEMU's option syntax uses commas as separators; a literal comma is written twice.
        private static string QemuPath(string path) => path.Replace(",", ",,", StringComparison.Ordinal);

        private string Diagnostics()
        {
            string qemu = File.Exists(QemuLog) ? File.ReadAllText(QemuLog) : string.Empty;
            return $"{Environment.NewLine}--- console ({ConsoleLog}) ---{Environment.NewLine}{Tail(ReadConsole())}" +
                   $"{Environment.NewLine}--- QEMU ({QemuLog}) ---{Environment.NewLine}{Tail(qemu)}";
        }

        private static string Tail(string text) => text.Length <= 4000 ? text : "..." + text.Substring(text.Length - 4000);
    }
}
