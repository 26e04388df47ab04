using System;
using System.Collections.Generic;
using System.Linq;
using VmQuiesce.Core.Sources.WindowsVss;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    /// <summary>
    /// A scripted IVssHost + IVssBackupComponents: logs every call in order, fails the Nth call of a method
    /// (at the call, or as the asynchronous operation's status), keeps operations pending, and counts the
    /// COM objects alive so a test can prove each one was released.
    /// </summary>
    internal sealed class FakeVss : IVssHost
    {
        public static readonly Guid VMwareInstance = new Guid("11111111-0000-0000-0000-000000000001");
        public static readonly Guid VMwareWriterId = new Guid("11111111-0000-0000-0000-000000000002");
        public static readonly Guid HyperVInstance = new Guid("22222222-0000-0000-0000-000000000001");
        public static readonly Guid SystemInstance = new Guid("33333333-0000-0000-0000-000000000001");
        public static readonly Guid SystemWriterId = new Guid("33333333-0000-0000-0000-000000000002");
        public static readonly Guid SnapshotSetId = new Guid("99999999-0000-0000-0000-000000000000");

        private readonly Dictionary<string, int> _counts = new Dictionary<string, int>();
        private readonly List<(string Method, int Occurrence, int HResult, bool AsStatus)> _failures = new List<(string, int, int, bool)>();
        private readonly HashSet<string> _neverFinish = new HashSet<string>();
        private readonly Dictionary<Guid, string> _volumeOfSnapshot = new Dictionary<Guid, string>();
        private int _gatherStatusCount;
        private int _snapshotCount;

        public List<string> Calls { get; } = new List<string>();

        public int LiveObjects { get; private set; }

        public int ComponentsReleased { get; private set; }

        public bool Is32BitProcessOn64BitWindows { get; set; }

        public bool HasBackupRights { get; set; } = true;

        public string? ComSecurityNote { get; set; }

        public int? CreateFailure { get; set; }

        /// <summary>Replaces the device path GetSnapshotProperties reports (to mimic a misread structure).</summary>
        public string? DeviceObjectOverride { get; set; }

        public Dictionary<string, string> ServicesByDisplayName { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["VMware VSS Writer Service"] = "vmvss",
        };

        public List<VssWriterMetadata> Writers { get; } = new List<VssWriterMetadata>
        {
            new VssWriterMetadata(SystemInstance, SystemWriterId, "System Writer", new[]
            {
                new VssComponentMetadata(VssComponentType.FileGroup, null, "System Files", null, false, new[] { "C:\\Windows\\System32\\*" }),
            }),
            new VssWriterMetadata(VMwareInstance, VMwareWriterId, "VMware VSS Writer", new[]
            {
                new VssComponentMetadata(VssComponentType.FileGroup, "VMs", "vm-42", "Web server", true, new[] { "D:\\VMs\\web\\*" }),
                new VssComponentMetadata(VssComponentType.FileGroup, "VMs", "vm-43", "db", true, new[] { "D:\\VMs\\db\\*" }),
            }),
            new VssWriterMetadata(HyperVInstance, HostVssWriter.HyperV.Id!.Value, "Microsoft Hyper-V VSS Writer", new[]
            {
                new VssComponentMetadata(VssComponentType.FileGroup, null, "5f2c3a10-0000-0000-0000-000000000000", "Online\\hv1", true, new[] { "E:\\Hyper-V\\hv1\\*" }),
            }),
        };

        /// <summary>What ReadDiagnostics returns: VSS's diagnostic records, which <see cref="OnDoSnapshotSet"/> may add to.</summary>
        public List<VssDiagnosticValue> Diagnostics { get; } = new List<VssDiagnosticValue>();

        /// <summary>Thrown by ReadDiagnostics when set.</summary>
        public Exception? DiagnosticsFailure { get; set; }

        /// <summary>Runs when DoSnapshotSet is called, where VSS would freeze and thaw the writers.</summary>
        public Action<FakeVss>? OnDoSnapshotSet { get; set; }

        /// <summary>The state and last error each writer reports at the Nth GatherWriterStatus (1-based); default Stable, S_OK.</summary>
        public Func<int, string, (VssWriterState State, int LastError)> WriterState { get; set; } = (_, _) => (VssWriterState.Stable, 0);

        /// <summary>The Nth call of <paramref name="method"/> throws <paramref name="hresult"/>.</summary>
        public FakeVss FailOn(string method, int hresult, int occurrence = 1)
        {
            _failures.Add((method, occurrence, hresult, false));
            return this;
        }

        /// <summary>The Nth asynchronous <paramref name="method"/> starts but ends with <paramref name="hresult"/> as its status.</summary>
        public FakeVss FailAsync(string method, int hresult, int occurrence = 1)
        {
            _failures.Add((method, occurrence, hresult, true));
            return this;
        }

        /// <summary>The asynchronous <paramref name="method"/> stays pending until cancelled.</summary>
        public FakeVss NeverFinish(string method)
        {
            _neverFinish.Add(method);
            return this;
        }

        public string? InitializeComSecurity() => ComSecurityNote;

        public IVssBackupComponentsApi CreateBackupComponents()
        {
            Calls.Add("Create");
            if (CreateFailure.HasValue)
            {
                throw new VssCallException("CreateVssBackupComponents", CreateFailure.Value);
            }

            LiveObjects++;
            return new Components(this);
        }

        public VssVolume GetVolume(string path) => new VssVolume(path.Substring(0, 3), $"\\\\?\\Volume{{{char.ToLowerInvariant(path[0])}}}\\");

        public string? FindServiceByDisplayName(string displayName) =>
            ServicesByDisplayName.TryGetValue(displayName, out string? service) ? service : null;

        public IReadOnlyList<VssDiagnosticValue> ReadDiagnostics() =>
            DiagnosticsFailure != null ? throw DiagnosticsFailure : Diagnostics.ToList();

        /// <summary>A VSS diagnostic record as a 64-bit (72 bytes) or 32-bit (64 bytes) process writes it.</summary>
        public static VssDiagnosticValue DiagnosticRecord(string source, string name, DateTime timeUtc, Guid snapshotSetId, bool enter, int size = 72)
        {
            var data = new byte[size];
            BitConverter.GetBytes(size).CopyTo(data, 0);
            BitConverter.GetBytes(timeUtc.ToFileTimeUtc()).CopyTo(data, 8);
            BitConverter.GetBytes(4242).CopyTo(data, 16);
            BitConverter.GetBytes(enter ? 1 : 0).CopyTo(data, 28);
            snapshotSetId.ToByteArray().CopyTo(data, 40);
            return new VssDiagnosticValue(source, name, data);
        }

        /// <summary>Logs the call, then throws when it is scripted to fail; returns the scripted async status failure, if any.</summary>
        private int? Enter(string method, string logged)
        {
            Calls.Add(logged);
            _counts.TryGetValue(method, out int count);
            _counts[method] = ++count;
            foreach (var failure in _failures.Where(f => f.Method == method && f.Occurrence == count))
            {
                if (!failure.AsStatus)
                {
                    throw new VssCallException(method, failure.HResult);
                }

                return failure.HResult;
            }

            return null;
        }

        private IVssAsyncOperation Async(string method)
        {
            int? status = Enter(method, method);
            LiveObjects++;
            return new Operation(this, method, status ?? (_neverFinish.Contains(method) ? VssConstants.AsyncPending : VssConstants.AsyncFinished));
        }

        private sealed class Operation : IVssAsyncOperation
        {
            private readonly FakeVss _fake;
            private readonly string _method;
            private int _status;
            private bool _released;

            public Operation(FakeVss fake, string method, int status)
            {
                _fake = fake;
                _method = method;
                _status = status;
            }

            public void Wait(TimeSpan slice)
            {
            }

            public int QueryStatus() => _status;

            public void Cancel()
            {
                _fake.Calls.Add(_method + ".Cancel");
                if (_status == VssConstants.AsyncPending)
                {
                    _status = VssConstants.AsyncCancelled;
                }
            }

            public void Dispose()
            {
                if (_released)
                {
                    throw new InvalidOperationException(_method + "'s IVssAsync was released twice.");
                }

                _released = true;
                _fake.LiveObjects--;
            }
        }

        private sealed class Components : IVssBackupComponentsApi
        {
            private readonly FakeVss _fake;
            private bool _released;

            public Components(FakeVss fake) => _fake = fake;

            public void InitializeForBackup() => _fake.Enter("InitializeForBackup", "InitializeForBackup");

            public void SetContext(int context) => _fake.Enter("SetContext", $"SetContext({context})");

            public void SetBackupState(bool selectComponents, bool bootableSystemState, VssBackupType backupType, bool partialFileSupport) =>
                _fake.Enter("SetBackupState", $"SetBackupState({selectComponents},{bootableSystemState},{backupType},{partialFileSupport})");

            public IVssAsyncOperation GatherWriterMetadata() => _fake.Async("GatherWriterMetadata");

            public IReadOnlyList<VssWriterMetadata> GetWriterMetadata()
            {
                _fake.Enter("GetWriterMetadata", "GetWriterMetadata");
                return _fake.Writers;
            }

            public void AddComponent(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name) =>
                _fake.Enter("AddComponent", $"AddComponent({WriterName(instanceId, writerId)},{type},{logicalPath},{name})");

            public Guid StartSnapshotSet()
            {
                _fake.Enter("StartSnapshotSet", "StartSnapshotSet");
                return SnapshotSetId;
            }

            public Guid AddToSnapshotSet(string volumeName)
            {
                _fake.Enter("AddToSnapshotSet", $"AddToSnapshotSet({volumeName})");
                var snapshotId = new Guid($"88888888-0000-0000-0000-0000000000{(int)volumeName[11]:x2}");
                _fake._volumeOfSnapshot[snapshotId] = volumeName;
                return snapshotId;
            }

            public IVssAsyncOperation PrepareForBackup() => _fake.Async("PrepareForBackup");

            public IVssAsyncOperation GatherWriterStatus()
            {
                _fake._gatherStatusCount++;
                return _fake.Async("GatherWriterStatus");
            }

            public IReadOnlyList<VssWriterInfo> GetWriterStatus(Func<string, string?> serviceOfWriter)
            {
                _fake.Enter("GetWriterStatus", "GetWriterStatus");
                return _fake.Writers.Select(w =>
                {
                    (VssWriterState state, int lastError) = _fake.WriterState(_fake._gatherStatusCount, w.Name);
                    return new VssWriterInfo(w.Name, w.WriterId, w.InstanceId, state, lastError, serviceOfWriter(w.Name));
                }).ToList();
            }

            public IVssAsyncOperation DoSnapshotSet()
            {
                IVssAsyncOperation operation = _fake.Async("DoSnapshotSet");
                _fake.OnDoSnapshotSet?.Invoke(_fake);
                return operation;
            }

            public VssSnapshotProperties GetSnapshotProperties(Guid snapshotId)
            {
                _fake.Enter("GetSnapshotProperties", "GetSnapshotProperties");
                _fake._snapshotCount++;
                return new VssSnapshotProperties(snapshotId, _fake.DeviceObjectOverride ?? $"\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy{_fake._snapshotCount}", _fake._volumeOfSnapshot[snapshotId]);
            }

            public void SetBackupSucceeded(Guid instanceId, Guid writerId, VssComponentType type, string? logicalPath, string name, bool succeeded) =>
                _fake.Enter("SetBackupSucceeded", $"SetBackupSucceeded({WriterName(instanceId, writerId)},{name},{succeeded})");

            public IVssAsyncOperation BackupComplete() => _fake.Async("BackupComplete");

            public void AbortBackup() => _fake.Enter("AbortBackup", "AbortBackup");

            public int DeleteSnapshots(Guid snapshotSetId)
            {
                _fake.Enter("DeleteSnapshots", "DeleteSnapshots");
                return 1;
            }

            public void Dispose()
            {
                if (_released)
                {
                    throw new InvalidOperationException("IVssBackupComponents was released twice.");
                }

                _released = true;
                _fake.Calls.Add("Release");
                _fake.LiveObjects--;
                _fake.ComponentsReleased++;
            }

            private string WriterName(Guid instanceId, Guid writerId) =>
                _fake.Writers.Single(w => w.InstanceId == instanceId && w.WriterId == writerId).Name;
        }
    }
}
