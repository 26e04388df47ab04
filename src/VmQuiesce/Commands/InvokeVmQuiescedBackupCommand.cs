using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.WindowsVss;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Backs VMs up into a repository: quiesce, snapshot, thaw, copy, one restore point per VM. VMs run
    /// in parallel on worker threads; everything that touches the pipeline (output, errors, progress,
    /// the hook script blocks) runs on the pipeline thread, through the base class's pump.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VmQuiescedBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(RestorePoint))]
    public sealed class InvokeVmQuiescedBackupCommand : RepositoryCmdlet
    {
        /// <summary>
        /// Allocations change-tracked backups may make before the runtime collects again. One of the bench's 4 GiB disk, 1%
        /// changed, allocates about 27 MiB in all; garbage left uncollected costs at most this much memory meanwhile.
        /// </summary>
        private const long NoCollectionBudget = 48L * 1024 * 1024;

        private readonly List<BackupVm> _vms = new List<BackupVm>();
        private int _published;
        /// <summary>The repository folder; null for an s3:// repository.</summary>
        private string? _repositoryPath;

        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
        [ValidateNotNullOrEmpty]
        [BackupVmTransformation]
        [ArgumentCompleter(typeof(RunningVmCompleter))]
        public BackupVm[] Vm { get; set; } = Array.Empty<BackupVm>();

        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>The lowest acceptable consistency.</summary>
        [Parameter]
        public Consistency Consistency { get; set; } = Consistency.FileSystem;

        /// <summary>A lower consistency is a warning instead of an error.</summary>
        [Parameter]
        public SwitchParameter AllowLowerConsistency { get; set; }

        /// <summary>The longest the guest may stay frozen: seconds or a TimeSpan.</summary>
        [Parameter]
        [SecondsTransformation]
        public TimeSpan FreezeTimeout { get; set; } = TimeSpan.FromSeconds(10);

        /// <summary>Runs before each VM is quiesced, with $_ set to the VM.</summary>
        [Parameter]
        public ScriptBlock? PreFreezeScript { get; set; }

        /// <summary>Runs after each VM is thawed, with $_ set to the VM.</summary>
        [Parameter]
        public ScriptBlock? PostThawScript { get; set; }

        /// <summary>How many VMs are backed up at once.</summary>
        [Parameter]
        [ValidateRange(1, 64)]
        public int ThrottleLimit { get; set; } = 2;

        /// <summary>Keep the snapshot the backup took on the VM (the point records it; Remove-VmBackup deletes it with the last point that does).</summary>
        [Parameter]
        public SwitchParameter KeepSnapshot { get; set; }

        /// <summary>Native: the VM's own source quiesces it; HostVss: the Windows host's VSS writers do.</summary>
        [Parameter]
        public BackupMethod Method { get; set; } = BackupMethod.Native;

        /// <summary>With -Method HostVss: Copy leaves application logs alone; Full lets writers truncate them.</summary>
        [Parameter]
        [ValidateSet(nameof(VssBackupType.Copy), nameof(VssBackupType.Full))]
        public VssBackupType VssBackupType { get; set; } = VssBackupType.Copy;

        /// <summary>
        /// The chunk size of a repository this call creates (unless given, 4 MiB, or with change tracking 512 KiB, 1 MiB in object storage):
        /// smaller chunks store less after scattered small changes, larger ones mean fewer files. An existing
        /// repository must match.
        /// </summary>
        [Parameter]
        [ValidateRange(BackupRepository.MinChunkSize, BackupRepository.MaxChunkSize)]
        public int ChunkSize { get; set; } = BackupRepository.DefaultChunkSize;

        /// <summary>Read only what changed since the VM's last change-tracked point (QEMU dirty bitmaps); a full read says why.</summary>
        [Parameter]
        public SwitchParameter ChangeTracking { get; set; }

        /// <summary>With change tracking, read everything anyway and fail loudly where the checkpoint missed a change; implies -ChangeTracking.</summary>
        [Parameter]
        public SwitchParameter VerifyChangeTracking { get; set; }

        protected override void BeginProcessing()
        {
            // -Vm given as text was found before anything here: what Get-BackupVm said then comes first, even when a parameter
            // below is refused. A piped VM's comes with its ProcessRecord.
            BackupVmTransformationAttribute.WriteSaidWhileFound(this, Vm);
            if (ChunkSize % BackupRepository.ChunkSizeStep != 0)
            {
                ThrowInvalidArgument("InvalidChunkSize", $"-ChunkSize is {ChunkSize} bytes ({Units.Bytes(ChunkSize)}); expected a whole number of {Units.Bytes(BackupRepository.ChunkSizeStep)} blocks, such as 1MB or 4MB.", ChunkSize);
            }

            if (FreezeTimeout <= TimeSpan.Zero || FreezeTimeout > TimeSpan.FromHours(1))
            {
                ThrowInvalidArgument("InvalidFreezeTimeout", $"-FreezeTimeout is {FreezeTimeout}; expected more than 0 and at most 1 hour.", FreezeTimeout);
            }

            if ((ChangeTracking || VerifyChangeTracking) && (Method != BackupMethod.Native || KeepSnapshot))
            {
                ThrowInvalidArgument("ChangeTrackingNotSupported", "-ChangeTracking and -VerifyChangeTracking apply to -Method Native backups of running QEMU VMs, without -KeepSnapshot (a change-tracked backup switches no overlay and keeps no snapshot).", Method);
            }

            if (MyInvocation.BoundParameters.ContainsKey(nameof(VssBackupType)) && Method != BackupMethod.HostVss)
            {
                ThrowInvalidArgument("VssBackupTypeNeedsHostVss", "-VssBackupType applies to -Method HostVss only; the other methods do not truncate application logs.", VssBackupType);
            }

            // Before any VM is looked at: a path of another provider must not become a repository folder, and an
            // s3:// address must be one.
            if (S3RepositoryAddress.IsS3(Repository))
            {
                try
                {
                    S3RepositoryAddress.Parse(Repository);
                }
                catch (VmQuiesceException e)
                {
                    ThrowFailure(e);
                }
            }
            else
            {
                _repositoryPath = ResolveFileSystemPath(Repository, nameof(Repository));
            }
        }

        protected override void ProcessRecord()
        {
            BackupVmTransformationAttribute.WriteSaidWhileFound(this, Vm);
            foreach (BackupVm vm in Vm)
            {
                if (_vms.Any(known => string.Equals(known.Name, vm.Name, StringComparison.OrdinalIgnoreCase) && known.Kind == vm.Kind))
                {
                    WriteFailure(new VmQuiesceException("DuplicateVm", FailureKind.InvalidArgument, $"The VM '{vm.Name}' was given more than once; it is backed up once.", vm));
                    continue;
                }

                if (ShouldProcess(vm.Name, $"Back up ({Consistency} consistency or better) to repository '{Repository}'"))
                {
                    _vms.Add(vm);
                }
            }
        }

        protected override void EndProcessing()
        {
            if (_vms.Count == 0)
            {
                return;
            }

            // While the repository opens, the VMs that start first connect to their monitors and guest agents
            // (BackupVm.StartAhead: a QEMU guest agent notices a new connection only after up to 100 ms).
            List<IDisposable?> ahead = Method == BackupMethod.HostVss ? new List<IDisposable?>() : _vms.Take(ThrottleLimit).Select(vm => vm.StartAhead()).ToList();
            // A change-tracked backup runs in a fraction of a second, so a collection's pause is a large part of it: no garbage
            // collection while they run, as far as NoCollectionBudget of allocations goes (see NoCollectionRegion); a bigger
            // one ends it on the way. A whole-image backup runs for seconds or hours and collects as it goes, its memory flat.
            using NoCollectionRegion? quiet = ChangeTracking || VerifyChangeTracking ? NoCollectionRegion.TryStart(NoCollectionBudget) : null;
            try
            {
                BackUpToRepository(ahead);
            }
            finally
            {
                ahead.ForEach(started => started?.Dispose());
            }
        }

        private void BackUpToRepository(IReadOnlyList<IDisposable?> ahead)
        {
            IRestorePointSource repository;
            BackupEngine engine;
            try
            {
                // A new repository is encrypted: its key goes to this host's key folder. S3 is reached (endpoint,
                // keys, bucket checked) before any VM is frozen.
                if (_repositoryPath == null)
                {
                    ObjectRepository objects = ObjectRepository.OpenOrCreate(OpenS3Storage(Repository), NewRepositoryChunkSize(ObjectRepository.ChangeTrackedChunkSize), RepositoryKey.Generate());
                    (repository, engine) = (objects, new BackupEngine(objects));
                }
                else
                {
                    BackupRepository folder = BackupRepository.OpenOrCreate(_repositoryPath, NewRepositoryChunkSize(BackupRepository.ChangeTrackedChunkSize), RepositoryKey.Generate());
                    (repository, engine) = (folder, new BackupEngine(folder));
                }
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                return;
            }

            try
            {
                CheckRepository(repository);
                BackUpAll(engine, ahead);
                if (_published == 0 && (repository is BackupRepository folder ? folder.RemoveIfUnused() : ((ObjectRepository)repository).RemoveIfUnused()))
                {
                    WriteVerbose($"Removed the repository '{repository.Location}' this call created: no backup stored anything in it.");
                }
            }
            finally
            {
                (repository as IDisposable)?.Dispose();
            }
        }

        /// <summary>
        /// -ChunkSize when given; otherwise <paramref name="changeTracked"/> (the kind of repository's size) for a
        /// change-tracked backup, whose incrementals patch every chunk a write touches, and the default 4 MiB for the rest.
        /// </summary>
        private int NewRepositoryChunkSize(int changeTracked) =>
            !MyInvocation.BoundParameters.ContainsKey(nameof(ChunkSize)) && (ChangeTracking || VerifyChangeTracking) ? changeTracked : ChunkSize;

        private void CheckRepository(IRestorePointSource repository)
        {
            try
            {
                if (!repository.Encryption.IsEncrypted)
                {
                    WriteWarning($"The repository '{repository.Location}' is not encrypted (it was made before repository keys): anyone who can read it reads the guests' disks, and anyone who can write it can forge restore points. New-VmBackupRepository makes an encrypted one.");
                }

                repository.Encryption.RequireKey();
                if (MyInvocation.BoundParameters.ContainsKey(nameof(ChunkSize)) && repository.ChunkSize != ChunkSize)
                {
                    throw new VmQuiesceException("RepositoryChunkSizeDiffers", FailureKind.InvalidArgument,
                        $"The repository '{repository.Location}' has chunk size {Units.Bytes(repository.ChunkSize)}; -ChunkSize asks for {Units.Bytes(ChunkSize)}. A repository keeps the chunk size it was made with.", Repository)
                    {
                        Remedy = "Leave out -ChunkSize to use the repository's, or give a new folder or prefix for a new repository.",
                    };
                }
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
            }
        }

        private void BackUpAll(BackupEngine engine, IReadOnlyList<IDisposable?> ahead)
        {
            var overall = new OverallProgress(_vms.Count);
            using var slots = new SemaphoreSlim(ThrottleLimit);
            var hosts = _vms.Select((vm, index) => CreateHost(report => WriteVmProgress(index + 1, (BackupProgress)report, overall))).ToList();
            Pump(() => Task.WhenAll(_vms.Select((vm, index) => Task.Run(() =>
            {
                slots.Wait(CancelToken);
                try
                {
                    BackUp(engine, vm, index + 1, hosts[index], index < ahead.Count ? ahead[index] : null);
                }
                finally
                {
                    slots.Release();
                }
            }))));
            WriteProgress(new ProgressRecord(0, "Backing up VMs", "Done") { RecordType = ProgressRecordType.Completed });
        }

        /// <summary>One VM, on a worker thread: everything it has to say goes through the pump. Its source takes what <paramref name="ahead"/> started.</summary>
        private void BackUp(BackupEngine engine, BackupVm vm, int activity, IOperationHost host, IDisposable? ahead)
        {
            try
            {
                BackupVm target = Method == BackupMethod.HostVss ? HostVssSource.ForVm(vm, VssBackupType) : vm;
                IBackupSource source = target.OpenSource(host, ahead);
                var options = new QuiesceOptions
                {
                    Required = Consistency,
                    AllowLower = AllowLowerConsistency,
                    FreezeTimeout = FreezeTimeout,
                    KeepSnapshot = KeepSnapshot,
                    PreFreeze = PreFreezeScript == null ? null : cancel => RunHook(PreFreezeScript, vm, "PreFreezeScriptFailed", "-PreFreezeScript", cancel),
                    PostThaw = PostThawScript == null ? null : cancel => RunHook(PostThawScript, vm, "PostThawScriptFailed", "-PostThawScript", cancel),
                };
                ChangeTrackingOptions? tracking = ChangeTracking || VerifyChangeTracking ? new ChangeTrackingOptions { Verify = VerifyChangeTracking } : null;
                BackupOutcome outcome = engine.Run(source, options, host, CancelToken, tracking);
                Interlocked.Increment(ref _published);
                Post(() =>
                {
                    WriteProgress(new ProgressRecord(activity, $"Backing up {vm.Name}", "Done") { ParentActivityId = 0, RecordType = ProgressRecordType.Completed });
                    WriteObject(outcome.RestorePoint);
                });
                // Posted apart from the point, which a pipeline stopped meanwhile refuses: these still reach the user.
                foreach (VmQuiesceException failure in new[] { outcome.ReleaseFailure, outcome.ChangeTrackingFailure }.OfType<VmQuiesceException>())
                {
                    Post(() => WriteFailure(failure));
                }
            }
            catch (Exception e) when (CancelToken.IsCancellationRequested && !(e is OutOfMemoryException) && !(e is VmQuiesceException { ErrorId: "ThawFailed" }))
            {
                // Ctrl+C: the engine released the view and published nothing. The stop surfaces as whatever the work was
                // doing failed with (a QEMU copy's read ends in an error of its own, not always a cancellation), and an
                // error written now is lost with the stopped pipeline. Every failure but ThawFailed comes after the freeze
                // guard thawed the guest, so this is the truth.
                host.WriteWarning($"The backup of VM '{vm.Name}' was cancelled; guest thawed, no restore point stored.");
            }
            catch (VmQuiesceException e)
            {
                Post(() => WriteErrorEvenWhenStopping(ErrorRecordWithTarget(e, vm)));
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                var failure = new VmQuiesceException("BackupFailed", FailureKind.InvalidOperation, $"The backup of VM '{vm.Name}' failed: {e.Message}", vm, e);
                Post(() => WriteFailure(failure));
            }
        }

        /// <summary>Per-VM failures name the VM object, whatever the core had as target.</summary>
        private static ErrorRecord ErrorRecordWithTarget(VmQuiesceException failure, BackupVm vm)
        {
            ErrorRecord record = ErrorRecordFor(failure);
            if (failure.Target is BackupVm)
            {
                return record;
            }

            return new ErrorRecord(failure, failure.ErrorId, record.CategoryInfo.Category, vm) { ErrorDetails = record.ErrorDetails };
        }

        /// <summary>Runs a hook on the pipeline thread (script blocks belong to its runspace) and waits for it.</summary>
        private void RunHook(ScriptBlock script, BackupVm vm, string errorId, string parameter, CancellationToken cancel)
        {
            Exception? failed = Ask(() =>
            {
                try
                {
                    script.InvokeWithContext(null, new List<PSVariable> { new PSVariable("_", vm) }, vm);
                    return null;
                }
                catch (Exception e) when (!(e is PipelineStoppedException))
                {
                    return e;
                }
            }, cancel);
            if (failed is Exception failure)
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidOperation, $"{parameter} failed for VM '{vm.Name}': {failure.Message}", vm, failure);
            }
        }

        private void WriteVmProgress(int activity, BackupProgress report, OverallProgress overall)
        {
            TransferProgress sum = overall.Update(activity, report);
            WriteProgress(ShowTransfer(new ProgressRecord(0, "Backing up VMs", sum.Status), sum));
            WriteProgress(ShowTransfer(new ProgressRecord(activity, $"Backing up {report.VmName}", report.Status) { ParentActivityId = 0 }, report));
        }

        /// <summary>Adds up the VMs' progress for the overall bar (pipeline thread only).</summary>
        private sealed class OverallProgress
        {
            private readonly Dictionary<int, BackupProgress> _latest = new Dictionary<int, BackupProgress>();
            private readonly DateTime _start = DateTime.UtcNow;
            private readonly int _vms;

            public OverallProgress(int vms) => _vms = vms;

            public TransferProgress Update(int activity, BackupProgress report)
            {
                _latest[activity] = report;
                // A loop: Sum over longs is compiled at run time, as the first report comes.
                int done = 0;
                long bytesDone = 0, bytesTotal = 0;
                foreach (BackupProgress item in _latest.Values)
                {
                    done += item.Phase == BackupPhase.Done ? 1 : 0;
                    bytesDone += item.BytesDone;
                    bytesTotal += item.BytesTotal;
                }

                return new TransferProgress($"{done} of {_vms} done", bytesDone, bytesTotal, DateTime.UtcNow - _start);
            }
        }
    }
}
