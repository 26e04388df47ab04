using System;
using System.Collections.Generic;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Sources.WindowsVss.Native
{
    /// <summary>
    /// IVssBackupComponents through its vtable (slot numbers from vsbackup.h, see the interop notes).
    /// VSS_ID goes by value, MIDL/C++ bool as one byte, BOOL as four; every sub-object is released.
    /// </summary>
    [SupportedOSPlatform("windows")]
    internal sealed unsafe class VssBackupComponents : IVssBackupComponentsApi
    {
        // IVssBackupComponents
        private const int InitializeForBackupSlot = 5;
        private const int SetBackupStateSlot = 6;
        private const int GatherWriterMetadataSlot = 9;
        private const int GetWriterMetadataCountSlot = 10;
        private const int GetWriterMetadataSlot = 11;
        private const int AddComponentSlot = 13;
        private const int PrepareForBackupSlot = 14;
        private const int AbortBackupSlot = 15;
        private const int GatherWriterStatusSlot = 16;
        private const int GetWriterStatusCountSlot = 17;
        private const int FreeWriterStatusSlot = 18;
        private const int GetWriterStatusSlot = 19;
        private const int SetBackupSucceededSlot = 20;
        private const int BackupCompleteSlot = 27;
        private const int SetContextSlot = 35;
        private const int StartSnapshotSetSlot = 36;
        private const int AddToSnapshotSetSlot = 37;
        private const int DoSnapshotSetSlot = 38;
        private const int DeleteSnapshotsSlot = 39;
        private const int GetSnapshotPropertiesSlot = 42;

        // IVssExamineWriterMetadata
        private const int GetIdentitySlot = 3;
        private const int GetFileCountsSlot = 4;
        private const int GetComponentSlot = 7;

        // IVssWMComponent
        private const int GetComponentInfoSlot = 3;
        private const int FreeComponentInfoSlot = 4;
        private const int GetFileSlot = 5;
        private const int GetDatabaseFileSlot = 6;
        private const int GetDatabaseLogFileSlot = 7;

        // IVssWMFiledesc
        private const int GetPathSlot = 3;
        private const int GetFilespecSlot = 4;

        private IntPtr _instance;

        public VssBackupComponents(IntPtr instance) => _instance = instance;

        private IntPtr Instance => _instance != IntPtr.Zero ? _instance : throw new ObjectDisposedException(nameof(VssBackupComponents));

        public void InitializeForBackup() =>
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, IntPtr, int>)Slot(InitializeForBackupSlot))(Instance, IntPtr.Zero), "InitializeForBackup");

        public void SetContext(int context) =>
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, int, int>)Slot(SetContextSlot))(Instance, context), "SetContext");

        public void SetBackupState(bool selectComponents, bool bootableSystemState, VssBackupType backupType, bool partialFileSupport) =>
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, byte, byte, int, byte, int>)Slot(SetBackupStateSlot))(
                Instance, Bool(selectComponents), Bool(bootableSystemState), (int)backupType, Bool(partialFileSupport)), "SetBackupState");

        public IVssAsyncOperation GatherWriterMetadata() => StartAsync(GatherWriterMetadataSlot, "GatherWriterMetadata");

        public IReadOnlyList<VssWriterMetadata> GetWriterMetadata()
        {
            uint count = 0;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint*, int>)Slot(GetWriterMetadataCountSlot))(Instance, &count), "GetWriterMetadataCount");
            var writers = new List<VssWriterMetadata>((int)count);
            for (uint index = 0; index < count; index++)
            {
                Guid instanceId;
                IntPtr examine = IntPtr.Zero;
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint, Guid*, IntPtr*, int>)Slot(GetWriterMetadataSlot))(Instance, index, &instanceId, &examine), "GetWriterMetadata");
                try
                {
                    writers.Add(ReadWriterMetadata(examine));
                }
                finally
                {
                    Com.Release(examine);
                }
            }

            return writers;
        }

        public void AddComponent(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name)
        {
            fixed (char* path = logicalPath)
            fixed (char* component = name)
            {
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid, Guid, int, char*, char*, int>)Slot(AddComponentSlot))(
                    Instance, instanceId, writerId, (int)type, path, component), "AddComponent");
            }
        }

        public Guid StartSnapshotSet()
        {
            Guid setId;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid*, int>)Slot(StartSnapshotSetSlot))(Instance, &setId), "StartSnapshotSet");
            return setId;
        }

        public Guid AddToSnapshotSet(string volumeName)
        {
            Guid snapshotId;
            fixed (char* volume = volumeName)
            {
                // GUID_NULL: the system chooses the provider.
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, char*, Guid, Guid*, int>)Slot(AddToSnapshotSetSlot))(Instance, volume, Guid.Empty, &snapshotId), "AddToSnapshotSet");
            }

            return snapshotId;
        }

        public IVssAsyncOperation PrepareForBackup() => StartAsync(PrepareForBackupSlot, "PrepareForBackup");

        public IVssAsyncOperation GatherWriterStatus() => StartAsync(GatherWriterStatusSlot, "GatherWriterStatus");

        public IReadOnlyList<VssWriterInfo> GetWriterStatus(Func<string, string?> serviceOfWriter)
        {
            uint count = 0;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint*, int>)Slot(GetWriterStatusCountSlot))(Instance, &count), "GetWriterStatusCount");
            var writers = new List<VssWriterInfo>((int)count);
            try
            {
                for (uint index = 0; index < count; index++)
                {
                    Guid instanceId;
                    Guid writerId;
                    IntPtr name = IntPtr.Zero;
                    int state;
                    int failure;
                    Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint, Guid*, Guid*, IntPtr*, int*, int*, int>)Slot(GetWriterStatusSlot))(
                        Instance, index, &instanceId, &writerId, &name, &state, &failure), "GetWriterStatus");
                    string writerName = Com.TakeBstr(name) ?? writerId.ToString();
                    writers.Add(new VssWriterInfo(writerName, writerId, instanceId, (VssWriterState)state, failure, serviceOfWriter(writerName)));
                }
            }
            finally
            {
                _ = ((delegate* unmanaged[Stdcall]<IntPtr, int>)Slot(FreeWriterStatusSlot))(Instance);
            }

            return writers;
        }

        public IVssAsyncOperation DoSnapshotSet() => StartAsync(DoSnapshotSetSlot, "DoSnapshotSet");

        public VssSnapshotProperties GetSnapshotProperties(Guid snapshotId)
        {
            VssSnapshotProp properties = default;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid, VssSnapshotProp*, int>)Slot(GetSnapshotPropertiesSlot))(Instance, snapshotId, &properties), "GetSnapshotProperties");
            try
            {
                return new VssSnapshotProperties(properties.SnapshotId, Com.PeekString(properties.SnapshotDeviceObject) ?? "", Com.PeekString(properties.OriginalVolumeName) ?? "");
            }
            finally
            {
                VssApiLibrary.FreeSnapshotProperties(&properties);
            }
        }

        public void SetBackupSucceeded(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name, bool succeeded)
        {
            fixed (char* path = logicalPath)
            fixed (char* component = name)
            {
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid, Guid, int, char*, char*, byte, int>)Slot(SetBackupSucceededSlot))(
                    Instance, instanceId, writerId, (int)type, path, component, Bool(succeeded)), "SetBackupSucceeded");
            }
        }

        public IVssAsyncOperation BackupComplete() => StartAsync(BackupCompleteSlot, "BackupComplete");

        public void AbortBackup() =>
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, int>)Slot(AbortBackupSlot))(Instance), "AbortBackup");

        public int DeleteSnapshots(Guid snapshotSetId)
        {
            int deleted = 0;
            Guid notDeleted;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid, int, int, int*, Guid*, int>)Slot(DeleteSnapshotsSlot))(
                Instance, snapshotSetId, VssConstants.ObjectSnapshotSet, 1, &deleted, &notDeleted), "DeleteSnapshots");
            return deleted;
        }

        public void Dispose()
        {
            IntPtr instance = _instance;
            _instance = IntPtr.Zero;
            Com.Release(instance);
        }

        private static byte Bool(bool value) => value ? (byte)1 : (byte)0;

        private static VssWriterMetadata ReadWriterMetadata(IntPtr examine)
        {
            Guid instanceId;
            Guid writerId;
            IntPtr name = IntPtr.Zero;
            int usage;
            int source;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, Guid*, Guid*, IntPtr*, int*, int*, int>)Com.Slot(examine, GetIdentitySlot))(
                examine, &instanceId, &writerId, &name, &usage, &source), "IVssExamineWriterMetadata.GetIdentity");
            string writerName = Com.TakeBstr(name) ?? writerId.ToString();

            uint includeFiles;
            uint excludeFiles;
            uint componentCount;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint*, uint*, uint*, int>)Com.Slot(examine, GetFileCountsSlot))(
                examine, &includeFiles, &excludeFiles, &componentCount), "IVssExamineWriterMetadata.GetFileCounts");
            var components = new List<VssComponentMetadata>((int)componentCount);
            for (uint index = 0; index < componentCount; index++)
            {
                IntPtr component = IntPtr.Zero;
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint, IntPtr*, int>)Com.Slot(examine, GetComponentSlot))(examine, index, &component), "IVssExamineWriterMetadata.GetComponent");
                try
                {
                    components.Add(ReadComponent(component));
                }
                finally
                {
                    Com.Release(component);
                }
            }

            return new VssWriterMetadata(instanceId, writerId, writerName, components);
        }

        private static VssComponentMetadata ReadComponent(IntPtr component)
        {
            VssComponentInfo* info = null;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, VssComponentInfo**, int>)Com.Slot(component, GetComponentInfoSlot))(component, &info), "IVssWMComponent.GetComponentInfo");
            try
            {
                var fileSpecs = new List<string>();
                ReadFiles(component, GetFileSlot, info->FileCount, fileSpecs);
                ReadFiles(component, GetDatabaseFileSlot, info->DatabaseCount, fileSpecs);
                ReadFiles(component, GetDatabaseLogFileSlot, info->LogFileCount, fileSpecs);
                return new VssComponentMetadata((VssComponentType)info->Type, Com.PeekBstr(info->LogicalPath), Com.PeekBstr(info->ComponentName) ?? "",
                    Com.PeekBstr(info->Caption), info->Selectable != 0, fileSpecs);
            }
            finally
            {
                _ = ((delegate* unmanaged[Stdcall]<IntPtr, VssComponentInfo*, int>)Com.Slot(component, FreeComponentInfoSlot))(component, info);
            }
        }

        private static void ReadFiles(IntPtr component, int slot, uint count, List<string> fileSpecs)
        {
            for (uint index = 0; index < count; index++)
            {
                IntPtr descriptor = IntPtr.Zero;
                Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, uint, IntPtr*, int>)Com.Slot(component, slot))(component, index, &descriptor), "IVssWMComponent.GetFile");
                try
                {
                    IntPtr path = IntPtr.Zero;
                    IntPtr spec = IntPtr.Zero;
                    Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, IntPtr*, int>)Com.Slot(descriptor, GetPathSlot))(descriptor, &path), "IVssWMFiledesc.GetPath");
                    string folder = Com.TakeBstr(path) ?? "";
                    Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, IntPtr*, int>)Com.Slot(descriptor, GetFilespecSlot))(descriptor, &spec), "IVssWMFiledesc.GetFilespec");
                    fileSpecs.Add(folder.TrimEnd('\\') + "\\" + (Com.TakeBstr(spec) ?? "*"));
                }
                finally
                {
                    Com.Release(descriptor);
                }
            }
        }

        private IVssAsyncOperation StartAsync(int slot, string method)
        {
            IntPtr operation = IntPtr.Zero;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, IntPtr*, int>)Slot(slot))(Instance, &operation), method);
            return new VssAsync(operation, method);
        }

        private void* Slot(int index) => Com.Slot(Instance, index);
    }

    /// <summary>IVssAsync: 3 Cancel, 4 Wait(DWORD ms), 5 QueryStatus(HRESULT*, INT* reserved).</summary>
    [SupportedOSPlatform("windows")]
    internal sealed unsafe class VssAsync : IVssAsyncOperation
    {
        private const int CancelSlot = 3;
        private const int WaitSlot = 4;
        private const int QueryStatusSlot = 5;
        private const int WaitTimedOut = unchecked((int)0x80070102); // HRESULT_FROM_WIN32(WAIT_TIMEOUT)
        private const int TimedOut = unchecked((int)0x800705B4); // HRESULT_FROM_WIN32(ERROR_TIMEOUT)

        private readonly string _method;
        private IntPtr _instance;

        public VssAsync(IntPtr instance, string method)
        {
            _instance = instance;
            _method = method;
        }

        private IntPtr Instance => _instance != IntPtr.Zero ? _instance : throw new ObjectDisposedException(nameof(VssAsync));

        public void Wait(TimeSpan slice)
        {
            int result = ((delegate* unmanaged[Stdcall]<IntPtr, uint, int>)Com.Slot(Instance, WaitSlot))(Instance, VssConstants.WaitMilliseconds(slice));
            // What Wait returns when the slice runs out is not documented; the operation's own outcome comes from QueryStatus.
            if (result != WaitTimedOut && result != TimedOut)
            {
                Com.Check(result, _method + " (IVssAsync.Wait)");
            }
        }

        public int QueryStatus()
        {
            int status;
            // The reserved argument must be NULL.
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr, int*, int*, int>)Com.Slot(Instance, QueryStatusSlot))(Instance, &status, null), _method + " (IVssAsync.QueryStatus)");
            return status;
        }

        // Cancel answers VSS_S_ASYNC_FINISHED or an error when the operation already ended: nothing to do then.
        public void Cancel() => _ = ((delegate* unmanaged[Stdcall]<IntPtr, int>)Com.Slot(Instance, CancelSlot))(Instance);

        public void Dispose()
        {
            IntPtr instance = _instance;
            _instance = IntPtr.Zero;
            Com.Release(instance);
        }
    }
}
