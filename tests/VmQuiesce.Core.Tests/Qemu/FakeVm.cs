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
            RemoveRunRecord(Qemu.SocketPath);
            Qemu.Dispose();
            Agent.Dispose();
            Folder.Dispose();
        }

        /// <summary>Deletes the run record of the VM behind <paramref name="qmpSocket"/>, if there is one; a fresh machine has not even its folder.</summary>
        internal static void RemoveRunRecord(string qmpSocket)
        {
            string record = VmQuiesce.Core.Sources.Qemu.QemuRunRecord.PathFor(qmpSocket);
            if (System.IO.File.Exists(record))
            {
                System.IO.File.Delete(record);
            }
        }
    }
}
