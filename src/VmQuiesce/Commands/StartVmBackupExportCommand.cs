using System;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Commands
{
    /// <summary>Serves a restore point's disks read-only over NBD from the repository, for as long as this session runs or until Stop-VmBackupExport.</summary>
    [Cmdlet(VerbsLifecycle.Start, "VmBackupExport", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(RestorePointServer))]
    public sealed class StartVmBackupExportCommand : RestorePointCommandBase
    {
        /// <summary>The unix socket to serve on; a new private folder's socket when omitted. Not used on Windows (loopback TCP).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? SocketPath { get; set; }

        /// <summary>Verified chunks kept in memory (default 16).</summary>
        [Parameter]
        [ValidateRange(2, 1024)]
        public int CacheChunks { get; set; } = 16;

        protected override void ProcessRecord()
        {
            IRestorePointSource? repository = null;
            try
            {
                (repository, RestorePoint point) = OpenRestorePoint();
                string? socket = SocketPath == null ? null : ResolveFileSystemPath(SocketPath, nameof(SocketPath));
                if (ShouldProcess($"{point.VmName} {point.Id}", "Serve read-only over NBD"))
                {
                    // The server outlives this command: it keeps the repository (and its lock) until it stops.
                    WriteObject(RestorePointServer.Start(repository, point, new RestorePointServerOptions { SocketPath = socket, CacheChunks = CacheChunks, OwnsRepository = true }));
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

    /// <summary>The restore points this session serves over NBD.</summary>
    [Cmdlet(VerbsCommon.Get, "VmBackupExport")]
    [OutputType(typeof(RestorePointServer))]
    public sealed class GetVmBackupExportCommand : VmQuiesceCmdlet
    {
        /// <summary>The export ids (Start-VmBackupExport's Id); all when omitted.</summary>
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [Alias("ExportId")]
        public string[]? Id { get; set; }

        protected override void ProcessRecord()
        {
            foreach (RestorePointServer server in RestorePointServer.Running)
            {
                if (Id == null || Array.Exists(Id, id => string.Equals(id, server.Id, StringComparison.OrdinalIgnoreCase)))
                {
                    WriteObject(server);
                }
            }
        }
    }

    /// <summary>Stops serving restore points over NBD: clients get an error for new requests, the socket goes, the repository lock is released.</summary>
    [Cmdlet(VerbsLifecycle.Stop, "VmBackupExport", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class StopVmBackupExportCommand : VmQuiesceCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; } = Array.Empty<string>();

        protected override void ProcessRecord()
        {
            foreach (string id in Id)
            {
                RestorePointServer? server = RestorePointServer.Find(id);
                if (server == null)
                {
                    WriteFailure(new VmQuiesceException("ExportNotFound", FailureKind.ObjectNotFound, $"This session serves no restore point with the export id '{id}'.", id)
                    {
                        Remedy = "List what this session serves with Get-VmBackupExport (an export lives in the session that started it).",
                    });
                    continue;
                }

                if (ShouldProcess(server.ToString(), "Stop serving"))
                {
                    server.Stop();
                }
            }
        }
    }
}
