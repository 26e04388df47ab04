using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// Copies restore points from one repository to another (a folder or s3://bucket/prefix), sending only the
    /// chunks the destination lacks and verifying each one as it is read: the 3-2-1 copy.
    /// </summary>
    [Cmdlet(VerbsCommon.Copy, "VmBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = ByVmSet)]
    [OutputType(typeof(RestorePointCopyResult))]
    public sealed class CopyVmBackupCommand : RepositoryCmdlet
    {
        private const string ByVmSet = "ByVm";
        private const string ByIdSet = "ById";

        private int _progressId;
        /// <summary>-Destination as a folder's full path, or the s3:// address as given.</summary>
        private string _destination = string.Empty;

        /// <summary>The repository to copy from: a folder or s3://bucket/prefix.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Repository { get; set; } = string.Empty;

        /// <summary>The repository to copy to: a folder or s3://bucket/prefix, created when empty.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RepositoryPathCompleter))]
        public string Destination { get; set; } = string.Empty;

        [Parameter(Mandatory = true, ParameterSetName = ByIdSet, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? Id { get; set; }

        [Parameter(ParameterSetName = ByVmSet)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(RestorePointCompleter))]
        public string[]? VmName { get; set; }

        /// <summary>Only the newest restore point of each VM.</summary>
        [Parameter(ParameterSetName = ByVmSet)]
        public SwitchParameter Latest { get; set; }

        protected override void BeginProcessing()
        {
            // Before any restore point is read: a -Destination of another provider ends the command.
            _destination = S3RepositoryAddress.IsS3(Destination) ? Destination : ResolveFileSystemPath(Destination, nameof(Destination));
        }

        protected override void ProcessRecord()
        {
            IRestorePointSource source;
            List<RestorePoint> points;
            try
            {
                source = OpenRestorePointSource(Repository, nameof(Repository));
                points = SelectRestorePoints(source, Id, VmName, Latest);
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            try
            {
                if (points.Count == 0 || !ShouldProcess(_destination, $"Copy {points.Count} restore point(s) from '{source.Location}'"))
                {
                    return;
                }

                // Shared locks: a prune of either repository waits (lock files in folders, lock objects on S3).
                using IDisposable sourceLock = LockForReading(source, "Copy-VmBackup");
                (ObjectRepository destination, IDisposable destinationLock) = OpenDestination(points[0].ChunkSize);
                using (destination)
                using (destinationLock)
                {
                    foreach (RestorePoint point in points)
                    {
                        int activityId = ++_progressId;
                        string activity = $"Copying {point.VmName} {point.Id} to {destination.Location}";
                        IOperationHost host = CreateHost(report => WriteProgress(ShowTransfer(new ProgressRecord(activityId, activity, report.Status), report)));
                        try
                        {
                            WriteObject(RunPumped(() => RestorePointCopy.Copy(source, point, destination, CancelToken, host)));
                        }
                        catch (VmQuiesceException e) when (e.ErrorId == "CopySourceDamaged")
                        {
                            // About this point only: the others are still copied.
                            WriteFailure(e);
                        }
                        finally
                        {
                            WriteProgress(new ProgressRecord(activityId, activity, "Done") { RecordType = ProgressRecordType.Completed });
                        }
                    }
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
            finally
            {
                (source as IDisposable)?.Dispose();
            }
        }

        /// <summary>
        /// The destination, created when empty (with the source's chunk size, encrypted with a new key whose key file
        /// goes to this host, as a backup makes a new repository); a folder is created by the folder code, then
        /// written as objects. Its key is required before anything is copied.
        /// </summary>
        private (ObjectRepository Repository, IDisposable Lock) OpenDestination(int chunkSize)
        {
            ObjectRepository destination;
            IDisposable? shared = null;
            if (S3RepositoryAddress.IsS3(_destination))
            {
                destination = ObjectRepository.OpenOrCreate(OpenS3Storage(_destination), chunkSize, RepositoryKey.Generate());
            }
            else
            {
                BackupRepository folder = BackupRepository.OpenOrCreate(_destination, chunkSize, RepositoryKey.Generate());
                shared = folder.LockShared("Copy-VmBackup", warn: WriteWarning);
                destination = ObjectRepository.Open(new FileObjectStorage(folder.Path));
            }

            try
            {
                destination.Encryption.RequireKey();
                shared ??= destination.LockShared("Copy-VmBackup");
            }
            catch
            {
                shared?.Dispose();
                destination.Dispose();
                throw;
            }

            if (!destination.Encryption.IsEncrypted)
            {
                WriteWarning($"The repository '{destination.Location}' is not encrypted (it was made before repository keys): anyone who can read it reads the guests' disks, and anyone who can write it can forge restore points. Copy into a new, empty place to have the copies encrypted.");
            }

            return (destination, shared);
        }
    }
}
