using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Threading;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>What a requester run should do: which writer and VMs take part, which files' volumes are copied.</summary>
    internal sealed class VssSnapshotRequest
    {
        /// <summary>Copy by default: writers do not truncate application logs (what VMware Tools does).</summary>
        public VssBackupType BackupType { get; init; } = VssBackupType.Copy;

        /// <summary>The VM writer whose components are selected; null for a shadow copy without a VM writer.</summary>
        public HostVssWriter? Writer { get; init; }

        /// <summary>The VMs whose writer components are selected, by name.</summary>
        public IReadOnlyList<string> VmNames { get; init; } = Array.Empty<string>();

        /// <summary>Full host paths of the files to read; every volume holding one goes into the shadow copy set.</summary>
        public IReadOnlyList<string> Paths { get; init; } = Array.Empty<string>();

        /// <summary>When true, a VM the writer has no component for stops the run before any shadow copy is made.</summary>
        public bool RequireWriterComponents { get; init; }

        /// <summary>How long metadata, prepare, status and completion may take.</summary>
        public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromMinutes(10);

        /// <summary>
        /// How long DoSnapshotSet may take. VSS itself bounds the freeze (writers 60 s, the kernel's
        /// flush-and-hold 10 s); this only guards against a hung provider.
        /// </summary>
        public TimeSpan SnapshotTimeout { get; init; } = TimeSpan.FromMinutes(5);

        /// <summary>How often a pending asynchronous operation is checked for timeout and cancellation.</summary>
        public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

        /// <summary>Runs right before DoSnapshotSet, inside which the writers freeze; a throw fails the run before any freeze.</summary>
        public Action<CancellationToken>? PreFreeze { get; init; }

        /// <summary>Runs once DoSnapshotSet has returned (the writers have thawed), whenever <see cref="PreFreeze"/> ran.</summary>
        public Action<CancellationToken>? PostThaw { get; init; }

        /// <summary>The object errors name (the VM); "VSS" when listing writers.</summary>
        public object Target { get; init; } = "VSS";
    }

    /// <summary>A writer component added to the backup.</summary>
    internal sealed class VssSelectedComponent
    {
        public VssSelectedComponent(VssWriterMetadata writer, VssComponentMetadata component)
        {
            Writer = writer;
            Component = component;
        }

        public VssWriterMetadata Writer { get; }

        public VssComponentMetadata Component { get; }

        /// <summary>
        /// The Hyper-V writer backs up a VM whose guest cannot take part (no integration services, no VSS
        /// inside) by saving its state for the shadow copy; it says so in the caption ("Offline\name", on
        /// Windows Server 2008 R2 "Backup Using Saved State\name"). Nothing inside the guest was quiesced.
        /// </summary>
        public bool IsSavedStateBackup =>
            HostVssWriter.HyperV.Matches(Writer.WriterId, Writer.Name)
            && SavedStateCaptionPrefixes.Any(prefix => (Component.Caption ?? string.Empty).StartsWith(prefix, StringComparison.OrdinalIgnoreCase));

        private static readonly string[] SavedStateCaptionPrefixes = { "Offline\\", "Backup Using Saved State\\" };

        public override string ToString() => $"{Writer.Name}: {Component.Caption ?? Component.FullPath}";
    }

    /// <summary>A volume of the shadow copy set and its shadow copy.</summary>
    internal sealed class VssShadowVolume
    {
        public VssShadowVolume(VssVolume volume, Guid snapshotId)
        {
            Volume = volume;
            SnapshotId = snapshotId;
        }

        public VssVolume Volume { get; }

        public Guid SnapshotId { get; }

        /// <summary>Set once DoSnapshotSet has made the shadow copy.</summary>
        public string? DeviceObject { get; set; }
    }

    /// <summary>
    /// The VSS requester state machine, written once over <see cref="IVssBackupComponentsApi"/>. One instance
    /// is one IVssBackupComponents (single use, as VSS requires). <see cref="Open"/> runs everything up to the
    /// shadow copies; the caller copies through <see cref="ShadowPathOf"/>; <see cref="Complete"/> finishes.
    /// Every failure after StartSnapshotSet calls AbortBackup, shadow copies are deleted, and the COM object
    /// is released on every path.
    /// </summary>
    internal sealed class VssSnapshotSession : IDisposable
    {
        private readonly IVssHost _host;
        private readonly VssSnapshotRequest _request;
        private readonly Action<string> _warn;
        private readonly Action<string> _verbose;
        private readonly Dictionary<string, string?> _services = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        private readonly Dictionary<string, VssVolume> _volumeOfPath = new Dictionary<string, VssVolume>(StringComparer.OrdinalIgnoreCase);
        private readonly List<VssShadowVolume> _volumes = new List<VssShadowVolume>();
        private readonly List<VssSelectedComponent> _selected = new List<VssSelectedComponent>();
        private readonly List<string> _warnings = new List<string>();
        private IVssBackupComponentsApi? _components;
        private string? _comSecurityNote;
        private bool _abortNeeded;
        private bool _snapshotsExist;

        private VssSnapshotSession(IVssHost host, VssSnapshotRequest request, Action<string>? warn, Action<string>? verbose)
        {
            _host = host;
            _request = request;
            _warn = warn ?? (_ => { });
            _verbose = verbose ?? (_ => { });
        }

        public Guid SnapshotSetId { get; private set; }

        public IReadOnlyList<VssShadowVolume> Volumes => _volumes;

        /// <summary>The VM writer components added to the backup; empty when the shadow copy is without the VM writer.</summary>
        public IReadOnlyList<VssSelectedComponent> SelectedComponents => _selected;

        /// <summary>Every writer's status after DoSnapshotSet.</summary>
        public IReadOnlyList<VssWriterInfo> WriterStatus { get; private set; } = Array.Empty<VssWriterInfo>();

        /// <summary>How long DoSnapshotSet took: the writers' freeze and thaw and the kernel's flush-and-hold happen inside it.</summary>
        public TimeSpan SnapshotDuration { get; private set; }

        /// <summary>The frozen window from VSS's diagnostic records, or <see cref="SnapshotDuration"/> when they cannot tell; set with the shadow copies.</summary>
        public VssFrozenWindow? FrozenWindow { get; private set; }

        public IReadOnlyList<string> Warnings => _warnings;

        public bool Completed { get; private set; }

        /// <summary>Every writer on the machine with its status (what Get-VssWriter shows).</summary>
        public static IReadOnlyList<VssWriterInfo> ListWriters(IVssHost host, VssSnapshotRequest request, Action<string>? warn, Action<string>? verbose, CancellationToken cancel)
        {
            using var session = new VssSnapshotSession(host, request, warn, verbose);
            session.Start();
            session.Initialize(cancel);
            IReadOnlyList<VssWriterInfo> writers = session.GatherStatus("GatherWriterMetadata", failOnInvolvedWriter: false, cancel);
            session.Complete(false, cancel);
            return writers;
        }

        /// <summary>Runs the sequence up to and including the shadow copies' properties.</summary>
        public static VssSnapshotSession Open(IVssHost host, VssSnapshotRequest request, Action<string>? warn, Action<string>? verbose, CancellationToken cancel)
        {
            var session = new VssSnapshotSession(host, request, warn, verbose);
            try
            {
                // Read-only lookups first: a bad path fails before VSS is asked for anything.
                session.ResolveVolumes();
                session.Start();
                session.Snapshot(cancel);
                return session;
            }
            catch
            {
                session.Fail();
                throw;
            }
        }

        /// <summary>Where <paramref name="hostPath"/> (one of the request's paths) can be read inside the shadow copy.</summary>
        public string ShadowPathOf(string hostPath)
        {
            if (!_volumeOfPath.TryGetValue(hostPath, out VssVolume? volume))
            {
                throw new ArgumentException($"'{hostPath}' is not one of the paths the shadow copy set was made for.", nameof(hostPath));
            }

            VssShadowVolume shadow = _volumes.First(v => string.Equals(v.Volume.VolumeName, volume.VolumeName, StringComparison.OrdinalIgnoreCase));
            if (shadow.DeviceObject == null)
            {
                throw new InvalidOperationException("The shadow copies do not exist yet.");
            }

            return shadow.DeviceObject.TrimEnd('\\') + "\\" + hostPath.Substring(volume.MountPoint.Length).TrimStart('\\');
        }

        /// <summary>
        /// Success: SetBackupSucceeded for every component, BackupComplete, writer status, DeleteSnapshots.
        /// Failure: AbortBackup and DeleteSnapshots. The COM object is released either way.
        /// </summary>
        public void Complete(bool success, CancellationToken cancel)
        {
            if (Completed)
            {
                return;
            }

            Completed = true;
            if (!success)
            {
                Fail();
                return;
            }

            try
            {
                foreach (VssSelectedComponent selected in _selected)
                {
                    VssComponentMetadata component = selected.Component;
                    Call("SetBackupSucceeded", c => c.SetBackupSucceeded(selected.Writer.InstanceId, selected.Writer.WriterId, component.Type, component.LogicalPath, component.Name, true));
                }

                Await("BackupComplete", c => c.BackupComplete(), _request.OperationTimeout, cancel);
                _abortNeeded = false;
            }
            catch
            {
                Fail();
                throw;
            }

            // The backup is complete now: a writer failing its post-backup work is worth a warning, not a failed backup.
            try
            {
                GatherStatus("BackupComplete", failOnInvolvedWriter: false, cancel);
            }
            catch (VmQuiesceException failure)
            {
                Warn(failure.Message);
            }
            finally
            {
                DeleteSnapshotsReporting();
                Release();
            }
        }

        public void Dispose() => Complete(false, CancellationToken.None);

        private void ResolveVolumes()
        {
            foreach (string path in _request.Paths)
            {
                VssVolume volume = _host.GetVolume(path);
                if (!path.StartsWith(volume.MountPoint, StringComparison.OrdinalIgnoreCase))
                {
                    throw new VmQuiesceException("VolumeNotFound", FailureKind.ObjectNotFound,
                        $"The path '{path}' is not under its volume's mount point '{volume.MountPoint}'; a full local path was expected.", path);
                }

                _volumeOfPath[path] = volume;
            }
        }

        private void Start()
        {
            if (_host.Is32BitProcessOn64BitWindows)
            {
                throw new VmQuiesceException("VssWow64NotSupported", FailureKind.NotSupported,
                    "VSS cannot be used from a 32-bit process on 64-bit Windows; this PowerShell is 32-bit.", _request.Target)
                {
                    Remedy = "Run the 64-bit PowerShell (pwsh, or %SystemRoot%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe).",
                };
            }

            if (!_host.HasBackupRights)
            {
                throw new VmQuiesceException("VssRequiresElevation", FailureKind.PermissionDenied,
                    "A VSS requester must run as an Administrator (elevated) or a Backup Operator; this process is neither.", _request.Target)
                {
                    Remedy = "Start PowerShell with 'Run as administrator', or run as a member of Backup Operators.",
                };
            }

            // Usually too late inside PowerShell, which is fine unless writers then fail: the note goes to
            // verbose output and into a writer failure's remedy.
            _comSecurityNote = _host.InitializeComSecurity();
            if (_comSecurityNote != null)
            {
                _verbose(_comSecurityNote);
            }

            try
            {
                _components = _host.CreateBackupComponents();
            }
            catch (VssCallException failure)
            {
                throw VssErrors.ToException(failure.HResult, "CreateVssBackupComponents", _request.Target);
            }
        }

        private void Initialize(CancellationToken cancel)
        {
            Call("InitializeForBackup", c => c.InitializeForBackup());
            Call("SetContext", c => c.SetContext(VssConstants.ContextBackup));
            Call("SetBackupState", c => c.SetBackupState(true, false, _request.BackupType, false));
            Await("GatherWriterMetadata", c => c.GatherWriterMetadata(), _request.OperationTimeout, cancel);
        }

        private void Snapshot(CancellationToken cancel)
        {
            Initialize(cancel);
            IReadOnlyList<VssWriterMetadata> metadata = Call("GetWriterMetadata", c => c.GetWriterMetadata());
            SelectComponents(metadata);
            foreach (VssSelectedComponent selected in _selected)
            {
                VssComponentMetadata component = selected.Component;
                Call("AddComponent", c => c.AddComponent(selected.Writer.InstanceId, selected.Writer.WriterId, component.Type, component.LogicalPath, component.Name));
            }

            SnapshotSetId = Call("StartSnapshotSet", c => c.StartSnapshotSet());
            _abortNeeded = true;
            foreach (VssVolume volume in _volumeOfPath.Values.GroupBy(v => v.VolumeName, StringComparer.OrdinalIgnoreCase).Select(g => g.First()))
            {
                _volumes.Add(new VssShadowVolume(volume, Call("AddToSnapshotSet", c => c.AddToSnapshotSet(volume.VolumeName))));
            }

            Await("PrepareForBackup", c => c.PrepareForBackup(), _request.OperationTimeout, cancel);
            GatherStatus("PrepareForBackup", failOnInvolvedWriter: true, cancel);

            _request.PreFreeze?.Invoke(cancel);
            DateTime snapshotStarted;
            try
            {
                snapshotStarted = DateTime.UtcNow;
                var clock = Stopwatch.StartNew();
                Await("DoSnapshotSet", c => c.DoSnapshotSet(), _request.SnapshotTimeout, cancel);
                SnapshotDuration = clock.Elapsed;
                _snapshotsExist = true;
            }
            catch
            {
                RunPostThawAfterFailure(cancel);
                throw;
            }

            _request.PostThaw?.Invoke(cancel);

            WriterStatus = GatherStatus("DoSnapshotSet", failOnInvolvedWriter: true, cancel);
            FrozenWindow = MeasureFrozenWindow(snapshotStarted);
            _verbose(FrozenWindow.Explanation);
            foreach (VssShadowVolume shadow in _volumes)
            {
                VssSnapshotProperties properties = Call("GetSnapshotProperties", c => c.GetSnapshotProperties(shadow.SnapshotId));
                CheckProperties(shadow, properties);
                shadow.DeviceObject = properties.DeviceObject;
            }
        }

        /// <summary>Read after the writers' status, by which time each writer has recorded leaving its thaw.</summary>
        private VssFrozenWindow MeasureFrozenWindow(DateTime snapshotStarted)
        {
            IReadOnlyList<VssDiagnosticValue> records;
            try
            {
                records = _host.ReadDiagnostics();
            }
            catch (VmQuiesceException failure)
            {
                // The records only sharpen a figure that DoSnapshotSet's duration already bounds.
                _verbose("VSS's diagnostic records could not be read: " + failure.Message);
                records = Array.Empty<VssDiagnosticValue>();
            }

            IReadOnlyCollection<string> writers = _selected.Select(s => s.Writer.Name).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
            return VssFrozenWindow.FromRecords(records, SnapshotSetId, writers, snapshotStarted, DateTime.UtcNow, SnapshotDuration);
        }

        /// <summary>
        /// The interop was written without a Windows machine to try it on: properties that do not describe the
        /// volume that was added stop the run loudly instead of reading the wrong place.
        /// </summary>
        private void CheckProperties(VssShadowVolume shadow, VssSnapshotProperties properties)
        {
            if (!properties.DeviceObject.StartsWith("\\\\?\\GLOBALROOT\\Device\\", StringComparison.OrdinalIgnoreCase)
                || !string.Equals(properties.OriginalVolumeName, shadow.Volume.VolumeName, StringComparison.OrdinalIgnoreCase))
            {
                throw new VmQuiesceException("VssUnexpectedSnapshotProperties", FailureKind.InvalidData,
                    $"VSS described the shadow copy of '{shadow.Volume.VolumeName}' as device '{properties.DeviceObject}' of volume '{properties.OriginalVolumeName}'; " +
                    "a \\\\?\\GLOBALROOT\\Device\\... path of the same volume was expected. Nothing was read.", _request.Target);
            }
        }

        private void RunPostThawAfterFailure(CancellationToken cancel)
        {
            try
            {
                _request.PostThaw?.Invoke(cancel);
            }
            catch (Exception failure) when (!(failure is OutOfMemoryException))
            {
                // The snapshot's own failure is the one to report; the hook's is kept as a warning.
                Warn("The post-thaw step failed after DoSnapshotSet had failed: " + failure.Message);
            }
        }

        /// <summary>The VM writer's components for the requested VMs: matched by name, caption or the folder of the VM's files.</summary>
        private void SelectComponents(IReadOnlyList<VssWriterMetadata> metadata)
        {
            HostVssWriter? wanted = _request.Writer;
            if (wanted == null)
            {
                return;
            }

            List<VssWriterMetadata> writers = metadata.Where(w => wanted.Matches(w.WriterId, w.Name)).ToList();
            if (writers.Count == 0)
            {
                NotReached($"The VSS writer '{wanted.Name}' is not on this machine (Get-VssWriter lists the writers that are)");
                return;
            }

            var folders = new HashSet<string>(_request.Paths.Select(FolderOf), StringComparer.OrdinalIgnoreCase);
            foreach (string vmName in _request.VmNames)
            {
                List<VssSelectedComponent> matches = writers
                    .SelectMany(w => w.Components.Where(c => ComponentIsVm(c, vmName, wanted.ComponentsMatchByFolder ? folders : NoFolders)).Select(c => new VssSelectedComponent(w, c)))
                    .ToList();
                if (matches.Count == 0)
                {
                    string known = string.Join(", ", writers.SelectMany(w => w.Components).Select(c => "'" + (c.Caption ?? c.FullPath) + "'"));
                    NotReached($"The VSS writer '{wanted.Name}' has no component for the VM '{vmName}' (its components: {(known.Length == 0 ? "none" : known)})");
                }

                _selected.AddRange(matches.Where(m => !_selected.Any(s => s.Writer.InstanceId == m.Writer.InstanceId && s.Component.FullPath == m.Component.FullPath)));
            }
        }

        private void NotReached(string why)
        {
            if (_request.RequireWriterComponents)
            {
                throw new VmQuiesceException("ConsistencyNotReached", FailureKind.InvalidOperation,
                    why + ", so the backup would not be application-consistent.", _request.Target)
                {
                    Remedy = "Check that the writer's service runs and knows the VM, or accept file-system consistency (-Consistency FileSystem).",
                };
            }

            Warn(why + "; the shadow copy is taken without it (file-system consistency).");
        }

        private static readonly HashSet<string> NoFolders = new HashSet<string>();

        private static bool ComponentIsVm(VssComponentMetadata component, string vmName, HashSet<string> folders)
        {
            // Hyper-V names components by VM id and captions them "Online\<name>"; VMware's naming is not
            // published, so for its writer the component's files lying in the VM's folder also count.
            return string.Equals(component.Name, vmName, StringComparison.OrdinalIgnoreCase)
                || string.Equals(component.Caption, vmName, StringComparison.OrdinalIgnoreCase)
                || string.Equals(LastSegment(component.Caption), vmName, StringComparison.OrdinalIgnoreCase)
                || component.FileSpecs.Any(spec => folders.Contains(FolderOf(spec)));
        }

        private static string? LastSegment(string? path) => path?.Substring(path.LastIndexOf('\\') + 1);

        private static string FolderOf(string path)
        {
            string trimmed = path.TrimEnd('\\', '/');
            int separator = trimmed.LastIndexOfAny(new[] { '\\', '/' });
            return separator < 0 ? trimmed : trimmed.Substring(0, separator);
        }

        /// <summary>
        /// GatherWriterStatus and GetWriterStatus. A failed writer whose components take part stops the run
        /// (naming writer, state, last error and hosting service); any other failed writer is a warning.
        /// </summary>
        private IReadOnlyList<VssWriterInfo> GatherStatus(string after, bool failOnInvolvedWriter, CancellationToken cancel)
        {
            Await("GatherWriterStatus", c => c.GatherWriterStatus(), _request.OperationTimeout, cancel);
            IReadOnlyList<VssWriterInfo> writers = Call("GetWriterStatus", c => c.GetWriterStatus(ServiceOf));
            foreach (VssWriterInfo writer in writers.Where(w => w.Failed))
            {
                bool involved = _selected.Any(s => s.Writer.InstanceId == writer.InstanceId);
                if (involved && failOnInvolvedWriter)
                {
                    throw new VmQuiesceException("VssWriterFailed", FailureKind.InvalidOperation,
                        $"The VSS writer {writer.Describe()} (after {after}).", _request.Target)
                    {
                        Remedy = (writer.Service == null ? "Restart the service that hosts the writer" : $"Restart the '{writer.Service}' service (Restart-Service {writer.Service})")
                            + ", read its entries in the Application event log, then retry; Get-VssWriter shows the writer's state."
                            + (_comSecurityNote == null ? "" : " " + _comSecurityNote),
                    };
                }

                Warn($"The VSS writer {writer.Describe()} (after {after}).");
            }

            return writers;
        }

        private string? ServiceOf(string writerName)
        {
            if (!_services.TryGetValue(writerName, out string? service))
            {
                service = VssWriterServices.Find(writerName, _host.FindServiceByDisplayName);
                _services[writerName] = service;
            }

            return service;
        }

        /// <summary>AbortBackup when VSS needs it, DeleteSnapshots when shadow copies exist, Release always; failures here become warnings.</summary>
        private void Fail()
        {
            Completed = true;
            if (_components != null && _abortNeeded)
            {
                _abortNeeded = false;
                TryCleanup("AbortBackup", c => c.AbortBackup());
            }

            DeleteSnapshotsReporting();
            Release();
        }

        private void DeleteSnapshotsReporting()
        {
            if (_components == null || !_snapshotsExist)
            {
                return;
            }

            _snapshotsExist = false;
            if (!TryCleanup("DeleteSnapshots", c => c.DeleteSnapshots(SnapshotSetId)))
            {
                Warn("The shadow copies " + string.Join(", ", _volumes.Select(v => "{" + v.SnapshotId.ToString() + "}")) +
                    " may remain until VSS releases them; if 'vssadmin list shadows' still shows them, delete each with 'vssadmin delete shadows /shadow={id}'.");
            }
        }

        private bool TryCleanup(string step, Action<IVssBackupComponentsApi> action)
        {
            try
            {
                Call(step, c => { action(c); return true; });
                return true;
            }
            catch (VmQuiesceException failure)
            {
                Warn(failure.Message);
                return false;
            }
        }

        private void Release()
        {
            IVssBackupComponentsApi? components = _components;
            _components = null;
            components?.Dispose();
        }

        private void Warn(string message)
        {
            _warnings.Add(message);
            _warn(message);
        }

        private void Call(string step, Action<IVssBackupComponentsApi> action) => Call(step, c => { action(c); return true; });

        private T Call<T>(string step, Func<IVssBackupComponentsApi, T> call)
        {
            IVssBackupComponentsApi components = _components ?? throw new ObjectDisposedException(nameof(VssSnapshotSession));
            try
            {
                return call(components);
            }
            catch (VssCallException failure)
            {
                throw VssErrors.ToException(failure.HResult, step, _request.Target);
            }
        }

        /// <summary>Starts an asynchronous VSS operation and waits for it with a deadline; cancels it on timeout or Ctrl+C.</summary>
        private void Await(string step, Func<IVssBackupComponentsApi, IVssAsyncOperation> start, TimeSpan timeout, CancellationToken cancel)
        {
            _verbose($"VSS {step}...");
            IVssAsyncOperation operation = Call(step, start);
            try
            {
                var clock = Stopwatch.StartNew();
                while (true)
                {
                    TimeSpan remaining = timeout - clock.Elapsed;
                    Call(step, _ => operation.Wait(remaining < _request.PollInterval ? (remaining < TimeSpan.Zero ? TimeSpan.Zero : remaining) : _request.PollInterval));
                    int status = Call(step, _ => operation.QueryStatus());
                    if (status == VssConstants.AsyncCancelled)
                    {
                        throw new VmQuiesceException("VssOperationCancelled", FailureKind.OperationStopped,
                            $"VSS {step} was cancelled by another party (VSS_S_ASYNC_CANCELLED).", _request.Target);
                    }

                    if (status < 0)
                    {
                        throw VssErrors.ToException(status, step, _request.Target);
                    }

                    if (status != VssConstants.AsyncPending)
                    {
                        return;
                    }

                    if (cancel.IsCancellationRequested)
                    {
                        operation.Cancel();
                        cancel.ThrowIfCancellationRequested();
                    }

                    if (clock.Elapsed >= timeout)
                    {
                        operation.Cancel();
                        throw new VmQuiesceException("VssOperationTimeout", FailureKind.OperationTimeout,
                            $"VSS {step} did not finish within {timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} seconds and was cancelled.", _request.Target)
                        {
                            Remedy = "Get-VssWriter shows which writer is slow or failed; retry when the machine is less busy.",
                        };
                    }
                }
            }
            finally
            {
                operation.Dispose();
            }
        }
    }
}
