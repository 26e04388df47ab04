using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Config;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// A VMware VM driven by vmrun (Workstation, Player, Fusion, VMware Server 2.0): <c>vmrun snapshot</c>, then
    /// the VM folder's frozen files are the view. vmrun cannot quiesce the guest, so the reached consistency is
    /// Crash, always. The snapshot is deleted once the copy is done, and the point holds the configuration from before
    /// it; with -KeepSnapshot it stays, the point records it, a restore reverts to it and Remove-VmBackup deletes it
    /// with the last point that records it (<see cref="KeptSnapshots"/>).
    /// </summary>
    public sealed class VmwareSource : IBackupSource
    {
        public const string SourceKind = "VMware";

        /// <summary>Every snapshot this source takes is named vmquiesce-&lt;UTC stamp&gt;.</summary>
        public const string SnapshotPrefix = "vmquiesce-";

        /// <summary>
        /// Beside the .vmx while a backup runs, naming its snapshot: a snapshot named in a marker that is still
        /// there belongs to a run that never finished (a kept vmquiesce-* snapshot has no marker).
        /// </summary>
        public const string PendingMarkerSuffix = ".vmquiesce-pending";

        private readonly VmwareSourceOptions _options;
        private readonly IOperationHost _host;

        /// <param name="host">Receives the warnings the caller must see (a snapshot about to be overwritten, a lower consistency) and each step for -Verbose.</param>
        public VmwareSource(VmwareSourceOptions options, IOperationHost? host = null)
        {
            _options = options;
            _host = host ?? OperationHost.None;
        }

        public string Kind => SourceKind;

        public string VmName => _options.Name;

        public VmwareSourceOptions Options => _options;

        internal IOperationHost Host => _host;

        private VmrunClient Vmrun => _options.Vmrun;

        private string VmPath => _options.VmPathForVmrun;

        private string MarkerPath => _options.VmxPath + PendingMarkerSuffix;

        private const string WhyCrash = "vmrun cannot quiesce the guest: the snapshot is crash consistent";

        /// <summary>A marker holds one snapshot name.</summary>
        private const int MarkerMaxBytes = 1024;

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel)
        {
            string pending;
            try
            {
                // Anyone who can write the VM folder could put a link here: read a small regular file only.
                pending = RegularFile.ReadAllText(MarkerPath, MarkerMaxBytes).Trim();
            }
            catch (FileNotFoundException)
            {
                return Array.Empty<string>();
            }
            catch (UnexpectedFileException e)
            {
                return new[] { $"'{MarkerPath}' where a backup's marker would be is {e.Found}, not a marker VmQuiesce wrote: check who made it, then remove it" };
            }

            IReadOnlyList<string> snapshots = Vmrun.ListSnapshots(VmPath, cancel);
            if (pending.StartsWith(SnapshotPrefix, StringComparison.Ordinal) && snapshots.Contains(pending, StringComparer.Ordinal))
            {
                return new[]
                {
                    $"snapshot {GuestText.Quote(pending)} of VM '{VmName}' from a backup that did not finish: delete it with {GuestText.Escape(Vmrun.DisplayCommand("deleteSnapshot", VmPath, pending))}, then delete '{MarkerPath}'",
                };
            }

            // Whoever can write the VM folder wrote this text: shown escaped, so it cannot drive the terminal.
            return new[] { $"the marker '{MarkerPath}' of a backup that did not finish (its snapshot {GuestText.Quote(pending)} is gone): delete the file" };
        }

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
        {
            if (options.Required > Consistency.Crash && !options.AllowLower)
            {
                throw new VmQuiesceException("ConsistencyNotReached", FailureKind.InvalidOperation,
                    $"VM '{VmName}' reaches Crash consistency through vmrun, not the required {options.Required}: {WhyCrash}.", VmName)
                {
                    Remedy = "Use -Consistency Crash, or -AllowLowerConsistency to accept it with a warning.",
                };
            }

            IReadOnlyList<VmwareDisk> disks = VmwareVmFolder.CurrentDisks(_options.VmxPath);
            VmwareDisk? independent = disks.FirstOrDefault(d => d.IsIndependent);
            if (independent != null)
            {
                throw new VmQuiesceException("IndependentDiskNotSupported", FailureKind.InvalidOperation,
                    $"Disk {independent.Device} ('{independent.Path}') of VM '{VmName}' is {independent.Mode}: snapshots do not freeze independent disks, so its copy would not be consistent.", independent.Path)
                {
                    Remedy = "Change the disk's mode to persistent in the VM settings, or back it up with the VM powered off.",
                };
            }

            RequireDisksInFolder(disks);
            Leftovers.Refuse(VmName, FindLeftovers(cancel));

            IReadOnlyList<string> existing = Vmrun.ListSnapshots(VmPath, cancel);
            if (Vmrun.Connection.HostType == VmwareHostType.Server && existing.Count > 0)
            {
                CheckOverwriteAllowed(existing);
            }

            if (options.Required > Consistency.Crash)
            {
                _host.WriteWarning($"VM '{VmName}': {WhyCrash}, below the required {options.Required} (accepted by -AllowLowerConsistency).");
            }

            string name = SnapshotPrefix + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
            // Holds copies of the VM's configuration: readable by this user only, like every file VmQuiesce creates.
            string staging = CreateStaging();
            IConsistentView? view = null;
            try
            {
                // Released after the copy (no -KeepSnapshot): the point must be whole without a revert, so it holds the
                // configuration as it was before the snapshot, which names the disks the snapshot froze.
                VmFolderBefore? before = options.KeepSnapshot ? null : CaptureBefore(Path.Combine(staging, "before"));
                TakeSnapshot(name, options, cancel);
                view = OpenView(name, options.KeepSnapshot, disks, staging, before);
                return view;
            }
            finally
            {
                if (view == null)
                {
                    VmwareConsistentView.DeleteStaging(staging, _host);
                }
            }
        }

        /// <summary>
        /// The backup copies the VM folder: a disk file elsewhere (a .vmx or descriptor may name any path, a linked clone's
        /// base disk lies in its template's folder), or one that is a link, FIFO or device, would be missing from the point
        /// without anyone noticing. Checked before the snapshot.
        /// </summary>
        private void RequireDisksInFolder(IReadOnlyList<VmwareDisk> disks)
        {
            string vmFolder = RealFolder(Path.GetDirectoryName(Path.GetFullPath(_options.VmxPath))!);
            HashSet<string> listed = BeforeSnapshot(() =>
                new HashSet<string>(VmwareVmFolder.FrozenFiles(VmName, _options.VmxPath, Enumerable.Empty<string>(), OperationHost.None).Select(file => InRealFolder(file.Full)), VmwareVmFolder.PathComparer));
            foreach (VmwareDisk disk in disks)
            {
                string? missing = BeforeSnapshot(() => VmwareVmFolder.DiskChainFiles(disk.Path)).FirstOrDefault(file => !listed.Contains(InRealFolder(file)));
                if (missing != null)
                {
                    string real = InRealFolder(missing);
                    bool inside = real.StartsWith(vmFolder + Path.DirectorySeparatorChar, HostPlatform.IsLinux ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase);
                    throw new VmQuiesceException("DiskNotInVmFolder", FailureKind.NotSupported,
                        $"Disk {disk.Device} of VM '{VmName}' uses '{missing}', which " + (inside ? "is not a regular file (a link, FIFO, device or missing file)" : $"lies outside the VM folder '{vmFolder}'") +
                        ": the backup copies the VM folder's regular files only, so the restore point would lack it. Nothing was changed.", missing)
                    {
                        Remedy = "Move the disk's files into the VM folder as regular files (not links), or back the VM up with the disk removed from it.",
                    };
                }
            }
        }

        /// <summary>
        /// <paramref name="path"/> with its folder's links resolved (Linux), so a disk named through another name of the VM
        /// folder is found in it; the file's own name is kept as written, so a link in the folder is never taken for its target.
        /// </summary>
        private static string InRealFolder(string path)
        {
            string full = Path.GetFullPath(path);
            string? folder = Path.GetDirectoryName(full);
            return folder == null ? full : Path.Combine(RealFolder(folder), Path.GetFileName(full));
        }

        /// <summary>The real path of <paramref name="folder"/> (Linux: every link resolved), or the folder as given.</summary>
        private static string RealFolder(string folder) => HostPlatform.IsLinux && Native.Libc.RealPath(folder) is string real ? real : folder;

        private string CreateStaging()
        {
            try
            {
                return ScratchFolder.Create("vmquiesce-vmware").Path;
            }
            catch (Exception failure) when (failure is IOException || failure is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("VmFolderReadFailed", FailureKind.WriteError,
                    $"Could not create a private temporary folder for the configuration of VM '{VmName}' (nothing was changed): {failure.Message}", Path.GetTempPath(), failure);
            }
        }

        private VmFolderBefore CaptureBefore(string copyFolder) => BeforeSnapshot(() => VmFolderBefore.Capture(_options.VmxPath, copyFolder));

        /// <summary>Reads the VM folder before the snapshot: a failure is VmFolderReadFailed, and nothing was changed.</summary>
        private T BeforeSnapshot<T>(Func<T> read)
        {
            try
            {
                return read();
            }
            catch (Exception failure) when (failure is IOException || failure is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("VmFolderReadFailed", FailureKind.ReadError,
                    $"Could not read the folder of VM '{VmName}' before the snapshot (nothing was changed): {failure.Message}", _options.VmxPath, failure);
            }
        }

        private void TakeSnapshot(string name, QuiesceOptions options, CancellationToken cancel)
        {
            options.PreFreeze?.Invoke(cancel);
            try
            {
                using (FileStream marker = RegularFile.CreateNew(MarkerPath))
                {
                    byte[] text = Encoding.UTF8.GetBytes(name);
                    marker.Write(text, 0, text.Length);
                }

                _host.WriteVerbose($"VM '{VmName}': taking snapshot '{name}' (not quiesced: {WhyCrash}).");
                try
                {
                    Vmrun.Snapshot(VmPath, name, cancel);
                }
                catch (Exception failure) when (failure is VmQuiesceException || failure is OperationCanceledException)
                {
                    CleanUpFailedSnapshot(name, failure);
                    throw;
                }
            }
            finally
            {
                // Nothing was frozen, but the post-thaw hook runs on every path on which the pre-freeze hook ran.
                options.PostThaw?.Invoke(CancellationToken.None);
            }
        }

        /// <summary>The view of the files the snapshot froze; on failure the snapshot is deleted and the failure thrown.</summary>
        private IConsistentView OpenView(string name, bool keep, IReadOnlyList<VmwareDisk> frozenDisks, string staging, VmFolderBefore? before)
        {
            VmFolderFiles? held = null;
            try
            {
                IReadOnlyList<ViewFile> files = FrozenViewFiles(frozenDisks, staging, before, out held);
                return new VmwareConsistentView(this, name, keep, files, held, staging,
                    new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, QuiesceMethod.None));
            }
            catch (Exception failure) when (failure is IOException || failure is UnauthorizedAccessException || failure is VmQuiesceException)
            {
                held?.Dispose();
                try
                {
                    Release(name, delete: true, CancellationToken.None);
                }
                catch (VmQuiesceException release)
                {
                    // The original failure is what the caller must see; the snapshot left behind is reported here.
                    _host.WriteWarning(release.Message + " " + release.Remedy);
                }

                if (failure is VmQuiesceException)
                {
                    throw;
                }

                throw new VmQuiesceException("VmFolderReadFailed", FailureKind.ReadError,
                    $"Could not read the folder of VM '{VmName}' after the snapshot: {failure.Message}", _options.VmxPath, failure);
            }
        }

        /// <summary>
        /// The restore's second step: reverts the VM to the snapshot a backup captured. The VM must be powered
        /// off (vmrun answers "The file is already in use" otherwise).
        /// </summary>
        public void RevertToSnapshot(CapturedSnapshot snapshot, CancellationToken cancel)
        {
            if (!string.Equals(snapshot.Kind, SourceKind, StringComparison.Ordinal))
            {
                throw new VmQuiesceException("SnapshotKindMismatch", FailureKind.InvalidArgument,
                    $"The snapshot '{snapshot.Name}' was captured by a {snapshot.Kind} source; VM '{VmName}' is a VMware VM.", snapshot.Name);
            }

            IReadOnlyList<string> snapshots = Vmrun.ListSnapshots(VmPath, cancel);
            if (!snapshots.Contains(snapshot.Name, StringComparer.Ordinal))
            {
                throw new VmQuiesceException("SnapshotNotFound", FailureKind.ObjectNotFound,
                    $"VM '{VmName}' has no snapshot {GuestText.Quote(snapshot.Name)} to revert to; it has: {(snapshots.Count == 0 ? "none" : string.Join(", ", snapshots.Select(GuestText.Quote)))}.", snapshot.Name)
                {
                    Remedy = "The snapshot was deleted (by hand, or by Remove-VmBackup with the last point that recorded it): restore with -SkipRevert to get the files as they were copied.",
                };
            }

            _host.WriteVerbose($"VM '{VmName}': reverting to snapshot '{snapshot.Name}'.");
            Vmrun.RevertToSnapshot(VmPath, snapshot.Name, cancel);
        }

        /// <summary>Keeps or deletes the backup's snapshot; the pending marker goes once the snapshot is settled.</summary>
        internal void Release(string name, bool delete, CancellationToken cancel)
        {
            if (delete)
            {
                try
                {
                    _host.WriteVerbose($"VM '{VmName}': deleting snapshot '{name}'.");
                    Vmrun.DeleteSnapshot(VmPath, name, cancel);
                }
                catch (Exception e) when (e is VmQuiesceException || e is OperationCanceledException)
                {
                    throw new VmQuiesceException("SnapshotReleaseFailed", (e as VmQuiesceException)?.Kind ?? FailureKind.OperationStopped,
                        $"The snapshot '{name}' that the backup of VM '{VmName}' took could not be deleted: {e.Message}", name, e)
                    {
                        Remedy = $"Run {Vmrun.DisplayCommand("deleteSnapshot", VmPath, name)}, then delete '{MarkerPath}'.",
                    };
                }
            }

            File.Delete(MarkerPath);
        }

        /// <param name="frozenDisks">The disks the VM wrote before the snapshot, which it froze.</param>
        /// <param name="before">The folder as it was before the snapshot, when the snapshot is released after the copy.</param>
        /// <param name="held">The VM folder's files, open until the view is done: the view reads them through these descriptors.</param>
        private IReadOnlyList<ViewFile> FrozenViewFiles(IReadOnlyList<VmwareDisk> frozenDisks, string staging, VmFolderBefore? before, out VmFolderFiles held)
        {
            IReadOnlyList<string> writable = VmwareVmFolder.CurrentDisks(_options.VmxPath).SelectMany(d => VmwareVmFolder.DiskFiles(d.Path)).ToList();
            IReadOnlyDictionary<string, string> formats = VmwareVmFolder.DiskFormats(frozenDisks);
            var files = new List<ViewFile>();
            var madeBySnapshot = new List<string>();
            held = VmwareVmFolder.OpenFrozenFiles(VmName, _options.VmxPath, writable, _host);
            foreach (VmFolderFile file in held.Files)
            {
                string readPath = file.ReadPath;
                if (before != null && !before.Existed(file.Relative))
                {
                    // The snapshot's own files (.vmsn, a .vmsd that did not exist): a point without the snapshot has none.
                    madeBySnapshot.Add(file.Relative);
                    continue;
                }

                if (VmwareVmFolder.IsMutableMetadata(file.Full))
                {
                    readPath = before?.CopyOf(file.Relative) ?? Path.Combine(staging, file.Relative.Replace('/', Path.DirectorySeparatorChar));
                    if (before == null)
                    {
                        Directory.CreateDirectory(Path.GetDirectoryName(readPath)!);
                        VmFolderFiles.CopySmall(file, readPath, VmFolderBefore.MetadataMaxBytes);
                    }
                }

                files.Add(new ViewFile(file.Relative, readPath, file.Full) { Format = formats.TryGetValue(file.Full, out string? format) ? format : null, Owner = file.Owner });
            }

            _host.WriteVerbose($"VM '{VmName}': {files.Count} frozen file(s); not copied (written after the snapshot): {string.Join(", ", writable.Select(Path.GetFileName))}" +
                (madeBySnapshot.Count == 0 ? "." : $"; nor the snapshot's own files, since it is released after the copy: {string.Join(", ", madeBySnapshot)}."));
            return files;
        }

        private void CheckOverwriteAllowed(IReadOnlyList<string> existing)
        {
            string names = string.Join(", ", existing.Select(n => $"'{n}'"));
            if (_options.Force)
            {
                _host.WriteWarning($"VM '{VmName}' on VMware Server already has snapshot {names}; VMware Server keeps one snapshot per VM, so -Force overwrites it now.");
                return;
            }

            VssWriterConfig? config = ReadWriterConfig();
            if (config != null && config.OverwriteSnapshots)
            {
                _host.WriteWarning($"VM '{VmName}' on VMware Server already has snapshot {names}; '{config.Path}' allows overwriting snapshots, so it is overwritten now.");
                return;
            }

            string where = config == null ? "no vmvsswriter.cfg was found" : $"'{config.Path}' does not set {VssWriterConfig.OverwriteSnapshotsName} = \"TRUE\"";
            throw new VmQuiesceException("SnapshotWouldBeOverwritten", FailureKind.InvalidOperation,
                $"VM '{VmName}' on VMware Server already has snapshot {names}, and VMware Server keeps one snapshot per VM: the backup's snapshot would overwrite it and {names} would be lost. Nothing was changed ({where}).", VmName)
            {
                Remedy = "Delete or keep the snapshot deliberately: run 'Set-VssWriterConfig -OverwriteSnapshots $true' to allow overwriting, or use -Force for this backup.",
            };
        }

        private VssWriterConfig? ReadWriterConfig()
        {
            if (_options.WriterConfigPath != null)
            {
                return VssWriterConfig.Read(_options.WriterConfigPath);
            }

            if (!HostPlatform.IsWindows)
            {
                return null;
            }

            try
            {
                return VssWriterConfig.Read(VssWriterConfigLocation.FindDefault());
            }
            catch (VmQuiesceException e) when (e.ErrorId == "VMwareServerNotFound")
            {
                return null;
            }
        }

        /// <summary>A snapshot call that failed or timed out may still have made the snapshot: delete what exists.</summary>
        private void CleanUpFailedSnapshot(string name, Exception failure)
        {
            try
            {
                if (Vmrun.ListSnapshots(VmPath, CancellationToken.None).Contains(name, StringComparer.Ordinal))
                {
                    Vmrun.DeleteSnapshot(VmPath, name, CancellationToken.None);
                }

                File.Delete(MarkerPath);
            }
            catch (VmQuiesceException cleanup)
            {
                _host.WriteWarning($"The snapshot step of VM '{VmName}' failed ({failure.Message}) and checking for a half-made snapshot '{name}' failed too ({cleanup.Message}). " +
                    $"If it exists, run {Vmrun.DisplayCommand("deleteSnapshot", VmPath, name)}; then delete '{MarkerPath}'.");
            }
        }
    }
}
