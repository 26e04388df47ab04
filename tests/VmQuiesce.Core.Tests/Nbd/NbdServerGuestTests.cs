using System;
using System.Security.Cryptography;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>The server as QEMU uses it to back a VM's disk: the test guest boots with an export attached as a read-only virtio disk.</summary>
    public sealed class NbdServerGuestTests
    {
        [GuestFact]
        public void AGuestReadsTheExportAsADiskByteForByteAndADamagedRangeAsAnIoError()
        {
            MemoryExportBackend image = NbdServerToolTests.LayeredImage();
            image.DamagedBlocks.Add(3001); // a data block (3000 is a zero block, never read)
            using var served = new ServedExport(image);
            var options = new TestGuestOptions();
            options.ExtraQemuArguments.Add("-blockdev");
            options.ExtraQemuArguments.Add($"driver=nbd,node-name=nbd0,server.type=unix,server.path={served.Endpoint.SocketPath},export={served.Name},read-only=on");
            options.ExtraQemuArguments.Add("-device");
            options.ExtraQemuArguments.Add("virtio-blk-pci,drive=nbd0,id=nbddisk");
            using TestGuestVm vm = TestGuestVm.Boot(options);
            using GuestAgentClient agent = GuestAgentClient.Connect(vm.AgentSocketPath);

            // The data disk is vda; the export is vdb. Everything before the damaged block reads exactly as served.
            GuestExecResult before = agent.Exec("/bin/sh", new[] { "-c", "dd if=/dev/vdb bs=4096 count=3000 iflag=direct 2>/dev/null | sha256sum" }, TimeSpan.FromSeconds(120));
            Assert.True(before.Succeeded, before.StandardError);
            string expected = Convert.ToHexString(SHA256.HashData(image.Data.AsSpan(0, 3000 * 4096))).ToLowerInvariant();
            Assert.StartsWith(expected, before.StandardOutput, StringComparison.Ordinal);

            GuestExecResult damaged = agent.Exec("/bin/sh", new[] { "-c", "dd if=/dev/vdb of=/dev/null bs=4096 skip=2990 count=20 iflag=direct" }, TimeSpan.FromSeconds(120));
            Assert.False(damaged.Succeeded);
            Assert.Contains("Input/output error", damaged.StandardError, StringComparison.Ordinal);
            Assert.Contains(served.Errors, e => e.Message.Contains("block 3001", StringComparison.Ordinal));
        }
    }
}
