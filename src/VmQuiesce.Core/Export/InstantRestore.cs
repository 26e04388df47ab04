using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Export
{
    /// <summary>Where an instant restore stands.</summary>
    public enum InstantRestoreState
    {
        /// <summary>The VM runs; its disks are still being copied from the repository.</summary>
        Copying,

        /// <summary>Every disk is local and complete: the VM no longer needs the repository.</summary>
        Completed,

        /// <summary>A copy failed (the message says why); the VM still runs on the export, paused if it read a bad range.</summary>
        Failed,

        /// <summary>Stopped: the VM was ended and its incomplete disks deleted.</summary>
        Stopped,

        /// <summary>
        /// The process that served the disks ended before the copy completed. The VM runs on its local disks (paused if
        /// it read a range not yet copied); Complete-VmInstantRestore serves the point again and resumes the copy, and
        /// Stop-VmInstantRestore ends it.
        /// </summary>
        Interrupted,

        /// <summary>Another live process serves the disks and watches the copy; only that process completes or stops it.</summary>
        ServedElsewhere,
    }

    /// <summary>
    /// Start-VmInstantRestore: a restore point's VM started at once under QEMU, each disk a local qcow2 overlay whose
    /// backing file is the point's NBD export (served by this process, every chunk verified); the guest's writes go to
    /// the overlay; QEMU's blockdev-mirror copies the whole disk (the overlay's writes and the export's bytes) into the
    /// local disk in the background, several requests in flight, and then moves the VM onto it; the overlays are
    /// deleted and the export ends. Disks stop the VM on a read or write error (rerror/werror=stop), so a failing
    /// export pauses the guest instead of feeding it errors.
    /// </summary>
    /// <remarks>
    /// The VM's machine type, memory, CPUs and CPU model are those the restore point recorded
    /// (<see cref="RestorePoint.Machine"/>), each overridden by what the caller gives (<see cref="BootCheckOptions"/>,
    /// which also gives the accelerator and a kernel to boot directly); <see cref="Machine"/> says which was used. The local disks are qcow2 whatever the point's format was. A record
    /// (<see cref="InstantRestoreRecord"/>) lets any later session of this user find the restore once this process
    /// is gone, serve the point again on the socket the disks' backing files name, and resume or stop the copy.
    /// </remarks>
    public sealed class InstantRestore
    {
        private static readonly ConcurrentDictionary<string, InstantRestore> s_running = new ConcurrentDictionary<string, InstantRestore>(StringComparer.OrdinalIgnoreCase);
        private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

        private readonly InstantRestoreRecord _record;
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private RestorePointServer? _server;
        private Task _watch = Task.CompletedTask;
        private long _copied;
        private long _total;
        private long _rateLimit;
        private DateTime _reconnectUntil;

        private InstantRestore(InstantRestoreRecord record, RestorePointServer? server, InstantRestoreState state)
        {
            _record = record;
            _server = server;
            StateValue = state;
            _rateLimit = record.CopyRateLimit;
        }

        /// <summary>The instant restores of this user on this host: those this process watches, then those found in records (see <see cref="InstantRestoreState.Interrupted"/>).</summary>
        public static IReadOnlyList<InstantRestore> Running
        {
            get
            {
                var found = s_running.Values.ToDictionary(restore => restore.Id, StringComparer.Ordinal);
                if (HostPlatform.IsLinux)
                {
                    foreach (InstantRestoreRecord record in InstantRestoreRecord.LoadAll().Where(record => !found.ContainsKey(record.Id)))
                    {
                        found[record.Id] = new InstantRestore(record, null, record.ServerIsRunning ? InstantRestoreState.ServedElsewhere : InstantRestoreState.Interrupted);
                    }
                }

                return found.Values.OrderBy(restore => restore.Id, StringComparer.Ordinal).ToList();
            }
        }

        public string Id => _record.Id;

        public string VmName => _record.VmName;

        public string RestorePointId => _record.RestorePointId;

        /// <summary>The repository the point is served from.</summary>
        public string Repository => _record.Repository;

        /// <summary>The folder of the VM's local disks, its sockets and console log.</summary>
        public string Destination => _record.Destination;

        /// <summary>The local qcow2 disks, in the point's order: the copy's targets, standalone (no backing file), the VM's disks once it completes.</summary>
        public IReadOnlyList<string> Disks => _record.Disks;

        /// <summary>The qcow2 overlays the VM runs on until the copy completes (the guest's writes, over the export), in the point's order; deleted then.</summary>
        public IReadOnlyList<string> Overlays => Disks.Select(OverlayOf).ToList();

        public string QmpSocket => Path.Combine(Destination, "qmp.sock");

        public string AgentSocket => Path.Combine(Destination, "qga.sock");

        /// <summary>The machine QEMU was started as, and which of its options came from the restore point; null for a restore found in its record.</summary>
        public VmMachine? Machine { get; private set; }

        /// <summary>The QEMU process that runs the VM.</summary>
        public int ProcessId => _record.QemuProcessId;

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StateValue"/> is the typed value.</summary>
        public string State => StateValue.ToString();

        internal InstantRestoreState StateValue { get; private set; }

        /// <summary>The typed <see cref="State"/>.</summary>
        public InstantRestoreState GetState() => StateValue;

        /// <summary>Bytes per second the background copy may use (QEMU's job speed); 0 for no limit.</summary>
        public long CopyRateLimit
        {
            get => Interlocked.Read(ref _rateLimit);
            set => Interlocked.Exchange(ref _rateLimit, value);
        }

        /// <summary>When (UTC) every disk became local and the export ended, as this process saw it; null until then.</summary>
        public DateTime? CompletionTime { get; private set; }

        /// <summary>Why the copy failed, or null.</summary>
        public string? Error { get; private set; }

        /// <summary>Bytes the copies have made so far, of <see cref="TotalBytes"/>.</summary>
        public long CopiedBytes => Interlocked.Read(ref _copied);

        public long TotalBytes => Interlocked.Read(ref _total);

        /// <summary>
        /// Starts the VM of <paramref name="point"/> from the repository with its disks in <paramref name="destination"/>
        /// (made when missing; it must not hold the disks yet), and the background copy, at most
        /// <paramref name="copyRateLimit"/> bytes per second (0: no limit). The restore owns <paramref name="repository"/>
        /// once it serves it: a connection to object storage is closed when the export ends.
        /// </summary>
        public static InstantRestore Start(IRestorePointSource repository, RestorePoint point, string destination, BootCheckOptions vm, long copyRateLimit, CancellationToken cancel)
        {
            try
            {
                return StartInDestination(repository, point, destination, vm, copyRateLimit, cancel);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // .NET names the path it failed on; the restore and its folder say which start failed.
                throw new VmQuiesceException("InstantRestoreStartFailed", FailureKind.WriteError, $"Cannot restore '{point.Id}' into '{destination}': {e.Message}", destination, e);
            }
        }

        private static InstantRestore StartInDestination(IRestorePointSource repository, RestorePoint point, string destination, BootCheckOptions vm, long copyRateLimit, CancellationToken cancel)
        {
            if (!HostPlatform.IsLinux)
            {
                throw new VmQuiesceException("InstantRestoreNotSupported", FailureKind.NotSupported, $"Instant restore runs QEMU on Linux; this is {HostPlatform.Name}.", point.Id);
            }

            VmMachine machine = vm.MachineFor(point.Machine);
            // QEMU writes its files there as root, and Stop deletes them, by this path: it is the real path (no link of
            // anyone's on the way), and no one else may rename it or a folder above it, or put files of theirs in it.
            destination = UnixFiles.RealPathOfDeepestExisting(Path.GetFullPath(destination));
            string? replaceable = UnixFiles.DescribeReplaceable(ConsoleLogIn(destination));
            if (replaceable == null && RegularFile.StatNoFollow(destination) is FileStatus folder && (folder.Permissions & GroupOrOtherWrite) != 0)
            {
                replaceable = $"'{destination}' has mode {folder.ModeText}, so other users can put files of theirs in it";
            }

            if (replaceable != null)
            {
                throw new VmQuiesceException("InstantRestoreDiskPathInvalid", FailureKind.SecurityError,
                    $"Cannot restore '{point.Id}' into '{destination}': {replaceable}, where the restore makes files of its own.", destination)
                {
                    Remedy = "Restore into a folder only root can change (and the folders above it), such as one below /var/lib or /srv.",
                };
            }

            var disks = point.Files.Select(file => Path.Combine(destination, Path.GetFileNameWithoutExtension(file.Path) + ".qcow2")).ToList();
            foreach (string path in disks.Concat(disks.Select(OverlayOf)).Append(ConsoleLogIn(destination)))
            {
                // Not followed: a link or folder there would be written through (QEMU truncates its console log through
                // one, as root) or fail the start only after QEMU runs; a file of several names is another file too.
                if (UnixFiles.StatAt(Libc.AtFdCwd, path, out _) is FileStatus found && !(found.IsRegularFile && found.Links == 1))
                {
                    string what = found.IsRegularFile ? $"a file of {found.Links} names (hard links)" : found.KindName;
                    throw new VmQuiesceException("InstantRestoreDiskPathInvalid", FailureKind.InvalidArgument,
                        $"Cannot restore '{point.Id}' into '{destination}': '{path}' is {what}, where the restore makes a file of its own.", path);
                }
            }

            if (disks.Distinct(StringComparer.Ordinal).Count() != disks.Count || disks.Concat(disks.Select(OverlayOf)).Any(File.Exists) || File.Exists(Path.Combine(destination, "qmp.sock")))
            {
                throw new VmQuiesceException("InstantRestoreDestinationInUse", FailureKind.ResourceBusy,
                    $"Cannot restore '{point.Id}' into '{destination}': it holds disks or sockets of another VM, or two disks of the point share a name.", destination);
            }

            var record = new InstantRestoreRecord(NewId(), point.VmName, point.Id, repository.Location, destination, disks) { CopyRateLimit = copyRateLimit };
            using (TrustedFolder.Open(destination, owner: null, create: true))
            {
                // Made through descriptors: a folder another user made there meanwhile is refused, not used.
            }

            record.ServeHere();
            RestorePointServer server;
            try
            {
                server = RestorePointServer.Start(repository, point, new RestorePointServerOptions { SocketPath = record.SocketPath, OwnsRepository = true });
            }
            catch
            {
                record.Delete();
                throw;
            }

            var made = new List<string>();
            try
            {
                for (int i = 0; i < server.Disks.Count; i++)
                {
                    ServedDisk disk = server.Disks[i];
                    string format = CheckedFormat(server, disk, cancel);
                    made.Add(OverlayOf(disks[i])); // before qemu-img runs: one cancelled or failing midway may leave the file
                    RunQemuImg(new[] { "create", "-q", "-f", DiskImageFormat.Qcow2, "-o", LocalDiskOptions, "-b", disk.Uri, "-F", format, OverlayOf(disks[i]) }, cancel);
                }

                StartQemu(record, vm, machine, cancel);
                record.Save();
                var restore = new InstantRestore(record, server, InstantRestoreState.Copying) { Machine = machine };
                restore.StartCopies(cancel);
                s_running[restore.Id] = restore;
                return restore;
            }
            catch
            {
                // Every QEMU this start made is ended before the files it runs on go, found by its name: a Ctrl+C or
                // timeout while QEMU starts leaves its pid unread. One that cannot be ended keeps its overlays, and the
                // record names it, so Get-/Stop-VmInstantRestore still find it.
                var running = QemuProcessesOf(record.Id).Where(qemu => !EndQemu(qemu.Pid, qemu.StartTicks, Path.Combine(destination, "qmp.sock"))).ToList();
                server.Stop();
                if (running.Count == 0)
                {
                    // The overlays, and the local disks the copy's start made: none of them was there before this start.
                    foreach (string file in made.Concat(disks).Where(File.Exists))
                    {
                        File.Delete(file);
                    }

                    record.Delete();
                }
                else if (record.QemuProcessId == 0)
                {
                    (record.QemuProcessId, record.QemuStartTicks) = running[0];
                    record.Save();
                }

                throw;
            }
        }

        /// <summary>The instant restore with this id: watched by this process, or found in its record; null when there is none.</summary>
        public static InstantRestore? Find(string id) => Running.FirstOrDefault(restore => string.Equals(restore.Id, id, StringComparison.OrdinalIgnoreCase));

        /// <summary>
        /// Takes over an <see cref="InstantRestoreState.Interrupted"/> restore: serves its point again from
        /// <paramref name="repository"/> on the socket its disks' backing files name (QEMU reconnects on its next
        /// read), lets a VM paused on a read error run on, and starts the copy again for each disk not yet complete:
        /// from its first byte, as blockdev-mirror keeps no record of what it copied before (a mirror already ready,
        /// every byte copied, is only completed). This process then watches it. The repository is
        /// opened only once the restore is known to be resumable, and is then owned by the restore. The record names
        /// the repository by its folder or s3:// address only: how to reach object storage (endpoint, keys) is the
        /// caller's, never kept.
        /// </summary>
        public void Resume(Func<IRestorePointSource> openRepository, CancellationToken cancel)
        {
            if (StateValue == InstantRestoreState.ServedElsewhere)
            {
                throw ServedElsewhere();
            }

            if (StateValue != InstantRestoreState.Interrupted)
            {
                return;
            }

            if (!_record.QemuIsRunning)
            {
                throw new VmQuiesceException("InstantRestoreVmGone", FailureKind.InvalidOperation,
                    $"The instant restore '{Id}' of '{VmName}' cannot be resumed: its QEMU process {ProcessId} has ended, so its disks in '{Destination}' are incomplete.", Id)
                {
                    Remedy = $"Remove what is left with Stop-VmInstantRestore -Id {Id}, and start the restore again.",
                };
            }

            IRestorePointSource repository = openRepository();
            (int Pid, string? StartTicks) lastServer = (_record.ServerProcessId, _record.ServerStartTicks);
            bool served = false;
            try
            {
                RestorePoint point = repository.GetRestorePoint(RestorePointId);
                RemoveStaleSocket();
                _record.ServeHere();
                served = true; // the server owns the repository from here, and closes it when it stops or fails to start
                _server = RestorePointServer.Start(repository, point, new RestorePointServerOptions { SocketPath = _record.SocketPath, OwnsRepository = true });
                _reconnectUntil = DateTime.UtcNow + ReconnectWindow;
                StateValue = InstantRestoreState.Copying;
                StartCopies(cancel);
                s_running[Id] = this;
            }
            catch
            {
                _server?.Stop();
                _server = null;
                StateValue = InstantRestoreState.Interrupted;
                (_record.ServerProcessId, _record.ServerStartTicks) = lastServer;
                if (!served)
                {
                    (repository as IDisposable)?.Dispose();
                }
                else
                {
                    // Served by no one again: a record naming this live process would make every later look (this
                    // session's too) take the restore as served elsewhere, and refuse to resume or stop it.
                    _record.Save();
                }

                throw;
            }
        }

        /// <summary>Waits until every disk is local (or the copy failed, or <paramref name="timeout"/> passed); true when completed.</summary>
        public bool WaitForCompletion(TimeSpan timeout, CancellationToken cancel)
        {
            try
            {
                _watch.Wait((int)Math.Min(int.MaxValue, timeout.TotalMilliseconds), cancel);
            }
            catch (AggregateException)
            {
            }

            return StateValue == InstantRestoreState.Completed;
        }

        /// <summary>
        /// Ends the VM (QMP quit; killed when its monitor does not answer or it does not go, see <see cref="EndQemu"/>),
        /// deletes its incomplete local disks and stops serving; also for an interrupted restore, whose server is gone.
        /// A completed restore's VM and disks are left alone; a VM that cannot be ended keeps its disks and record.
        /// </summary>
        public void Stop()
        {
            if (StateValue == InstantRestoreState.Completed)
            {
                s_running.TryRemove(Id, out _);
                return;
            }

            if (StateValue == InstantRestoreState.ServedElsewhere)
            {
                throw ServedElsewhere();
            }

            _stop.Cancel();
            try
            {
                _watch.Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
            }

            if (_record.QemuIsRunning && !EndQemu(ProcessId, _record.QemuStartTicks, QmpSocket))
            {
                // Its disks are kept while it may still write them; the record stays for a later Stop.
                throw new VmQuiesceException("InstantRestoreVmNotEnded", FailureKind.InvalidOperation,
                    $"The instant restore '{Id}' of '{VmName}' was not stopped: its QEMU process {ProcessId} did not end, so its disks in '{Destination}' are kept.", Id)
                {
                    Remedy = $"Find out why process {ProcessId} does not end (ps -o stat,wchan -p {ProcessId}), end it, and run Stop-VmInstantRestore -Id {Id} again.",
                };
            }

            _server?.Stop();
            RemoveStaleSocket();
            foreach (string disk in Disks.Concat(Overlays).Where(File.Exists))
            {
                File.Delete(disk);
            }

            _record.Delete();
            StateValue = InstantRestoreState.Stopped;
            s_running.TryRemove(Id, out _);
        }

        /// <summary>Why a restore another live process serves cannot be completed or stopped from here.</summary>
        private VmQuiesceException ServedElsewhere() => new VmQuiesceException("InstantRestoreServedElsewhere", FailureKind.ResourceBusy,
            $"The instant restore '{Id}' of '{VmName}' is served and watched by process {_record.ServerProcessId}.", Id)
        {
            Remedy = "Complete or stop it in the session that started it; once that process is gone, any session can.",
        };

        public override string ToString() => $"{VmName} {RestorePointId} in {Destination}: {State}";

        private static string CheckedFormat(RestorePointServer server, ServedDisk disk, CancellationToken cancel)
        {
            string format = disk.Format ?? throw new VmQuiesceException("InstantRestoreFormatUnknown", FailureKind.InvalidData,
                $"The disk '{disk.Path}' of restore point '{server.RestorePointId}' has no recorded format, and the format is never guessed from bytes the guest wrote.", disk.Path);
            if (format != DiskImageFormat.Raw && format != DiskImageFormat.Qcow2)
            {
                throw new VmQuiesceException("InstantRestoreFormatUnsupported", FailureKind.NotSupported, $"The disk '{disk.Path}' is a {format} image; instant restore starts raw and qcow2 disks.", disk.Path);
            }

            if (QemuImage.References(disk.Uri, format, server.ReadStart(disk, QemuImage.Qcow2HeaderBytes, cancel), cancel).Describe() is string why)
            {
                throw new VmQuiesceException("ImageNamesOtherFiles", FailureKind.SecurityError, $"The disk '{disk.Path}' is not started: {why}, and a backed-up disk may name only itself.", disk.Path);
            }

            return format;
        }

        /// <summary>
        /// Starts the VM's QEMU, detached (-daemonize: the VM outlives this process), and records its pid and start
        /// time. QEMU is found by the name it is given (<see cref="QemuName"/>), never by a pidfile: one in the
        /// destination is written through whatever link is planted there and may name any process by the time it is read.
        /// </summary>
        private static void StartQemu(InstantRestoreRecord record, BootCheckOptions vm, VmMachine machine, CancellationToken cancel)
        {
            string program = HostTools.ForThisHost.Resolve(vm.QemuExecutable, "The VM option QemuExecutable");
            string destination = record.Destination;
            // -daemonize's setsid() is what elevateprivileges=deny would refuse.
            var arguments = new List<string> { "-daemonize", "-name", QemuName(record.Id), "-sandbox", "on,obsolete=deny,resourcecontrol=deny" };
            arguments.AddRange(BootCheck.MachineArguments(vm, machine, ConsoleLogIn(destination)));
            for (int i = 0; i < record.Disks.Count; i++)
            {
                arguments.AddRange(new[]
                {
                    "-drive", $"if=none,id=disk{i},file={BootCheck.QemuPath(OverlayOf(record.Disks[i]))},format=qcow2,werror=stop,rerror=stop",
                    "-device", $"virtio-blk-pci,drive=disk{i}" + (i == 0 && vm.Kernel == null ? ",bootindex=0" : string.Empty),
                });
            }

            arguments.AddRange(new[]
            {
                "-device", "virtio-serial-pci",
                "-chardev", $"socket,id=qga0,path={BootCheck.QemuPath(Path.Combine(destination, "qga.sock"))},server=on,wait=off",
                "-device", "virtserialport,chardev=qga0,name=" + QemuDiscovery.AgentPortName,
                "-qmp", $"unix:{BootCheck.QemuPath(Path.Combine(destination, "qmp.sock"))},server=on,wait=off",
            });
            ToolResult started = ToolProcess.Run(new ToolCommand(program, arguments) { Timeout = TimeSpan.FromMinutes(2), OutputLimit = 64 * 1024 }, cancel);
            if (started.ExitCode != 0)
            {
                throw new VmQuiesceException("InstantRestoreStartFailed", FailureKind.InvalidOperation, $"QEMU did not start the VM (exit code {started.ExitCode}): {started.Message}", destination);
            }

            IReadOnlyList<(int Pid, string StartTicks)> qemu = QemuProcessesOf(record.Id);
            if (qemu.Count != 1)
            {
                throw new VmQuiesceException("InstantRestoreStartFailed", FailureKind.InvalidOperation,
                    $"QEMU said it started the VM, but {qemu.Count} processes of this user are named {QemuName(record.Id)}, where one was expected.", destination);
            }

            (record.QemuProcessId, record.QemuStartTicks) = qemu[0];
        }

        /// <summary>The name (-name) of the QEMU of restore <paramref name="id"/>: no other process of this user carries it (ids are random).</summary>
        private static string QemuName(string id) => "vmquiesce-instant-restore-" + id;

        /// <summary>
        /// The live processes of this user whose arguments hold "-name <see cref="QemuName"/>": the QEMU of this
        /// restore (also while it is still starting, before any pid of it was read), with their start times.
        /// </summary>
        private static IReadOnlyList<(int Pid, string StartTicks)> QemuProcessesOf(string id)
        {
            string named = "\0-name\0" + QemuName(id) + "\0";
            var found = new List<(int Pid, string StartTicks)>();
            foreach (int pid in ProcessIdentity.ProcessIds())
            {
                string folder = "/proc/" + pid.ToString(CultureInfo.InvariantCulture);
                try
                {
                    // A zombie's arguments are empty; the folder's owner is the process's effective user.
                    if (("\0" + File.ReadAllText(folder + "/cmdline")).Contains(named) && UnixFiles.Stat(folder).Uid == Libc.geteuid() && ProcessIdentity.StartTicksOf(pid) is string ticks)
                    {
                        found.Add((pid, ticks));
                    }
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Ended meanwhile, or hidden from this user.
                }
            }

            return found;
        }

        /// <summary>
        /// Starts blockdev-mirror on each disk the VM still runs on its overlay (all of them at first; after an
        /// interruption, those whose copy had not completed), after dismissing the jobs an earlier process left; a
        /// mirror still running or ready is followed as it is.
        /// </summary>
        private void StartCopies(CancellationToken cancel)
        {
            var copying = new List<string>();
            using (QmpClient qmp = QmpClient.Connect(QmpSocket, TimeSpan.FromSeconds(30), cancel))
            {
                var left = qmp.ExecuteArray("query-jobs", cancel: cancel).OfType<JsonObject>().Where(job => job.GetString("id").StartsWith(JobPrefix, StringComparison.Ordinal)).ToList();
                foreach (JsonObject job in left.Where(job => job.GetString("status") == "concluded"))
                {
                    qmp.Execute("job-dismiss", new JsonObject().With("id", job.GetString("id")), cancel: cancel);
                }

                var running = new HashSet<string>(left.Where(job => job.GetString("status") != "concluded").Select(job => job.GetString("id")), StringComparer.Ordinal);
                var backed = new HashSet<string>(qmp.ExecuteArray("query-block", cancel: cancel).OfType<JsonObject>()
                    .Where(device => device.GetOptionalObject("inserted")?.GetOptionalString("backing_file") != null).Select(device => device.GetString("device")), StringComparer.Ordinal);
                var targets = new HashSet<string>(qmp.ExecuteArray("query-named-block-nodes", cancel: cancel).OfType<JsonObject>().Select(node => node.GetString("node-name")), StringComparer.Ordinal);
                for (int i = 0; i < Disks.Count; i++)
                {
                    string device = "disk" + i.ToString(CultureInfo.InvariantCulture);
                    if (running.Contains(JobId(i)))
                    {
                        copying.Add(JobId(i));
                    }
                    else if (backed.Contains(device))
                    {
                        if (!targets.Contains(TargetNode(i)))
                        {
                            AddTarget(qmp, i, cancel);
                        }

                        StartMirror(qmp, i, cancel);
                        copying.Add(JobId(i));
                    }
                }
            }

            _watch = Task.Run(() => Watch(copying));
        }

        /// <summary>
        /// Makes the local disk anew, the size the VM sees, and opens it in QEMU as the mirror's target. Whatever a
        /// dead process left at that path is deleted first (a link itself, never what it points at): the mirror copies
        /// every byte again anyway.
        /// </summary>
        private void AddTarget(QmpClient qmp, int disk, CancellationToken cancel)
        {
            JsonObject device = qmp.ExecuteArray("query-block", cancel: cancel).OfType<JsonObject>().Single(found => found.GetString("device") == "disk" + disk.ToString(CultureInfo.InvariantCulture));
            long size = device.GetObject("inserted").GetObject("image").GetInt64("virtual-size");
            File.Delete(Disks[disk]);
            RunQemuImg(new[] { "create", "-q", "-f", DiskImageFormat.Qcow2, "-o", LocalDiskOptions, Disks[disk], size.ToString(CultureInfo.InvariantCulture) }, cancel);
            try
            {
                qmp.Execute("blockdev-add", TargetOptions(disk, direct: true), cancel: cancel);
            }
            catch (VmQuiesceException)
            {
                // A file system without O_DIRECT (tmpfs): through the page cache, as a restore writes there.
                qmp.Execute("blockdev-add", TargetOptions(disk, direct: false), cancel: cancel);
            }
        }

        /// <summary>
        /// The local disk as QEMU opens it, written past the page cache when <paramref name="direct"/>, as a restore
        /// writes: copying through the page cache cost QEMU 3x the CPU (qemu-storage-daemon, a 4 GiB point,
        /// 2026-12-04), CPU the booting guest competes for. The VM keeps this mode once it runs on the disk.
        /// </summary>
        private JsonObject TargetOptions(int disk, bool direct) =>
            new JsonObject().With("driver", "qcow2").With("node-name", TargetNode(disk)).With("cache", new JsonObject().With("direct", direct))
                .With("file", new JsonObject().With("driver", "file").With("filename", Disks[disk]));

        private void StartMirror(QmpClient qmp, int disk, CancellationToken cancel) =>
            qmp.Execute("blockdev-mirror", new JsonObject().With("device", "disk" + disk.ToString(CultureInfo.InvariantCulture)).With("job-id", JobId(disk))
                .With("target", TargetNode(disk)).With("sync", "full").With("granularity", LocalClusterBytes).With("auto-dismiss", false).With("speed", CopyRateLimit), cancel: cancel);

        /// <summary>
        /// Follows the mirrors: each that is ready (every byte copied, the guest's new writes copied as they come) is
        /// completed, which moves the VM onto its local disk; once every one has concluded, the overlays are deleted
        /// and serving stops: the VM no longer reads the repository. After a resume, QEMU's NBD client fails requests
        /// until its background reconnection (which backs off up to 16 s between attempts) reaches the new server:
        /// within <see cref="ReconnectWindow"/>, while the server has failed no request, a mirror that failed starts
        /// again and a VM paused on a failed read runs on (QEMU retries it).
        /// </summary>
        private void Watch(IReadOnlyCollection<string> jobs)
        {
            try
            {
                using QmpClient qmp = QmpClient.Connect(QmpSocket, TimeSpan.FromSeconds(30), _stop.Token);
                var pending = new HashSet<string>(jobs, StringComparer.Ordinal);
                var completing = new HashSet<string>(StringComparer.Ordinal);
                long rateLimit = _record.CopyRateLimit;
                while (pending.Count > 0)
                {
                    bool reconnecting = DateTime.UtcNow < _reconnectUntil && _server!.Errors.Count == 0;
                    if (reconnecting && qmp.ExecuteObject("query-status", cancel: _stop.Token).GetString("status") == "io-error")
                    {
                        qmp.Execute("cont", cancel: _stop.Token);
                    }

                    if (CopyRateLimit != rateLimit)
                    {
                        rateLimit = CopyRateLimit;
                        foreach (string id in pending)
                        {
                            try
                            {
                                qmp.Execute("block-job-set-speed", new JsonObject().With("device", id).With("speed", rateLimit), cancel: _stop.Token);
                            }
                            catch (VmQuiesceException) when (HasConcluded(qmp, id))
                            {
                                // It ended since the last look (a resumed mirror can finish or fail at once): dismissed below.
                            }
                        }

                        _record.CopyRateLimit = rateLimit;
                        _record.Save();
                    }

                    long copied = 0, total = 0;
                    foreach (JsonObject job in qmp.ExecuteArray("query-jobs", cancel: _stop.Token).OfType<JsonObject>().Where(job => pending.Contains(job.GetString("id"))))
                    {
                        copied += job.GetInt64("current-progress");
                        total += job.GetInt64("total-progress");
                        string id = job.GetString("id");
                        if (job.GetString("status") == "ready" && completing.Add(id))
                        {
                            qmp.Execute("job-complete", new JsonObject().With("id", id), cancel: _stop.Token);
                        }
                        else if (job.GetString("status") == "concluded")
                        {
                            string? error = job.GetOptionalString("error");
                            qmp.Execute("job-dismiss", new JsonObject().With("id", id), cancel: _stop.Token);
                            pending.Remove(id);
                            completing.Remove(id);
                            if (error != null && reconnecting)
                            {
                                StartMirror(qmp, int.Parse(id.Substring(JobPrefix.Length), CultureInfo.InvariantCulture), _stop.Token);
                                pending.Add(id);
                            }
                            else if (error != null)
                            {
                                throw new VmQuiesceException("InstantRestoreCopyFailed", FailureKind.ReadError, $"The background copy of {id} stopped: {error}", Id);
                            }
                        }
                    }

                    Interlocked.Exchange(ref _copied, Math.Max(copied, CopiedBytes));
                    Interlocked.Exchange(ref _total, Math.Max(total, TotalBytes));
                    if (pending.Count > 0)
                    {
                        // A job that turns ready or concludes is acted on at once, not at the next look: the copy's
                        // time to completion included up to two intervals of waiting.
                        qmp.TryWaitForEvent("JOB_STATUS_CHANGE", null, PollInterval, _stop.Token);
                    }
                }

                Interlocked.Exchange(ref _copied, TotalBytes);
                if (qmp.ExecuteObject("query-status", cancel: _stop.Token).GetString("status") == "io-error")
                {
                    qmp.Execute("cont", cancel: _stop.Token); // a read that failed while the mirrors ran: every byte is local now
                }

                _server?.Stop();
                foreach (string overlay in Overlays.Where(File.Exists))
                {
                    File.Delete(overlay); // QEMU closed it when the mirror moved the VM onto its local disk
                }

                _record.Delete();
                CompletionTime = DateTime.UtcNow;
                StateValue = InstantRestoreState.Completed;
            }
            catch (OperationCanceledException)
            {
            }
            catch (VmQuiesceException e)
            {
                IReadOnlyList<Nbd.NbdServerError> unserved = _server?.Errors ?? Array.Empty<Nbd.NbdServerError>();
                Error = e.Message + (unserved.Count == 0 ? string.Empty : " The repository could not serve: " + string.Join("; ", unserved.Take(3).Select(error => error.Message)));
                StateValue = InstantRestoreState.Failed;
            }
        }

        private bool HasConcluded(QmpClient qmp, string jobId) =>
            qmp.ExecuteArray("query-jobs", cancel: _stop.Token).OfType<JsonObject>().Any(job => job.GetString("id") == jobId && job.GetString("status") == "concluded");

        /// <summary>The socket a dead server left (a socket file, never anything else).</summary>
        private void RemoveStaleSocket()
        {
            if (File.Exists(_record.SocketPath) && UnixFiles.Stat(_record.SocketPath).IsSocket)
            {
                File.Delete(_record.SocketPath);
            }
        }

        private const string JobPrefix = "vmquiesce-copy-disk";

        /// <summary>
        /// The layout of the local disks and overlays. Copies into 64 KiB clusters (qcow2's default) ran 3-4x slower
        /// than into 512 KiB ones (qemu-storage-daemon, a 1 GiB point, 2026-12-04). Subclusters (extended_l2, QEMU
        /// 5.2+) keep a guest's small write to an overlay from allocating a whole 512 KiB cluster.
        /// </summary>
        private static readonly string LocalDiskOptions = $"cluster_size={LocalClusterBytes / 1024}K,extended_l2=on";

        /// <summary>
        /// The local disks' cluster size, and the mirror's granularity: QEMU's default granularity is the target's
        /// cluster size capped at 64 KiB, which splits the copy into 8 requests and block-status queries per cluster.
        /// </summary>
        private const int LocalClusterBytes = 512 * 1024;

        /// <summary>How long after a resume failed reads are put down to QEMU's NBD client still reconnecting.</summary>
        private static readonly TimeSpan ReconnectWindow = TimeSpan.FromSeconds(90);

        private static string JobId(int disk) => JobPrefix + disk.ToString(CultureInfo.InvariantCulture);

        private static string TargetNode(int disk) => "vmquiesce-local-disk" + disk.ToString(CultureInfo.InvariantCulture);

        /// <summary>The VM's serial console, which QEMU writes (truncated first) in the destination.</summary>
        private static string ConsoleLogIn(string destination) => Path.Combine(destination, "console.log");

        /// <summary>The overlay of a local disk: beside it, a name no other disk of the point can have (theirs end in .qcow2).</summary>
        private static string OverlayOf(string disk) => disk + ".overlay";

        /// <summary>
        /// Ends QEMU process <paramref name="pid"/>, started at <paramref name="startTicks"/> (clock ticks since boot):
        /// QMP quit when its monitor answers, then a bounded wait for it to exit; SIGKILL when it did not answer or did
        /// not go, but only while that pid is still the process started then, never one that reused the id (nor one
        /// whose start is unknown). True once it has exited. What Stop and a failed start both end a VM with.
        /// </summary>
        private static bool EndQemu(int pid, string? startTicks, string qmpSocket)
        {
            bool quitSent;
            try
            {
                using QmpClient qmp = QmpClient.Connect(qmpSocket, TimeSpan.FromSeconds(10));
                qmp.Execute("quit");
                quitSent = true;
            }
            catch (VmQuiesceException)
            {
                quitSent = false; // the monitor does not answer (hung, stopped, still starting, or gone): killed below
            }

            if (quitSent && WaitUntilGone(pid, startTicks, TimeSpan.FromSeconds(30)))
            {
                return true;
            }

            if (startTicks != null && ProcessIdentity.StartTicksOf(pid) == startTicks)
            {
                Libc.kill(pid, SigKill);
            }

            return WaitUntilGone(pid, startTicks, TimeSpan.FromSeconds(10));
        }

        /// <summary>
        /// Whether QEMU process <paramref name="pid"/> has exited (or its pid now names a later process) within
        /// <paramref name="timeout"/>; it is no child of ours, so it is polled. A zombie has exited: its reaper (not
        /// us) gets <see cref="ReapGrace"/> to collect it, so that the pid is normally gone on return, and one that
        /// reaps nothing does not hold the caller up to the timeout.
        /// </summary>
        private static bool WaitUntilGone(int pid, string? startTicks, TimeSpan timeout)
        {
            DateTime deadline = DateTime.UtcNow + timeout;
            DateTime? reapedBy = null;
            while (ProcessIdentity.IsRunning(pid, startTicks, null))
            {
                if (ProcessIdentity.IsZombie(pid))
                {
                    reapedBy ??= DateTime.UtcNow + ReapGrace;
                    if (DateTime.UtcNow >= reapedBy)
                    {
                        return true;
                    }
                }
                else if (DateTime.UtcNow >= deadline)
                {
                    return false;
                }

                Thread.Sleep(50);
            }

            return true;
        }

        private static readonly TimeSpan ReapGrace = TimeSpan.FromSeconds(2);

        private const int SigKill = 9;

        private const int GroupOrOtherWrite = 0x12; // 0022

        private static void RunQemuImg(IEnumerable<string> arguments, CancellationToken cancel)
        {
            ToolResult result = QemuImage.Run(arguments, TimeSpan.FromMinutes(5), cancel);
            if (result.ExitCode != 0)
            {
                throw new VmQuiesceException("InstantRestoreStartFailed", FailureKind.InvalidOperation, $"'{result.CommandLine}' failed with exit code {result.ExitCode}: {result.Message}", result.CommandLine);
            }
        }

        private static string NewId() => Guid.NewGuid().ToString("N").Substring(0, 8);
    }
}
