using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
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
    }

    /// <summary>
    /// Start-VmInstantRestore: a restore point's VM started at once under QEMU, each disk a new local qcow2 whose
    /// backing file is the point's NBD export (served by this process, every chunk verified); the guest's writes go to
    /// the local disk; QEMU's block-stream copies everything else into it in the background; when every stream is
    /// done the local disks stand alone and the export ends. Disks stop the VM on a read or write error
    /// (rerror/werror=stop), so a failing export pauses the guest instead of feeding it errors.
    /// </summary>
    /// <remarks>
    /// The VM's command line is given by the caller (machine, memory, kernel: <see cref="BootCheckOptions"/>);
    /// restore points do not record it yet. The local disks are qcow2 whatever the point's format was.
    /// </remarks>
    public sealed class InstantRestore
    {
        private static readonly ConcurrentDictionary<string, InstantRestore> s_running = new ConcurrentDictionary<string, InstantRestore>(StringComparer.OrdinalIgnoreCase);
        private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

        private readonly RestorePointServer _server;
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private Task _watch = Task.CompletedTask;
        private long _copied;
        private long _total;

        private InstantRestore(string id, RestorePointServer server, string destination, IReadOnlyList<string> disks, int processId)
        {
            Id = id;
            _server = server;
            Destination = destination;
            Disks = disks;
            ProcessId = processId;
        }

        /// <summary>The instant restores this process started and still watches.</summary>
        public static IReadOnlyList<InstantRestore> Running => s_running.Values.OrderBy(restore => restore.Id, StringComparer.Ordinal).ToList();

        public string Id { get; }

        public string VmName => _server.VmName;

        public string RestorePointId => _server.RestorePointId;

        /// <summary>The folder of the VM's local disks, its sockets and console log.</summary>
        public string Destination { get; }

        /// <summary>The local qcow2 disks, in the point's order.</summary>
        public IReadOnlyList<string> Disks { get; }

        public string QmpSocket => Path.Combine(Destination, "qmp.sock");

        public string AgentSocket => Path.Combine(Destination, "qga.sock");

        /// <summary>The QEMU process that runs the VM.</summary>
        public int ProcessId { get; }

        public InstantRestoreState State { get; private set; } = InstantRestoreState.Copying;

        /// <summary>Why the copy failed, or null.</summary>
        public string? Error { get; private set; }

        /// <summary>Bytes the streams have copied so far, of <see cref="TotalBytes"/>.</summary>
        public long CopiedBytes => Interlocked.Read(ref _copied);

        public long TotalBytes => Interlocked.Read(ref _total);

        /// <summary>
        /// Starts the VM of <paramref name="point"/> from the repository with its disks in <paramref name="destination"/>
        /// (made when missing; it must not hold the disks yet), and the background copy.
        /// </summary>
        public static InstantRestore Start(BackupRepository repository, RestorePoint point, string destination, BootCheckOptions vm, CancellationToken cancel)
        {
            if (!HostPlatform.IsLinux)
            {
                throw new VmQuiesceException("InstantRestoreNotSupported", FailureKind.NotSupported, $"Instant restore runs QEMU on Linux; this is {HostPlatform.Name}.", point.Id);
            }

            destination = Path.GetFullPath(destination);
            var disks = point.Files.Select(file => Path.Combine(destination, Path.GetFileNameWithoutExtension(file.Path) + ".qcow2")).ToList();
            if (disks.Distinct(StringComparer.Ordinal).Count() != disks.Count || disks.Any(File.Exists) || File.Exists(Path.Combine(destination, "qmp.sock")))
            {
                throw new VmQuiesceException("InstantRestoreDestinationInUse", FailureKind.ResourceBusy,
                    $"Cannot restore '{point.Id}' into '{destination}': it holds disks or sockets of another VM, or two disks of the point share a name.", destination);
            }

            Directory.CreateDirectory(destination);
            RestorePointServer server = RestorePointServer.Start(repository, point);
            var made = new List<string>();
            try
            {
                for (int i = 0; i < server.Disks.Count; i++)
                {
                    ServedDisk disk = server.Disks[i];
                    string format = CheckedFormat(server, disk, cancel);
                    RunQemuImg(new[] { "create", "-q", "-f", DiskImageFormat.Qcow2, "-b", disk.Uri, "-F", format, disks[i] }, cancel);
                    made.Add(disks[i]);
                }

                int pid = StartQemu(vm, destination, disks, cancel);
                var restore = new InstantRestore(NewId(), server, destination, disks, pid);
                restore.StartStreams(cancel);
                s_running[restore.Id] = restore;
                return restore;
            }
            catch
            {
                made.ForEach(File.Delete);
                server.Stop();
                throw;
            }
        }

        public static InstantRestore? Find(string id) => s_running.TryGetValue(id, out InstantRestore? restore) ? restore : null;

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

            return State == InstantRestoreState.Completed;
        }

        /// <summary>Ends the VM (QMP quit), deletes its incomplete local disks and stops serving. A completed restore's VM and disks are left alone.</summary>
        public void Stop()
        {
            if (State == InstantRestoreState.Completed)
            {
                s_running.TryRemove(Id, out _);
                return;
            }

            _stop.Cancel();
            try
            {
                _watch.Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
            }

            try
            {
                using QmpClient qmp = QmpClient.Connect(QmpSocket, TimeSpan.FromSeconds(10));
                qmp.Execute("quit");
            }
            catch (VmQuiesceException)
            {
                // Already gone.
            }

            WaitForExit(ProcessId, TimeSpan.FromSeconds(30));
            _server.Stop();
            foreach (string disk in Disks.Where(File.Exists))
            {
                File.Delete(disk);
            }

            State = InstantRestoreState.Stopped;
            s_running.TryRemove(Id, out _);
        }

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

        private static int StartQemu(BootCheckOptions vm, string destination, IReadOnlyList<string> disks, CancellationToken cancel)
        {
            string program = HostTools.ForThisHost.Resolve(vm.QemuExecutable, "The VM option QemuExecutable");
            string pidFile = Path.Combine(destination, "qemu.pid");
            // -daemonize: the VM outlives this process. Its setsid() is what elevateprivileges=deny would refuse.
            var arguments = new List<string> { "-daemonize", "-pidfile", BootCheck.QemuPath(pidFile), "-sandbox", "on,obsolete=deny,resourcecontrol=deny" };
            arguments.AddRange(BootCheck.MachineArguments(vm, Path.Combine(destination, "console.log")));
            for (int i = 0; i < disks.Count; i++)
            {
                arguments.AddRange(new[]
                {
                    "-drive", $"if=none,id=disk{i},file={BootCheck.QemuPath(disks[i])},format=qcow2,werror=stop,rerror=stop",
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

            return int.Parse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
        }

        private void StartStreams(CancellationToken cancel)
        {
            using (QmpClient qmp = QmpClient.Connect(QmpSocket, TimeSpan.FromSeconds(30), cancel))
            {
                for (int i = 0; i < Disks.Count; i++)
                {
                    qmp.Execute("block-stream", new JsonObject().With("device", "disk" + i.ToString(CultureInfo.InvariantCulture)).With("job-id", JobId(i)).With("auto-dismiss", false), cancel: cancel);
                }
            }

            _watch = Task.Run(Watch);
        }

        /// <summary>Follows the streams until each has concluded, then stops serving: the VM no longer reads the repository.</summary>
        private void Watch()
        {
            try
            {
                using QmpClient qmp = QmpClient.Connect(QmpSocket, TimeSpan.FromSeconds(30), _stop.Token);
                var pending = new HashSet<string>(Enumerable.Range(0, Disks.Count).Select(JobId), StringComparer.Ordinal);
                while (pending.Count > 0)
                {
                    long copied = 0, total = 0;
                    foreach (JsonObject job in qmp.ExecuteArray("query-jobs", cancel: _stop.Token).OfType<JsonObject>().Where(job => pending.Contains(job.GetString("id"))))
                    {
                        copied += job.GetInt64("current-progress");
                        total += job.GetInt64("total-progress");
                        if (job.GetString("status") == "concluded")
                        {
                            string id = job.GetString("id");
                            string? error = job.GetOptionalString("error");
                            qmp.Execute("job-dismiss", new JsonObject().With("id", id), cancel: _stop.Token);
                            pending.Remove(id);
                            if (error != null)
                            {
                                throw new VmQuiesceException("InstantRestoreCopyFailed", FailureKind.ReadError, $"The background copy of {id} stopped: {error}", Id);
                            }
                        }
                    }

                    Interlocked.Exchange(ref _copied, Math.Max(copied, CopiedBytes));
                    Interlocked.Exchange(ref _total, Math.Max(total, TotalBytes));
                    if (pending.Count > 0)
                    {
                        _stop.Token.WaitHandle.WaitOne(PollInterval);
                        _stop.Token.ThrowIfCancellationRequested();
                    }
                }

                Interlocked.Exchange(ref _copied, TotalBytes);
                _server.Stop();
                State = InstantRestoreState.Completed;
            }
            catch (OperationCanceledException)
            {
            }
            catch (VmQuiesceException e)
            {
                IReadOnlyList<Nbd.NbdServerError> unserved = _server.Errors;
                Error = e.Message + (unserved.Count == 0 ? string.Empty : " The repository could not serve: " + string.Join("; ", unserved.Take(3).Select(error => error.Message)));
                State = InstantRestoreState.Failed;
            }
        }

        private static string JobId(int disk) => "vmquiesce-stream-disk" + disk.ToString(CultureInfo.InvariantCulture);

        private static void WaitForExit(int pid, TimeSpan timeout)
        {
            try
            {
                using var process = System.Diagnostics.Process.GetProcessById(pid);
                process.WaitForExit((int)timeout.TotalMilliseconds);
            }
            catch (ArgumentException)
            {
            }
        }

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
