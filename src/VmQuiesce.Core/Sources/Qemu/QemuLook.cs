using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// What an open learns from the monitor before it changes anything (<see cref="QemuSource.Look"/>): the disks, checked
    /// and free of an earlier backup's leftovers, their image files opened, and the machine. <see cref="QemuAhead"/> takes
    /// it while the repository opens; the open takes it from there, or looks itself.
    /// </summary>
    internal sealed class QemuLook : IDisposable
    {
        private QemuDiskFiles? _diskFiles;

        public QemuLook(IReadOnlyList<QemuDisk> disks, QemuDiskFiles diskFiles, Repository.VmMachine? machine, Guid? uuid, IReadOnlyList<string> verbose)
        {
            Disks = disks;
            _diskFiles = diskFiles;
            Machine = machine;
            Uuid = uuid;
            Verbose = verbose;
        }

        public IReadOnlyList<QemuDisk> Disks { get; }

        public Repository.VmMachine? Machine { get; }

        public Guid? Uuid { get; }

        /// <summary>The steps it would have written for -Verbose, for the open to write to its own host.</summary>
        public IReadOnlyList<string> Verbose { get; }

        /// <summary>The opened image files, once: whoever takes them disposes them.</summary>
        public QemuDiskFiles TakeDiskFiles()
        {
            QemuDiskFiles files = _diskFiles ?? throw new InvalidOperationException("The disk files of this look were taken already.");
            _diskFiles = null;
            return files;
        }

        public void Dispose() => _diskFiles?.Dispose();
    }
}
