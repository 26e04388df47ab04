using System;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>A fake QMP monitor and a fake guest agent over real unix sockets in a temp folder, with one drive "disk0".</summary>
    internal sealed class FakeVm : IDisposable
    {
        public FakeVm()
        {
            Qemu = new FakeQemu(Folder.File("qmp.sock"));
            Agent = new FakeGuestAgent(Folder.File("qga.sock"));
            Qemu.AddDrive("disk0", Folder.File("base.qcow2"));
        }

        public TempFolder Folder { get; } = new TempFolder();

        public FakeQemu Qemu { get; }

        public FakeGuestAgent Agent { get; }

        public void Dispose()
        {
            // A run record the test left (a failed commit, a scripted dead run) goes with the VM it names.
            System.IO.File.Delete(VmQuiesce.Core.Sources.Qemu.QemuRunRecord.PathFor(Qemu.SocketPath));
            Qemu.Dispose();
            Agent.Dispose();
            Folder.Dispose();
        }
    }
}
