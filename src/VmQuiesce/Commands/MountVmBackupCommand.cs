using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>Mounts a restore point's guest file systems read-only under a folder, served from the repository (Linux, root).</summary>
    [Cmdlet(VerbsData.Mount, "VmBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(RestorePointMount))]
    public sealed class MountVmBackupCommand : RestorePointCommandBase
    {
        /// <summary>An empty folder (made when missing) under which each file system gets a folder: disk0, disk0p1...</summary>
        [Parameter(Mandatory = true, Position = 2)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; } = string.Empty;

        protected override void ProcessRecord()
        {
            IRestorePointSource? repository = null;
            try
            {
                (repository, RestorePoint point) = OpenRestorePoint();
                string folder = ResolveFileSystemPath(Path, nameof(Path));
                if (ShouldProcess(folder, $"Mount {point.VmName} {point.Id} read-only"))
                {
                    IRestorePointSource served = repository;
                    WriteObject(RunPumped(() => RestorePointMount.Mount(served, point, folder, CancelToken)));
                    // The mount outlives this command: it keeps the repository (and its lock) until it is dismounted.
                    repository = null;
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

    /// <summary>The restore points mounted on this host (from their records), by this session or by one that is gone.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackupMount")]
    [OutputType(typeof(RestorePointMount))]
    public sealed class GetVmBackupMountCommand : VmQuiesceCmdlet
    {
        protected override void ProcessRecord() => WriteObject(RestorePointMount.Find(), enumerateCollection: true);
    }

    /// <summary>Unmounts restore points mounted with Mount-VmBackup, and removes what they set up.</summary>
    [Cmdlet(VerbsData.Dismount, "VmBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    public sealed class DismountVmBackupCommand : VmQuiesceCmdlet
    {
        /// <summary>The folders given to Mount-VmBackup.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; } = Array.Empty<string>();

        protected override void ProcessRecord()
        {
            var mounts = RestorePointMount.Find();
            foreach (string path in Path)
            {
                // A folder that does not resolve, holds no mount or fails to dismount is its own failure; the others are dismounted.
                try
                {
                    string folder = ResolveItemFileSystemPath(path, nameof(Path));
                    RestorePointMount? mount = RestorePointMount.FindOn(mounts, folder);
                    if (mount == null)
                    {
                        WriteFailure(new VmQuiesceException("MountNotFound", FailureKind.ObjectNotFound, $"No restore point is mounted on '{folder}'.", folder)
                        {
                            Remedy = "List the mounts of this host with Get-VmBackupMount.",
                        });
                        continue;
                    }

                    if (ShouldProcess(folder, $"Dismount {mount.VmName} {mount.RestorePointId}"))
                    {
                        mount.Dismount();
                    }
                }
                catch (VmQuiesceException e)
                {
                    WriteFailure(e);
                }
            }
        }
    }

    /// <summary>Copies files or folders out of a restore point, mounting it read-only for the copy (Linux, root).</summary>
    [Cmdlet(VerbsData.Restore, "VmBackupItem", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(RestoredItem))]
    public sealed class RestoreVmBackupItemCommand : RestorePointCommandBase
    {
        /// <summary>Paths inside the point as Mount-VmBackup shows them: disk0/etc/hosts, disk0p2/home.</summary>
        [Parameter(Mandatory = true, Position = 2)]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; } = Array.Empty<string>();

        /// <summary>The folder the items are copied into, each under its own name (made when missing).</summary>
        [Parameter(Mandatory = true, Position = 3)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; } = string.Empty;

        /// <summary>Replace a file or folder of the same name in the destination.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>A user of this host (name or numeric id) who owns every copy, instead of the guest's user id.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Owner { get; set; }

        /// <summary>A group of this host (name or numeric id) of every copy; with -Owner alone, that user's own group.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? Group { get; set; }

        protected override void ProcessRecord()
        {
            IRestorePointSource repository;
            RestorePoint point;
            ItemOwner? owner;
            try
            {
                // Off Linux there are no accounts to look up: the mount refuses such a host anyway.
                owner = HostPlatform.IsLinux ? ItemOwner.Resolve(Owner, Group) : null;
                (repository, point) = OpenRestorePoint();
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
                return;
            }

            string folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vmq-items-" + Guid.NewGuid().ToString("N").Substring(0, 12));
            try
            {
                string destination = ResolveFileSystemPath(Destination, nameof(Destination));
                // Asked before the point is mounted (storage daemons, loop devices, mounts, a record): -WhatIf and a
                // declined item start none of it. The copy still checks each item inside the point.
                var confirmed = new List<string>();
                foreach (string item in Path)
                {
                    string target;
                    try
                    {
                        // The target the copy writes (an item 'disk0\etc\hosts' lands as 'hosts'); an item no point can hold is refused here.
                        target = RestorePointMount.TargetOf(item, destination);
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                        continue;
                    }

                    if (ShouldProcess(target, $"Copy '{item}' of {point.VmName} {point.Id}{(File.Exists(target) || Directory.Exists(target) ? " over the existing item" : string.Empty)}"))
                    {
                        confirmed.Add(item);
                    }
                }

                if (confirmed.Count == 0)
                {
                    return;
                }

                using RestorePointMount mount = RunPumped(() => RestorePointMount.Mount(repository, point, folder, CancelToken));
                foreach (string item in confirmed)
                {
                    try
                    {
                        WriteObject(RunPumped(() => mount.CopyItem(item, destination, Force, CancelToken, owner)));
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                    }
                }
            }
            catch (VmQuiesceException e)
            {
                WriteFailure(e);
            }
            finally
            {
                // The mount owned it and closed it; this covers a mount that never started.
                (repository as IDisposable)?.Dispose();
            }
        }
    }
}
