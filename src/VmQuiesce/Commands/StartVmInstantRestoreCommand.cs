using System;
using System.Threading.Tasks;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;

namespace VmQuiesce.Commands
{
    /// <summary>Starts a restore point's VM at once from the repository, copying its disks to local files in the background (Linux, QEMU).</summary>
    [Cmdlet(VerbsLifecycle.Start, "VmInstantRestore", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(InstantRestore))]
    public sealed class StartVmInstantRestoreCommand : RestorePointCommandBase
    {
        /// <summary>The folder for the VM's local disks, sockets and console log (made when missing).</summary>
        [Parameter(Mandatory = true, Position = 2)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; } = string.Empty;

        /// <summary>The VM's machine: a hashtable of BootCheckOptions (MachineType, MemoryMiB, Cpus, CpuModel: each overrides what the point recorded; Kernel, Initrd, Append, Accelerator, QemuExecutable).</summary>
        [Parameter]
        [ValidateNotNull]
        public BootCheckOptions? VmOption { get; set; }

        /// <summary>Bytes per second the background copy may read from the repository (10MB, ...); 0, the default, for no limit.</summary>
        [Parameter]
        [ValidateRange(0, long.MaxValue)]
        public long CopyRateLimit { get; set; }

        protected override void ProcessRecord()
        {
            IRestorePointSource? repository = null;
            try
            {
                (repository, RestorePoint point) = OpenRestorePoint();
                string destination = ResolveFileSystemPath(Destination, nameof(Destination));
                if (ShouldProcess(destination, $"Start {point.VmName} from restore point {point.Id} and copy its disks here"))
                {
                    IRestorePointSource served = repository;
                    InstantRestore restore = RunPumped(() => InstantRestore.Start(served, point, destination, VmOption ?? new BootCheckOptions(), CopyRateLimit, CancelToken));
                    // The restore outlives this command: it keeps the repository (and its lock) until its disks are local.
                    repository = null;
                    WriteVerbose($"Started {point.VmName} {point.Id} as {restore.Machine}.");
                    WriteObject(restore);
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
            finally
            {
                (repository as IDisposable)?.Dispose();
            }
        }
    }

    /// <summary>The instant restores of this user on this host: those this session watches, and those another session started (interrupted when it is gone).</summary>
    [Cmdlet(VerbsCommon.Get, "VmInstantRestore")]
    [OutputType(typeof(InstantRestore))]
    public sealed class GetVmInstantRestoreCommand : VmQuiesceCmdlet
    {
        protected override void ProcessRecord()
        {
            try
            {
                WriteObject(InstantRestore.Running, enumerateCollection: true);
            }
            catch (VmQuiesceException e)
            {
                // The records' folder is not this user's own (RecordFolderUntrusted): nothing there is believed.
                ThrowFailure(e);
            }
        }
    }

    /// <summary>
    /// Waits until the disks of instant restores are local and complete, showing progress; an interrupted one (its
    /// serving process gone) is taken over first: served again from its repository and its copy resumed.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Complete, "VmInstantRestore", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(InstantRestore))]
    /// <remarks>
    /// A restore record names its repository only by folder or s3:// address, never how to reach it: resuming one served
    /// from S3 takes -S3Endpoint, -S3Credential, -S3ProfileName and -S3Region again (or the AWS environment and files).
    /// </remarks>
    public sealed class CompleteVmInstantRestoreCommand : RepositoryCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; } = Array.Empty<string>();

        /// <summary>A new limit for the background copy, in bytes per second (0: none); without it the limit stays as it was.</summary>
        [Parameter]
        [ValidateRange(0, long.MaxValue)]
        public long CopyRateLimit { get; set; }

        protected override void ProcessRecord()
        {
            foreach (InstantRestore restore in Find(this, Id))
            {
                try
                {
                    if (MyInvocation.BoundParameters.ContainsKey(nameof(CopyRateLimit)) && ShouldProcess(restore.ToString(), CopyRateLimit == 0 ? "Lift the background copy's rate limit" : $"Limit the background copy to {Units.Rate(CopyRateLimit)}"))
                    {
                        restore.CopyRateLimit = CopyRateLimit;
                    }

                    if (restore.GetState() == InstantRestoreState.Interrupted || restore.GetState() == InstantRestoreState.ServedElsewhere)
                    {
                        // Taking it over serves the point again and copies each incomplete disk again from zero.
                        if (!ShouldProcess(restore.ToString(), $"Take over: serve restore point {restore.RestorePointId} again from '{restore.Repository}' and copy each incomplete disk again from the start"))
                        {
                            continue;
                        }

                        Pump(() => Task.Run(() => restore.Resume(() => OpenResolvedRestorePointSource(restore.Repository), CancelToken)));
                    }
                }
                catch (VmQuiesceException e)
                {
                    WriteFailure(e);
                    continue;
                }

                var progress = new ProgressRecord(1, $"Copying {restore.VmName} {restore.RestorePointId} to {restore.Destination}", "Copying");
                while (!restore.WaitForCompletion(TimeSpan.FromSeconds(1), CancelToken) && restore.GetState() == InstantRestoreState.Copying)
                {
                    progress.PercentComplete = restore.TotalBytes > 0 ? (int)(100 * restore.CopiedBytes / restore.TotalBytes) : 0;
                    WriteProgress(progress);
                }

                progress.RecordType = ProgressRecordType.Completed;
                WriteProgress(progress);
                WriteObject(restore);
                if (restore.GetState() == InstantRestoreState.Failed)
                {
                    WriteFailure(new VmQuiesceException("InstantRestoreCopyFailed", FailureKind.ReadError, restore.Error ?? "The background copy failed.", restore)
                    {
                        Remedy = $"The VM still runs on the export. Stop it with Stop-VmInstantRestore -Id {restore.Id}, and restore another restore point.",
                    });
                }
            }
        }

        /// <summary>The instant restores with these ids; a non-terminating error for each id that names none.</summary>
        internal static System.Collections.Generic.IEnumerable<InstantRestore> Find(VmQuiesceCmdlet cmdlet, string[] ids)
        {
            foreach (string id in ids)
            {
                InstantRestore? restore;
                try
                {
                    restore = InstantRestore.Find(id);
                }
                catch (VmQuiesceException e)
                {
                    // The records' folder is not this user's own (RecordFolderUntrusted): no id there is believed.
                    cmdlet.ThrowTerminatingError(VmQuiesceCmdlet.ErrorRecordFor(e));
                    yield break;
                }

                if (restore != null)
                {
                    yield return restore;
                    continue;
                }

                cmdlet.WriteError(VmQuiesceCmdlet.ErrorRecordFor(new VmQuiesceException("InstantRestoreNotFound", FailureKind.ObjectNotFound, $"There is no instant restore with the id '{id}' on this host (of this user).", id)
                {
                    Remedy = "List them with Get-VmInstantRestore.",
                }));
            }
        }
    }

    /// <summary>Ends an instant restore that has not completed: the VM is ended and its incomplete local disks are deleted.</summary>
    [Cmdlet(VerbsLifecycle.Stop, "VmInstantRestore", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    public sealed class StopVmInstantRestoreCommand : VmQuiesceCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; } = Array.Empty<string>();

        protected override void ProcessRecord()
        {
            foreach (InstantRestore restore in CompleteVmInstantRestoreCommand.Find(this, Id))
            {
                if (ShouldProcess(restore.ToString(), restore.GetState() == InstantRestoreState.Completed ? "Stop watching (the VM and its complete disks stay)" : "End the VM and delete its incomplete disks"))
                {
                    try
                    {
                        restore.Stop();
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                    }
                }
            }
        }
    }
}
