using System;
using System.IO;
using System.Threading;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// The systemd backend with systemd "running": a stand-in systemctl, given to the backend as its explicit
    /// program, records each call, so reload, restart and the rollback of the drop-in can be proved without a real systemd.
    /// </summary>
    public sealed class SystemdLogonBackendTests : IDisposable
    {
        private const uint OtherUser = 65534;
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-systemd-" + Guid.NewGuid().ToString("N"));
        private readonly string _units;
        private readonly string _log;
        private readonly string _failRestart;
        private readonly string _swapOnRestart;
        private readonly HostTools _tools;
        private readonly RecordingGate _gate = new RecordingGate();

        public SystemdLogonBackendTests()
        {
            _units = Directory.CreateDirectory(Path.Combine(_root, "units")).FullName;
            string bin = Directory.CreateDirectory(Path.Combine(_root, "bin")).FullName;
            _log = Path.Combine(_root, "systemctl.log");
            _failRestart = Path.Combine(_root, "fail-restart");
            _swapOnRestart = Path.Combine(_root, "swap-on-restart");
            File.WriteAllText(Path.Combine(_units, "vq.service"), "[Unit]\nDescription=test\n[Service]\nUser=nobody\nExecStart=/bin/true\n");
            string script = Path.Combine(bin, "systemctl");
            File.WriteAllText(script,
                "#!/bin/sh\n" +
                $"printf '%s|' \"$@\" >> '{_log}'; echo >> '{_log}'\n" +
                "case \"$1\" in\n" +
                "  is-active) echo active ;;\n" +
                "  is-enabled) echo enabled ;;\n" +
                // Once: the drop-in folder moved away and another user's link put in its place while the unit restarts (and fails to).
                $"  restart) if [ -e '{_swapOnRestart}' ]; then target=$(cat '{_swapOnRestart}'); rm '{_swapOnRestart}'; mv '{_units}/vq.service.d' '{_units}/vq.service.d.moved'; " +
                $"ln -s \"$target\" '{_units}/vq.service.d'; chown -h {OtherUser} '{_units}/vq.service.d'; echo 'Job for vq.service failed.' >&2; exit 1; fi\n" +
                $"    if [ -e '{_failRestart}' ] && grep -q '^User=root' '{_units}/vq.service.d/vmquiesce-logon.conf' 2>/dev/null; then echo 'Job for vq.service failed.' >&2; exit 1; fi ;;\n" +
                "esac\n" +
                "exit 0\n");
            if (OperatingSystem.IsLinux())
            {
                File.SetUnixFileMode(script, (UnixFileMode)0x1ED); // 0755
            }

            _tools = new HostTools(new[] { bin }, setting => null, checkOwners: false);
        }

        public void Dispose() => Directory.Delete(_root, recursive: true);

        private string DropIn => Path.Combine(_units, "vq.service.d", SystemdLogonBackend.DropInFileName);

        private ServiceLogonManager Manager => new ServiceLogonManager(
            new SystemdLogonBackend(_units, systemdRunning: true, systemdLoadsUnitDirectory: true, _tools),
            new PasswordVerifierStore(Path.Combine(_root, "state")));

        /// <summary>One line per call: each argument followed by '|', so where one argument ends is visible.</summary>
        private string[] Log => File.Exists(_log) ? File.ReadAllLines(_log) : Array.Empty<string>();

        [LinuxFact]
        public void ARunningUnitIsReloadedAndRestartedUnderTheNewUser()
        {
            ServiceLogonChange change = Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None);

            Assert.True(change.Restarted);
            Assert.Equal("nobody", change.PreviousAccount);
            Assert.Contains("User=root", File.ReadAllLines(DropIn));
            Assert.Equal(new[] { "is-enabled|vq.service|", "is-active|vq.service|", "daemon-reload|", "restart|vq.service|" }, Log);
        }

        [LinuxFact]
        public void AFailedRestartRemovesTheNewDropInAndStartsTheUnitAgain()
        {
            File.WriteAllText(_failRestart, string.Empty);
            VmQuiesceException failure = Assert.Throws<VmQuiesceException>(() =>
                Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None));

            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains("'nobody' was put back", failure.Message, StringComparison.Ordinal);
            Assert.Contains("Job for vq.service failed", failure.Message, StringComparison.Ordinal);
            Assert.False(File.Exists(DropIn));
            Assert.Equal(new[] { "is-enabled|vq.service|", "is-active|vq.service|", "daemon-reload|", "restart|vq.service|", "daemon-reload|", "restart|vq.service|" }, Log);
        }

        [LinuxFact]
        public void AFailedRestartPutsAnEarlierDropInBackAsItWas()
        {
            const string earlier = "# kept by hand\n[Service]\nUser=nobody\nGroup=nogroup\n";
            Directory.CreateDirectory(Path.GetDirectoryName(DropIn)!);
            File.WriteAllText(DropIn, earlier);
            File.WriteAllText(_failRestart, string.Empty);

            Assert.Throws<VmQuiesceException>(() => Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None));

            Assert.Equal(earlier, File.ReadAllText(DropIn));
        }

        [LinuxFact]
        public void WithoutSystemdNothingIsRunAndTheChangeWaitsForTheNextStart()
        {
            var backend = new SystemdLogonBackend(_units, systemdRunning: false, systemdLoadsUnitDirectory: false, _tools);
            new ServiceLogonManager(backend, new PasswordVerifierStore(Path.Combine(_root, "state"))).Set(
                new ServiceLogonRequest("root") { ServiceName = "vq.service", Restart = true }, _gate, CancellationToken.None);

            Assert.Empty(Log);
            Assert.Contains("User=root", File.ReadAllLines(DropIn));
            Assert.Contains(_gate.Warnings, w => w.Contains("/run/systemd/system does not exist", StringComparison.Ordinal));
        }

        [LinuxFact]
        public void ALaterDropInWinsAndAnEmptyUserResetsToRoot()
        {
            Directory.CreateDirectory(Path.Combine(_units, "vq.service.d"));
            File.WriteAllText(Path.Combine(_units, "vq.service.d", "10-a.conf"), "[Service]\nUser=daemon\n");
            File.WriteAllText(Path.Combine(_units, "vq.service.d", "20-b.conf"), "[Service]\nUser=\n");
            var backend = new SystemdLogonBackend(_units, systemdRunning: false, systemdLoadsUnitDirectory: false, _tools);
            Assert.Equal("root", backend.FindService("vq").Account);

            File.Delete(Path.Combine(_units, "vq.service.d", "20-b.conf"));
            Assert.Equal("daemon", backend.FindService("vq").Account);
        }

        [LinuxFact]
        public void AUnitOrDropInThatIsAFifoIsRefusedByNameAndAMaskedUnitReadsAsEmpty()
        {
            var backend = new SystemdLogonBackend(_units, systemdRunning: false, systemdLoadsUnitDirectory: false, _tools);
            string unit = Path.Combine(_units, "pipe.service");
            Fifo.Make(unit);
            IOException refused = Fifo.Within(unit, () => Assert.ThrowsAny<IOException>(() => backend.FindService("pipe")));
            Assert.Contains($"'{unit}' is a FIFO", refused.Message);

            string dropIn = Path.Combine(_units, "vq.service.d", "10-pipe.conf");
            Directory.CreateDirectory(Path.GetDirectoryName(dropIn)!);
            Fifo.Make(dropIn);
            refused = Fifo.Within(dropIn, () => Assert.ThrowsAny<IOException>(() => backend.FindService("vq")));
            Assert.Contains($"'{dropIn}' is a FIFO", refused.Message);
            File.Delete(dropIn);

            // The search by description passes over the FIFO, and over a masked unit (systemctl mask links it to /dev/null).
            File.CreateSymbolicLink(Path.Combine(_units, "masked.service"), "/dev/null");
            File.WriteAllText(Path.Combine(_units, "writer.service"), $"[Unit]\nDescription={ServiceLogonManager.DefaultDisplayName}\n[Service]\nUser=nobody\n");
            Assert.Equal("writer.service", Fifo.Within(unit, () => backend.FindService(null).Name));
        }

        [LinuxFact]
        public void AUnitNameWithAPathIsRefused()
        {
            var backend = new SystemdLogonBackend(_units, systemdRunning: false, systemdLoadsUnitDirectory: false, _tools);
            Assert.Equal("ServiceNameInvalid", Assert.Throws<VmQuiesceException>(() => backend.FindService("../etc/passwd")).ErrorId);
        }

        [LinuxFact]
        public void AnEscapedUnitNameReachesSystemctlAsOneArgumentUnchanged()
        {
            // systemd escapes '-' in path-derived names as \x2d; a unit name is one argument, whatever it holds.
            const string unit = @"vq\x2dwriter@a\\b.service";
            File.Copy(Path.Combine(_units, "vq.service"), Path.Combine(_units, unit));

            new ServiceLogonManager(new SystemdLogonBackend(_units, systemdRunning: true, systemdLoadsUnitDirectory: true, _tools), new PasswordVerifierStore(Path.Combine(_root, "state")))
                .Set(new ServiceLogonRequest("root") { ServiceName = unit }, _gate, CancellationToken.None);

            Assert.Equal($"restart|{unit}|", Log[^1]);
        }
    

        [LinuxFact]
        public void ALinkAtTheDropInsNameIsReplacedItselfAndTheFileItLeadsToIsUntouched()
        {
            const string precious = "[Service]\nUser=daemon\n";
            string victim = Path.Combine(_root, "victim.conf");
            File.WriteAllText(victim, precious);
            Directory.CreateDirectory(Path.GetDirectoryName(DropIn)!);
            File.CreateSymbolicLink(DropIn, victim);

            Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None);

            Assert.Equal(precious, File.ReadAllText(victim));
            Assert.True(RegularFile.StatNoFollow(DropIn)!.Value.IsRegularFile);
            Assert.Contains("User=root", File.ReadAllLines(DropIn));
        }

        [LinuxRootFact]
        public void ADropInFolderThatIsAnotherUsersLinkIsRefusedBeforeAnythingChanges()
        {
            string elsewhere = Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            string kept = Path.Combine(elsewhere, SystemdLogonBackend.DropInFileName);
            File.WriteAllText(kept, "# kept\n");
            string folder = Path.GetDirectoryName(DropIn)!;
            File.CreateSymbolicLink(folder, elsewhere);
            Assert.Equal(0, Libc.lchown(folder, OtherUser, OtherUser));

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() =>
                Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None));

            Assert.Equal("UnitFolderUnsafe", refused.ErrorId);
            Assert.Contains($"made by user id {OtherUser}", refused.Message, StringComparison.Ordinal);
            Assert.Equal("# kept\n", File.ReadAllText(kept));
            Assert.Equal(new[] { kept }, Directory.GetFileSystemEntries(elsewhere));
            Assert.Equal(new[] { "is-enabled|vq.service|", "is-active|vq.service|" }, Log);
        }

        [LinuxRootFact]
        public void ADropInFolderSwappedForAnotherUsersLinkBeforeTheRollbackIsNotDeletedThrough()
        {
            string elsewhere = Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            string kept = Path.Combine(elsewhere, SystemdLogonBackend.DropInFileName);
            File.WriteAllText(kept, "# kept\n");
            File.WriteAllText(_swapOnRestart, elsewhere);

            VmQuiesceException failure = Assert.Throws<VmQuiesceException>(() =>
                Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None));

            Assert.True(File.Exists(kept), "the rollback deleted the file at the drop-in's name through the link");
            Assert.Equal("# kept\n", File.ReadAllText(kept));
            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains("could not be put back", failure.Message, StringComparison.Ordinal);
            Assert.Contains($"made by user id {OtherUser}", failure.Message, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void AUnitFolderWhoseParentOthersMayWriteIsRefusedBeforeAnythingChanges()
        {
            File.SetUnixFileMode(_root, (UnixFileMode)0x1FF); // 0777, not sticky

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() =>
                Manager.Set(new ServiceLogonRequest("root") { ServiceName = "vq" }, _gate, CancellationToken.None));

            Assert.Equal("UnitFolderUnsafe", refused.ErrorId);
            Assert.Contains($"'{_root}' has mode 0777", refused.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.GetDirectoryName(DropIn)));
            Assert.Equal(new[] { "is-enabled|vq.service|", "is-active|vq.service|" }, Log);
        }
    }
}
