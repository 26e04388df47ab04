using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>An overlay a backup put (or was about to put) on a disk, as its run record keeps it.</summary>
    internal sealed class RecordedOverlay
    {
        public RecordedOverlay(string disk, string basePath, string overlayPath)
        {
            Disk = disk;
            BasePath = basePath;
            OverlayPath = overlayPath;
        }

        /// <summary>How QMP names the disk (drive id or node name).</summary>
        public string Disk { get; }

        public string BasePath { get; }

        public string OverlayPath { get; }
    }

    /// <summary>
    /// What a QEMU backup in progress may leave on its VM, written on the host before it can leave it:
    /// which process runs it, whether the guest may be frozen, which overlays, job and internal snapshot it
    /// makes. A run that ends normally deletes its record; a record whose process is gone tells the next
    /// command that touches the VM what a dead run left, and that VmQuiesce (not someone else) froze the
    /// guest. Records live in a folder only this account can read and write (/run/vmquiesce for root),
    /// one per VM (named after its QMP socket); a record that is not a regular file of ours is ignored.
    /// </summary>
    internal sealed class QemuRunRecord
    {
        private const int MaxRecordBytes = 64 * 1024;
        // The runs of this process (a set: each id maps to itself; bool values would be compiled at run time).
        private static readonly ConcurrentDictionary<string, string> s_activeRuns = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        private static readonly Lazy<ThisProcess> s_thisProcess = new Lazy<ThisProcess>(() => new ThisProcess(HostPlatform.ProcessId));

        private QemuRunRecord(string path, JsonObject json)
        {
            Path = path;
            Json = json;
        }

        /// <summary>The folder of the records: /run/vmquiesce for root on Linux, else a per-user folder.</summary>
        public static string Folder => ChooseFolder().Folder;

        public string Path { get; }

        public string RunId => Json.GetString("runId");

        public string VmName => Json.GetString("vm");

        public string QmpSocket => Json.GetString("qmpSocket");

        public string? AgentSocket => Json.GetOptionalString("agentSocket");

        public int ProcessId => (int)Json.GetInt64("processId");

        public DateTime Started => DateTime.Parse(Json.GetString("started"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

        /// <summary>The freeze may have been sent and no thaw was confirmed.</summary>
        public bool MayBeFrozen => Json.GetOptionalBoolean("mayBeFrozen") ?? false;

        /// <summary>The QEMU process the run worked with (pid, start), when it could be told.</summary>
        public string? QemuProcess => Json.GetOptionalString("qemuProcess");

        public IReadOnlyList<RecordedOverlay> Overlays =>
            (Json.GetOptionalArray("overlays") ?? new JsonArray()).OfType<JsonObject>()
                .Select(o => new RecordedOverlay(o.GetString("disk"), o.GetString("base"), o.GetString("overlay"))).ToList();

        public string? SnapshotTag => Json.GetOptionalString("snapshotTag");

        /// <summary>
        /// The run was about to start (or started) QEMU's NBD server for a change-tracked read: if the run dies, the
        /// server is VmQuiesce's to stop, even before any export was added to it (QEMU runs one NBD server at a time,
        /// and cannot say who started it).
        /// </summary>
        public bool NbdServerStarted => Json.GetOptionalBoolean("nbdServer") ?? false;

        /// <summary>Who thawed the guest after the run's process ended (the guardian), and when.</summary>
        public string? ThawedAfterwards => Json.GetOptionalString("thawedAfterwards");

        private JsonObject Json { get; }

        /// <summary>
        /// The record of a VM, or null when there is none (or none that can be believed). Throws when the records' folder
        /// in the runtime folder is not this account's own (<see cref="RuntimeFolder"/>).
        /// </summary>
        public static QemuRunRecord? Load(string qmpSocket)
        {
            (string? runtimeRoot, string folder) = ChooseFolder();
            return runtimeRoot != null && !RuntimeFolder.Check(runtimeRoot, folder, create: false) ? null : LoadFile(PathFor(qmpSocket));
        }

        /// <summary>Reads a record file: a regular file of this account, not a link, of bounded size; null when missing or not believable.</summary>
        public static QemuRunRecord? LoadFile(string path)
        {
            try
            {
                FileIdentity? file = HostPlatform.IsLinux ? LinuxProcessInspector.Stat(path, followLinks: false) : null;
                var info = new FileInfo(path);
                if (!info.Exists || ReparsePoints.RedirectionByPath(path) != null || info.Length > MaxRecordBytes
                    || (file != null && (!file.IsRegularFile || file.Uid != CurrentUid())))
                {
                    return null;
                }

                JsonObject json = JsonText.ParseObject(File.ReadAllText(path, Encoding.UTF8), new JsonLimits(8, 10_000));
                var record = new QemuRunRecord(path, json);
                _ = (record.RunId, record.VmName, record.QmpSocket, record.ProcessId, record.Started, record.Overlays);
                return record;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is FormatException)
            {
                return null;
            }
        }

        /// <summary>Starts the record of a new run, written before anything changes on the VM.</summary>
        public static QemuRunRecord Begin(string vmName, string qmpSocket, string? agentSocket, QemuPeer? qemu, IEnumerable<RecordedOverlay> overlays, string? snapshotTag)
        {
            var json = new JsonObject()
                .With("schema", 1L)
                .With("runId", Guid.NewGuid().ToString("N"))
                .With("vm", vmName)
                .With("qmpSocket", qmpSocket)
                .With("agentSocket", agentSocket)
                .With("processId", (long)s_thisProcess.Value.Id)
                .With("processStart", s_thisProcess.Value.Start)
                .With("host", Environment.MachineName)
                .With("started", DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture))
                .With("qemuProcess", qemu == null ? null : QemuIdentity(qemu.ProcessId))
                .With("mayBeFrozen", agentSocket != null)
                .With("overlays", new JsonArray(overlays.Select(o => (object?)new JsonObject().With("disk", o.Disk).With("base", o.BasePath).With("overlay", o.OverlayPath))))
                .With("snapshotTag", snapshotTag);
            var record = new QemuRunRecord(PathFor(qmpSocket), json);
            s_activeRuns[record.RunId] = record.RunId;
            record.Save();
            return record;
        }

        /// <summary>"pid:start" of a QEMU process, to tell it from a later one with the same pid.</summary>
        public static string? QemuIdentity(int processId) =>
            ProcessStart(processId) is string start ? processId.ToString(CultureInfo.InvariantCulture) + ":" + start : null;

        /// <summary>Whether the process that wrote this record still runs this backup.</summary>
        public bool WriterIsAlive()
        {
            string start = Json.GetOptionalString("processStart") ?? "";
            if (ProcessId == s_thisProcess.Value.Id && start == s_thisProcess.Value.Start)
            {
                return s_activeRuns.ContainsKey(RunId);
            }

            return start.Length > 0 && ProcessStart(ProcessId) == start;
        }

        /// <summary>The guest is thawed (by the run itself or the guardian): the next command must not thaw on this record's word.</summary>
        public void MarkThawed(string? byWhom)
        {
            Json["mayBeFrozen"] = false;
            if (byWhom != null)
            {
                Json["thawedAfterwards"] = byWhom;
            }

            Save();
        }

        /// <summary>
        /// Recorded before nbd-server-start is sent, so that a run killed right after it is known to have started the
        /// server; taken back when QEMU refused (the server that runs is then another tool's).
        /// </summary>
        public void MarkNbdServer(bool started)
        {
            Json["nbdServer"] = started;
            Save();
        }

        /// <summary>The run is over here (its leftovers, if any, stay recorded for the next command).</summary>
        public void EndRun() => s_activeRuns.TryRemove(RunId, out _);

        /// <summary>Nothing is left: the record goes.</summary>
        public void Delete()
        {
            EndRun();
            File.Delete(Path);
        }

        public override string ToString() => $"the backup run by VmQuiesce process {ProcessId} since {Started.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}";

        /// <summary>A process's start, as a string that stays the same for its whole life and differs for a later process with the same pid.</summary>
        internal static string? ProcessStart(int processId)
        {
            if (HostPlatform.IsLinux)
            {
                return LinuxProcessInspector.StartTime(processId)?.ToString(CultureInfo.InvariantCulture);
            }

            try
            {
                using Process process = Process.GetProcessById(processId);
                return process.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);
            }
            catch (Exception e) when (e is ArgumentException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
            {
                return null;
            }
        }

        internal static string PathFor(string qmpSocket)
        {
            using SHA256 sha = SHA256.Create();
            byte[] digest = sha.ComputeHash(Encoding.UTF8.GetBytes(System.IO.Path.GetFullPath(qmpSocket)));
            return System.IO.Path.Combine(Folder, "run-" + BitConverter.ToString(digest, 0, 16).Replace("-", "").ToLowerInvariant() + ".json");
        }

        private static uint CurrentUid() => HostPlatform.IsLinux ? LinuxProcessInspector.UserIds(s_thisProcess.Value.Id)?[1] ?? uint.MaxValue : 0;

        /// <summary>
        /// The records' folder, and the runtime folder it is in (/run for root, $XDG_RUNTIME_DIR for another account);
        /// without one, a folder of this account's own in the temporary folder (and no runtime folder).
        /// </summary>
        private static (string? RuntimeRoot, string Folder) ChooseFolder()
        {
            if (HostPlatform.IsWindows)
            {
                return (null, System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "VmQuiesce", "runs"));
            }

            return RuntimeFolder.Root is string root ? (root, System.IO.Path.Combine(root, "vmquiesce"))
                : (null, System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vmquiesce-" + CurrentUid().ToString(CultureInfo.InvariantCulture)));
        }

        /// <summary>The folder, made if missing; refused when it is a link, or (Unix) not this account's own 0700 folder.</summary>
        private static void EnsureFolder()
        {
            (string? runtimeRoot, string folder) = ChooseFolder();
            if (runtimeRoot != null)
            {
                // It and the folders up to the runtime folder are this account's, writable by it alone (made 0700).
                RuntimeFolder.Check(runtimeRoot, folder, create: true);
            }
            else
            {
                Directory.CreateDirectory(folder);
            }

            if (HostPlatform.IsWindows)
            {
                return;
            }

            FileIdentity? found = HostPlatform.IsLinux ? LinuxProcessInspector.Stat(folder, followLinks: false) : null;
            if (found != null && ((found.Mode & 0xF000) != 0x4000 || found.Uid != CurrentUid()))
            {
                throw new IOException($"'{folder}' is {found.Kind} of another account, not this account's own folder");
            }

            if (Libc.chmod(folder, 0x1C0) != 0)
            {
                throw new IOException($"cannot make '{folder}' private (chmod 700)");
            }
        }

        private void Save()
        {
            EnsureFolder();
            string temp = Path + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                byte[] bytes = Encoding.UTF8.GetBytes(Json.ToString());
                stream.Write(bytes, 0, bytes.Length);
            }

            if (HostPlatform.IsWindows)
            {
                if (File.Exists(Path))
                {
                    File.Replace(temp, Path, null);
                }
                else
                {
                    File.Move(temp, Path);
                }
            }
            else if (Libc.rename(temp, Path) != 0)
            {
                File.Delete(temp);
                throw new IOException($"cannot write '{Path}' (rename failed with error {Marshal.GetLastWin32Error()})");
            }
        }

        /// <summary>This process, as a run record names it (a class: a lazy tuple would be compiled at run time on the way to the freeze).</summary>
        private sealed class ThisProcess
        {
            public ThisProcess(int id)
            {
                Id = id;
                Start = ProcessStart(id) ?? "";
            }

            public int Id { get; }

            public string Start { get; }
        }
    }
}
