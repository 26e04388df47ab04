using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// Everything the requester needs from the machine, so that its state machine is written once and
    /// proven on any OS with a scripted fake; the real implementation is Native/WindowsVssHost.
    /// </summary>
    internal interface IVssHost
    {
        /// <summary>True for a 32-bit process on 64-bit Windows, where VSS refuses to work (WOW64).</summary>
        bool Is32BitProcessOn64BitWindows { get; }

        /// <summary>True when the process token is an (elevated) Administrator or a Backup Operator.</summary>
        bool HasBackupRights { get; }

        /// <summary>
        /// Sets COM security to packet privacy with impersonation, as writers expect of a requester; returns
        /// null when set, or why it could not be (typically already set by the host process), which is reported.
        /// </summary>
        string? InitializeComSecurity();

        /// <summary>CreateVssBackupComponentsInternal; throws UnsupportedWindowsVersion when it is missing.</summary>
        IVssBackupComponentsApi CreateBackupComponents();

        /// <summary>The volume that holds <paramref name="path"/>.</summary>
        VssVolume GetVolume(string path);

        /// <summary>The short name of the service whose display name is <paramref name="displayName"/>, or null.</summary>
        string? FindServiceByDisplayName(string displayName);

        /// <summary>Every REG_BINARY value of each subkey of VSS's diagnostic key (<see cref="VssDiagnosticEvent.KeyPath"/>); empty when the key does not exist.</summary>
        IReadOnlyList<VssDiagnosticValue> ReadDiagnostics();
    }

    /// <summary>
    /// IVssBackupComponents, one call per method. A failing call throws <see cref="VssCallException"/> with the
    /// HRESULT; Dispose is Release. Writer metadata and status come back as values: the sub-objects they are
    /// read from are released inside the implementation.
    /// </summary>
    internal interface IVssBackupComponentsApi : IDisposable
    {
        void InitializeForBackup();

        void SetContext(int context);

        void SetBackupState(bool selectComponents, bool bootableSystemState, VssBackupType backupType, bool partialFileSupport);

        IVssAsyncOperation GatherWriterMetadata();

        /// <summary>GetWriterMetadataCount, GetWriterMetadata and each writer's identity, components and files.</summary>
        IReadOnlyList<VssWriterMetadata> GetWriterMetadata();

        void AddComponent(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name);

        Guid StartSnapshotSet();

        Guid AddToSnapshotSet(string volumeName);

        IVssAsyncOperation PrepareForBackup();

        IVssAsyncOperation GatherWriterStatus();

        /// <summary>GetWriterStatusCount, GetWriterStatus for each, FreeWriterStatus.</summary>
        IReadOnlyList<VssWriterInfo> GetWriterStatus(Func<string, string?> serviceOfWriter);

        IVssAsyncOperation DoSnapshotSet();

        VssSnapshotProperties GetSnapshotProperties(Guid snapshotId);

        void SetBackupSucceeded(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name, bool succeeded);

        IVssAsyncOperation BackupComplete();

        void AbortBackup();

        /// <summary>Deletes every shadow copy of the set; returns how many were deleted.</summary>
        int DeleteSnapshots(Guid snapshotSetId);
    }

    /// <summary>IVssAsync; Dispose is Release.</summary>
    internal interface IVssAsyncOperation : IDisposable
    {
        /// <summary>Waits up to <paramref name="slice"/> for the operation to end (it may return earlier).</summary>
        void Wait(TimeSpan slice);

        /// <summary>The operation's status: VSS_S_ASYNC_PENDING, _FINISHED, _CANCELLED or the failure HRESULT.</summary>
        int QueryStatus();

        /// <summary>Asks the operation to stop; an operation that already ended ignores it.</summary>
        void Cancel();
    }

    /// <summary>A COM call returned a failure HRESULT; the requester turns it into a VmQuiesceException.</summary>
    internal sealed class VssCallException : Exception
    {
        public VssCallException(string method, int hresult)
            : base($"{method} failed with {VssErrors.Format(hresult)}.")
        {
            Method = method;
            HResult = hresult;
        }

        public string Method { get; }
    }
}
