using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// What the QEMU views share: the disk images held open for the copy, the run record, and a release that runs
    /// once, or once more from Dispose when it was stopped (cancelled) before it finished, so a cancelled release
    /// never leaves overlays or an export behind without a second try.
    /// </summary>
    internal abstract class QemuBackupView : IConsistentView, IIdentifiedView
    {
        private readonly IOperationHost _host;
        private readonly QemuDiskFiles _diskFiles;
        private readonly QemuRunRecord? _run;
        private readonly Task<QuiesceRecord> _quiesce;
        private int _completed;

        /// <param name="diskFiles">The checked images, read through their descriptors; the view closes them.</param>
        /// <param name="quiesce">The record of the freeze, which may still wait for the post-thaw hooks and for the agent to name what it froze (<see cref="GuestAgentFreezer.NameFrozen"/>).</param>
        protected QemuBackupView(IOperationHost host, QemuDiskFiles diskFiles, QemuRunRecord? run, Consistency reached, Task<QuiesceRecord> quiesce, IReadOnlyList<ViewFile> files)
        {
            _host = host;
            _diskFiles = diskFiles;
            _run = run;
            _quiesce = quiesce;
            Reached = reached;
            Files = files;
        }

        public Consistency Reached { get; }

        public IReadOnlyList<ViewFile> Files { get; }

        public virtual CapturedSnapshot? Snapshot => null;

        public QuiesceRecord Quiesce => _quiesce.GetAwaiter().GetResult();

        /// <summary>What query-uuid answered when the backup began.</summary>
        public Guid? VmUuid { get; init; }

        /// <summary>What QMP said of the machine when the backup began (<see cref="QemuMachine"/>).</summary>
        public Repository.VmMachine? Machine { get; init; }

        public void Complete(bool success, CancellationToken cancel)
        {
            if (Interlocked.Exchange(ref _completed, 1) != 0)
            {
                return;
            }

            // The copy is over: the images need not stay open.
            _diskFiles.Dispose();
            try
            {
                Release(success, cancel);
                // Nothing of this run is left on the VM.
                _run?.Delete();
            }
            catch (VmQuiesceException)
            {
                // What stays is in the record, which tells the next command what to repair.
                _run?.EndRun();
                throw;
            }
            catch (OperationCanceledException)
            {
                // Stopped before it was released: Dispose tries again without the token.
                Interlocked.Exchange(ref _completed, 0);
                throw;
            }
        }

        /// <summary>Takes down what the backup made on the VM; <paramref name="success"/> says whether the copy finished.</summary>
        protected abstract void Release(bool success, CancellationToken cancel);

        public void Dispose()
        {
            try
            {
                Complete(false, CancellationToken.None);
            }
            catch (VmQuiesceException e)
            {
                _host.WriteWarning(e.Message + " " + e.Remedy);
            }
            finally
            {
                // The agent's connection, which the post-thaw hooks and the naming hold, is closed before the view is gone.
                OwnThread.WaitEnded(_quiesce);
            }
        }

        /// <summary>
        /// The name a disk's image is stored under: its file name, or, when another disk's image has the same name in
        /// another folder, the drive name and the file name, so the two stay apart.
        /// </summary>
        protected static string StoredName(ISet<string> taken, string image, string driveName)
        {
            string name = Path.GetFileName(image);
            return taken.Add(name) ? name : driveName.TrimStart('#') + "/" + name;
        }
    }
}
