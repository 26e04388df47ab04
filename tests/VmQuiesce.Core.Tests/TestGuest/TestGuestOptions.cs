using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>How a <see cref="TestGuestVm"/> is booted; the defaults suit most integration tests.</summary>
    public sealed class TestGuestOptions
    {
        /// <summary>Data disks vda, vdb, ...; the guest mounts them on /mnt/data, /mnt/data1, ...</summary>
        public int DiskCount { get; set; } = 1;

        public long DiskSizeBytes { get; set; } = 64L * 1024 * 1024;

        public GuestDiskFormat DiskFormat { get; set; } = GuestDiskFormat.Qcow2;

        /// <summary>128 MiB as measured; 96 also boots (with a smaller TCG cache), 64 does not.</summary>
        public int MemoryMiB { get; set; } = 128;

        /// <summary>Generous: the machine is shared and TCG boots take ~3 s alone, ~6 s with four at once.</summary>
        public TimeSpan ReadyTimeout { get; set; } = TimeSpan.FromSeconds(60);

        /// <summary>
        /// When qemu-ga dies, the guest's init starts it again after a second (console line
        /// <see cref="TestGuestVm.AgentRestartedMarker"/>), as a service manager would; false leaves it dead.
        /// </summary>
        public bool AgentRespawns { get; set; } = true;

        /// <summary>Appended to QEMU's command line as is.</summary>
        public IList<string> ExtraQemuArguments { get; } = new List<string>();
    }
}
