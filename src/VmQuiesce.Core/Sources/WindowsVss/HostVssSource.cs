using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Versioning;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources.WindowsVss.Native;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// The HostVss method: VmQuiesce is the host's VSS requester. The VM writer (VMware Server's or Hyper-V's)
    /// quiesces the guest inside DoSnapshotSet, the host volumes holding the VM's files are shadow-copied and
    /// the files are read from the shadow copies' device paths.
    /// </summary>
    public sealed class HostVssSource : IBackupSource
    {
        public const string MethodName = QuiesceMethod.HostVss;

        private readonly HostVssWriter? _writer;
        private readonly IReadOnlyList<string> _files;
        private readonly VssBackupType _backupType;
        private readonly IOperationHost _operationHost;
        private readonly IVssHost? _host;

        /// <param name="vmName">The VM as the writer knows it (its display name; for Hyper-V also its id).</param>
        /// <param name="writer">The writer that quiesces the VM, or null for a shadow copy without a VM writer (file-system consistency at best).</param>
        /// <param name="files">Full host paths of the VM's files (.vmx, .vmdk, .vhdx, ...).</param>
        /// <param name="backupType">Copy (default) leaves application logs alone; Full lets writers truncate them.</param>
        /// <param name="host">Receives warnings (a failed writer not taking part, a shadow copy that could not be deleted) and each VSS step for -Verbose.</param>
        public HostVssSource(string vmName, HostVssWriter? writer, IReadOnlyList<string> files, VssBackupType backupType = VssBackupType.Copy,
            IOperationHost? host = null)
            : this(vmName, writer, files, backupType, host, null)
        {
        }

        internal HostVssSource(string vmName, HostVssWriter? writer, IReadOnlyList<string> files, VssBackupType backupType,
            IOperationHost? operationHost, IVssHost? host)
        {
            if (string.IsNullOrWhiteSpace(vmName))
            {
                throw new VmQuiesceException("InvalidVmName", FailureKind.InvalidArgument, "The VM name is empty; the name the VM writer knows the VM by was expected.", vmName);
            }

            if (files == null || files.Count == 0)
            {
                throw new VmQuiesceException("NoVmFiles", FailureKind.InvalidArgument, $"No files were given for the VM '{vmName}'; the full paths of its files on this host were expected.", vmName);
            }

            foreach (string file in files)
            {
                if (string.IsNullOrWhiteSpace(file) || !IsFullWindowsPath(file))
                {
                    throw new VmQuiesceException("InvalidVmFilePath", FailureKind.InvalidArgument,
                        $"The file '{file}' of the VM '{vmName}' is not a full local path without '.' or '..' parts; a path such as 'D:\\VMs\\{vmName}\\{vmName}.vmx' was expected.", file);
                }
            }

            VmName = vmName;
            _writer = writer;
            // Shadow-copy device paths are used as they are (\\?\ turns normalization off): one separator only.
            _files = files.Select(f => f.Replace('/', '\\')).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
            _backupType = backupType;
            _operationHost = operationHost ?? OperationHost.None;
            _host = host;
        }

        public string Kind => MethodName;

        public string VmName { get; }

        /// <summary>The name the VM writer's component for the VM has, when it is not <see cref="VmName"/> (Hyper-V: the VM's id).</summary>
        public string? WriterComponentName { get; init; }

        /// <summary>
        /// None: VSS_CTX_BACKUP shadow copies are auto-release, so VSS deletes them when the requester is
        /// released or its process ends; nothing of a failed run outlives it.
        /// </summary>
        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
        {
            IVssHost host = _host ?? WindowsHost("The HostVss backup method");
            options.RefuseKeepSnapshot(VmName, "the HostVss method's shadow copies are made in the backup context, which VSS deletes when the backup ends");

            bool applicationRequired = options.Required >= Consistency.Application && !options.AllowLower;
            if (_writer == null && applicationRequired)
            {
                throw NotReached(Consistency.FileSystem, options.Required, "no VM writer was chosen");
            }

            var request = new VssSnapshotRequest
            {
                BackupType = _backupType,
                Writer = _writer,
                VmNames = new[] { WriterComponentName ?? VmName },
                Paths = _files,
                RequireWriterComponents = applicationRequired,
                PreFreeze = options.PreFreeze,
                PostThaw = options.PostThaw,
                Target = VmName,
            };
            VssSnapshotSession session = VssSnapshotSession.Open(host, request, _operationHost.WriteWarning, _operationHost.WriteVerbose, cancel);
            try
            {
                Consistency reached = Reached(session.SelectedComponents);
                if (reached < options.Required)
                {
                    if (!options.AllowLower)
                    {
                        throw NotReached(reached, options.Required, "the VM writer did not take part");
                    }

                    _operationHost.WriteWarning($"The backup of '{VmName}' reached {reached} consistency, below the {options.Required} asked for.");
                }

                IReadOnlyList<string> relative = RelativePaths(_files);
                var files = _files.Select((file, index) => new ViewFile(relative[index], session.ShadowPathOf(file), file)).ToList();
                IReadOnlyList<string> frozen = session.SelectedComponents.Select(c => c.ToString())
                    .Concat(session.Volumes.Select(v => v.Volume.MountPoint)).ToList();
                VssFrozenWindow window = session.FrozenWindow!;
                var record = new QuiesceRecord(reached, frozen, window.Milliseconds, MethodName, window.Measure);
                return new HostVssView(session, files, record);
            }
            catch
            {
                session.Complete(false, CancellationToken.None);
                throw;
            }
        }

        /// <summary>
        /// Application when the VM writer quiesced the guest; Crash when it could only save the VM's state, which
        /// restores as it was but with nothing inside flushed; FileSystem (the host's) without the writer.
        /// </summary>
        private Consistency Reached(IReadOnlyList<VssSelectedComponent> selected)
        {
            if (selected.Count == 0)
            {
                return Consistency.FileSystem;
            }

            VssSelectedComponent? saved = selected.FirstOrDefault(component => component.IsSavedStateBackup);
            if (saved == null)
            {
                return Consistency.Application;
            }

            _operationHost.WriteWarning($"The Hyper-V writer backed up '{VmName}' by saving its state ({saved.Component.Caption}): the guest could not quiesce itself " +
                "(are its integration services running, with the backup service enabled?). The VM restores as it was saved; nothing inside it was flushed.");
            return Consistency.Crash;
        }

        /// <summary>Every VSS writer on this machine with its state, last error and hosting service (Get-VssWriter).</summary>
        public static IReadOnlyList<VssWriterInfo> GetWriters(IOperationHost host, CancellationToken cancel) =>
            GetWriters(WindowsHost("Get-VssWriter"), host, cancel);

        internal static IReadOnlyList<VssWriterInfo> GetWriters(IVssHost vss, IOperationHost host, CancellationToken cancel) =>
            VssSnapshotSession.ListWriters(vss, new VssSnapshotRequest(), host.WriteWarning, host.WriteVerbose, cancel);

        /// <summary>Where each file goes in the restore point: relative to the files' common folder, with '/'.</summary>
        internal static IReadOnlyList<string> RelativePaths(IReadOnlyList<string> files)
        {
            List<string[]> segments = files.Select(f => f.Split(new[] { '\\', '/' }, StringSplitOptions.RemoveEmptyEntries)).ToList();
            int common = 0;
            while (segments.All(s => s.Length - 1 > common) && segments.All(s => string.Equals(s[common], segments[0][common], StringComparison.OrdinalIgnoreCase)))
            {
                common++;
            }

            return segments.Select(s => string.Join("/", s.Skip(common).Select(part => part.TrimEnd(':')))).ToList();
        }

        /// <summary>A drive-letter path without '.' or '..' parts, read as Windows reads it whatever OS this runs on.</summary>
        internal static bool IsFullWindowsPath(string path) =>
            path.Length >= 3 && char.IsLetter(path[0]) && path[1] == ':' && (path[2] == '\\' || path[2] == '/')
            && !path.Split('\\', '/').Any(part => part == "." || part == "..");

        private VmQuiesceException NotReached(Consistency reached, Consistency required, string why) =>
            new VmQuiesceException("ConsistencyNotReached", FailureKind.InvalidOperation,
                $"The backup of '{VmName}' would reach {reached} consistency, but {required} was required: {why}.", VmName)
            {
                Remedy = "Choose the VM's writer (VMware or Hyper-V) and check it with Get-VssWriter, or accept a lower consistency.",
            };

        /// <summary>
        /// <paramref name="vm"/> with the HostVss method as a <paramref name="backupType"/> backup, when the host's VSS can
        /// back it up (a VMware or Hyper-V VM of this Windows host); any other is refused, naming its kind, before anything happens.
        /// </summary>
        public static BackupVm ForVm(BackupVm vm, VssBackupType backupType)
        {
            if (vm is IHostVssTarget target)
            {
                return target.WithHostVss(backupType);
            }

            throw new VmQuiesceException("HostVssNotSupportedForKind", FailureKind.InvalidArgument,
                $"The HostVss method backs up the VMware and Hyper-V VMs of this Windows host through their VSS writers; '{vm.Name}' is a {vm.Kind} VM.", vm)
            {
                Remedy = "Leave out -Method HostVss for this VM: its own source quiesces it.",
            };
        }

        /// <summary>Refuses with WindowsOnly off Windows: <paramref name="what"/> uses the Volume Shadow Copy Service.</summary>
        internal static void RequireWindows(string what)
        {
            if (!HostPlatform.IsWindows)
            {
                throw NotWindows(what);
            }
        }

        private static IVssHost WindowsHost(string what) => HostPlatform.IsWindows ? CreateWindowsHost() : throw NotWindows(what);

        private static VmQuiesceException NotWindows(string what) =>
            new VmQuiesceException("WindowsOnly", FailureKind.NotSupported,
                $"{what} uses the Windows Volume Shadow Copy Service; this is {HostPlatform.Name}.", what)
            {
                Remedy = "Run it on the Windows host that runs the VMs; on Linux hosts use the QEMU guest agent method.",
            };

        [SupportedOSPlatform("windows")]
        private static IVssHost CreateWindowsHost() => new WindowsVssHost();

        private sealed class HostVssView : IConsistentView
        {
            private readonly VssSnapshotSession _session;

            public HostVssView(VssSnapshotSession session, IReadOnlyList<ViewFile> files, QuiesceRecord record)
            {
                _session = session;
                Files = files;
                Quiesce = record;
            }

            public Consistency Reached => Quiesce.ReachedValue;

            public IReadOnlyList<ViewFile> Files { get; }

            /// <summary>None: the shadow copies are the point in time, and they are deleted when the copy is done.</summary>
            public CapturedSnapshot? Snapshot => null;

            public QuiesceRecord Quiesce { get; }

            public void Complete(bool success, CancellationToken cancel) => _session.Complete(success, cancel);

            public void Dispose() => _session.Dispose();
        }
    }
}
