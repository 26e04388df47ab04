using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>VSS_BACKUP_TYPE: Copy leaves application logs untouched; Full lets writers truncate them.</summary>
    public enum VssBackupType
    {
        Full = 1,
        Incremental = 2,
        Differential = 3,
        Log = 4,
        Copy = 5,
    }

    /// <summary>VSS_WRITER_STATE, as GetWriterStatus reports it.</summary>
    public enum VssWriterState
    {
        Unknown = 0,
        Stable = 1,
        WaitingForFreeze = 2,
        WaitingForThaw = 3,
        WaitingForPostSnapshot = 4,
        WaitingForBackupComplete = 5,
        FailedAtIdentify = 6,
        FailedAtPrepareBackup = 7,
        FailedAtPrepareSnapshot = 8,
        FailedAtFreeze = 9,
        FailedAtThaw = 10,
        FailedAtPostSnapshot = 11,
        FailedAtBackupComplete = 12,
        FailedAtPreRestore = 13,
        FailedAtPostRestore = 14,
        FailedAtBackupShutdown = 15,
    }

    /// <summary>VSS_COMPONENT_TYPE.</summary>
    public enum VssComponentType
    {
        Undefined = 0,
        Database = 1,
        FileGroup = 2,
    }

    /// <summary>Values from vss.h, vsbackup.h and vsserror.h that the requester needs.</summary>
    internal static class VssConstants
    {
        public const int ContextBackup = 0;
        public const int ObjectSnapshotSet = 2;

        public const int AsyncPending = 0x00042309;
        public const int AsyncFinished = 0x0004230A;
        public const int AsyncCancelled = 0x0004230B;

        public static bool IsFailedState(VssWriterState state) => state >= VssWriterState.FailedAtIdentify;

        /// <summary>IVssAsync.Wait's argument: INFINITE for an infinite span; otherwise rounded up, never negative, never INFINITE.</summary>
        public static uint WaitMilliseconds(TimeSpan slice) =>
            slice == System.Threading.Timeout.InfiniteTimeSpan ? uint.MaxValue : (uint)Math.Min(uint.MaxValue - 1.0, Math.Max(0, Math.Ceiling(slice.TotalMilliseconds)));
    }

    /// <summary>The VM writer a HostVss backup involves, found by name (and by id where the id is known).</summary>
    public sealed class HostVssWriter
    {
        public HostVssWriter(string name, Guid? id, bool componentsMatchByFolder = true)
        {
            Name = name;
            Id = id;
            ComponentsMatchByFolder = componentsMatchByFolder;
        }

        /// <summary>VMware Server's writer; its id and component naming are not published, so it is found by name and a VM's component also by its folder.</summary>
        public static HostVssWriter VMware { get; } = new HostVssWriter("VMware VSS Writer", null);

        /// <summary>
        /// Hyper-V's writer names each VM's component by the VM's id. Hyper-V keeps every VM's configuration in
        /// one shared folder by default, so a folder says nothing about which VM a component is.
        /// </summary>
        public static HostVssWriter HyperV { get; } = new HostVssWriter("Microsoft Hyper-V VSS Writer", new Guid("66841cd4-6ded-4f4b-8f17-fd23f8ddc3de"), componentsMatchByFolder: false);

        public string Name { get; }

        public Guid? Id { get; }

        /// <summary>Whether a component whose files lie in the folder of the VM's files is the VM's.</summary>
        public bool ComponentsMatchByFolder { get; }

        public bool Matches(Guid writerId, string writerName) =>
            Id.HasValue ? Id.Value == writerId : string.Equals(Name, writerName, StringComparison.OrdinalIgnoreCase);

        public override string ToString() => Name;
    }

    /// <summary>One writer as GetWriterStatus reports it: what Get-VssWriter shows.</summary>
    public sealed class VssWriterInfo
    {
        public VssWriterInfo(string name, Guid writerId, Guid instanceId, VssWriterState state, int lastError, string? service)
        {
            Name = name;
            WriterId = writerId;
            InstanceId = instanceId;
            StateValue = state;
            LastError = lastError;
            Service = string.IsNullOrEmpty(service) ? null : service;
            LastErrorName = VssErrors.NameOf(lastError);
            LastErrorMeaning = VssErrors.MeaningOf(lastError);
        }

        public string Name { get; }

        public Guid WriterId { get; }

        public Guid InstanceId { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StateValue"/> is the typed value.</summary>
        public string State => StateValue.ToString();

        internal VssWriterState StateValue { get; }

        public bool Failed => VssConstants.IsFailedState(StateValue);

        /// <summary>The writer's last failure HRESULT; 0 (S_OK) when it has none.</summary>
        public int LastError { get; }

        /// <summary>The VSS name of <see cref="LastError"/>, such as VSS_E_WRITERERROR_TIMEOUT.</summary>
        public string LastErrorName { get; }

        public string LastErrorMeaning { get; }

        /// <summary>The Windows service that hosts the writer (its short name), or null when not known.</summary>
        public string? Service { get; }

        /// <summary>State, last error and hosting service in one sentence, for error messages.</summary>
        public string Describe() =>
            $"'{Name}' is in state {State} with last error {VssErrors.Format(LastError)}; it is hosted by " +
            (Service == null ? "an unknown service" : $"the '{Service}' service");

        public override string ToString() => Name;
    }

    /// <summary>One component of a writer's metadata (IVssWMComponent) with its file specifications.</summary>
    internal sealed class VssComponentMetadata
    {
        public VssComponentMetadata(VssComponentType type, string? logicalPath, string name, string? caption, bool selectable, IReadOnlyList<string> fileSpecs)
        {
            Type = type;
            LogicalPath = logicalPath;
            Name = name;
            Caption = caption;
            Selectable = selectable;
            FileSpecs = fileSpecs;
        }

        public VssComponentType Type { get; }

        public string? LogicalPath { get; }

        public string Name { get; }

        public string? Caption { get; }

        public bool Selectable { get; }

        /// <summary>Path plus file specification of every file, database and log file group, as the writer declares them.</summary>
        public IReadOnlyList<string> FileSpecs { get; }

        public string FullPath => string.IsNullOrEmpty(LogicalPath) ? Name : LogicalPath + "\\" + Name;
    }

    /// <summary>A writer's identity and components (IVssExamineWriterMetadata).</summary>
    internal sealed class VssWriterMetadata
    {
        public VssWriterMetadata(Guid instanceId, Guid writerId, string name, IReadOnlyList<VssComponentMetadata> components)
        {
            InstanceId = instanceId;
            WriterId = writerId;
            Name = name;
            Components = components;
        }

        public Guid InstanceId { get; }

        public Guid WriterId { get; }

        public string Name { get; }

        public IReadOnlyList<VssComponentMetadata> Components { get; }
    }

    /// <summary>The part of VSS_SNAPSHOT_PROP the requester uses.</summary>
    internal sealed class VssSnapshotProperties
    {
        public VssSnapshotProperties(Guid snapshotId, string deviceObject, string originalVolumeName)
        {
            SnapshotId = snapshotId;
            DeviceObject = deviceObject;
            OriginalVolumeName = originalVolumeName;
        }

        public Guid SnapshotId { get; }

        /// <summary>\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN: the shadow copy's root, without a trailing separator.</summary>
        public string DeviceObject { get; }

        /// <summary>\\?\Volume{guid}\ of the volume that was copied.</summary>
        public string OriginalVolumeName { get; }
    }

    /// <summary>Where a path lives: its mount point (C:\ or a folder) and the volume's GUID name.</summary>
    internal sealed class VssVolume
    {
        public VssVolume(string mountPoint, string volumeName)
        {
            MountPoint = mountPoint;
            VolumeName = volumeName;
        }

        /// <summary>GetVolumePathNameW: the root the path is under, with a trailing separator (C:\).</summary>
        public string MountPoint { get; }

        /// <summary>GetVolumeNameForVolumeMountPointW: \\?\Volume{guid}\.</summary>
        public string VolumeName { get; }
    }
}
