using System;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// Stop-VmInstantRestore of an interrupted restore (found in its record) ends its VM even when QEMU's monitor
    /// does not answer, and never kills a process that merely reuses the recorded pid. The "QEMU" here is a sleep
    /// process; the monitor a socket that is listened on and never answered.
    /// </summary>
    public sealed class InstantRestoreStopTests : IDisposable
    {
        private readonly TempFolder _folder = new TempFolder();
        private readonly Process _vm = Process.Start("/bin/sleep", "600");
        private InstantRestoreRecord? _record;

        public void Dispose()
        {
            if (!_vm.HasExited)
            {
                _vm.Kill();
                _vm.WaitForExit();
            }

            _vm.Dispose();
            _record?.Delete();
            _folder.Dispose();
        }

        /// <summary>
        /// The record of an interrupted restore into a fresh folder, its disk and overlay there, whose QEMU is
        /// <see cref="_vm"/> as started at <paramref name="startTicks"/>, and whose server is gone.
        /// </summary>
        private InstantRestore Interrupted(string startTicks, string restorePointId = "point-1", string repository = "/repo")
        {
            string destination = _folder.File("vm");
            Directory.CreateDirectory(destination);
            string disk = Path.Combine(destination, "disk0.qcow2");
            File.WriteAllText(disk, "incomplete");
            File.WriteAllText(disk + ".overlay", "overlay");
            _record = new InstantRestoreRecord(Guid.NewGuid().ToString("N").Substring(0, 8), "web01", restorePointId, repository, destination, new[] { disk })
            {
                QemuProcessId = _vm.Id,
                QemuStartTicks = startTicks,
                ServerProcessId = _vm.Id,
                ServerStartTicks = "1", // a process long gone
            };
            _record.Save();
            InstantRestore restore = InstantRestore.Find(_record.Id)!;
            Assert.Equal(InstantRestoreState.Interrupted, restore.StateValue);
            return restore;
        }

        [LinuxRootFact]
        public void A_VM_whose_monitor_does_not_answer_is_killed_and_its_disks_deleted()
        {
            InstantRestore restore = Interrupted(ProcessIdentity.StartTicksOf(_vm.Id)!);
            using var monitor = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            monitor.Bind(new UnixDomainSocketEndPoint(restore.QmpSocket));
            monitor.Listen(1); // connections wait here, never greeted

            restore.Stop();

            Assert.True(_vm.WaitForExit(10_000), $"process {_vm.Id} still runs after Stop");
            Assert.Equal(InstantRestoreState.Stopped, restore.StateValue);
            Assert.False(File.Exists(restore.Disks[0]));
            Assert.False(File.Exists(restore.Overlays[0]));
            Assert.Null(InstantRestore.Find(restore.Id));
        }

        /// <summary>
        /// A resume that fails once the point is served again, before the copy started (here the VM's monitor is not
        /// there; as on Ctrl+C) leaves the restore interrupted, as it was: not recorded as served by this session,
        /// which could then neither resume nor stop it.
        /// </summary>
        [LinuxRootFact]
        public void A_resume_that_fails_before_the_copy_started_leaves_the_restore_interrupted_and_stoppable()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("web01", fixture.WriteFile("disk0.raw", RepositoryFixture.Random(RepositoryFixture.ChunkSize, 1)));
            InstantRestore restore = Interrupted(ProcessIdentity.StartTicksOf(_vm.Id)!, point.Id, fixture.RepositoryPath);

            Exception? failed = Record.Exception(() => restore.Resume(() => fixture.Repository, CancellationToken.None));

            Assert.IsAssignableFrom<VmQuiesceException>(failed);
            Assert.DoesNotContain(RestorePointServer.Running, served => served.RestorePointId == point.Id);
            InstantRestore found = InstantRestore.Find(restore.Id)!;
            Assert.Equal(InstantRestoreState.Interrupted, found.StateValue);
            found.Stop();
            Assert.True(_vm.WaitForExit(10_000), $"process {_vm.Id} still runs after Stop");
            Assert.Null(InstantRestore.Find(restore.Id));
        }

        [LinuxRootFact]
        public void A_process_that_reused_the_recorded_pid_is_never_killed()
        {
            InstantRestore restore = Interrupted("1"); // the recorded QEMU started at tick 1: this pid is now another process

            restore.Stop();

            Assert.False(_vm.HasExited);
            Assert.Equal(InstantRestoreState.Stopped, restore.StateValue);
            Assert.False(File.Exists(restore.Disks[0]));
            Assert.Null(InstantRestore.Find(restore.Id));
        }
    }
}
