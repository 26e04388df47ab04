using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// What an instant restore needs to be found and taken over by another session once the process that served
    /// its disks is gone: where the VM's disks and sockets are, which QEMU process runs it, which repository and
    /// point it is backed by, the socket its disks' backing files name, and who serves it now. Saved under
    /// <see cref="Folder"/> (only this user enters) when the VM starts and whenever the server changes; removed when
    /// the copy completes or the restore is stopped.
    /// </summary>
    internal sealed class InstantRestoreRecord
    {
        private const string Schema = "VmQuiesceInstantRestore";

        public InstantRestoreRecord(string id, string vmName, string restorePointId, string repository, string destination, IReadOnlyList<string> disks)
        {
            Id = id;
            VmName = vmName;
            RestorePointId = restorePointId;
            Repository = repository;
            Destination = destination;
            Disks = disks;
        }

        /// <summary>
        /// root: /run/vmquiesce/instant-restores; another user: vmquiesce/instant-restores in $XDG_RUNTIME_DIR (the
        /// user's own runtime folder, which systemd makes 0700), never a folder in /tmp another user could make first.
        /// Made when missing, and refused unless it and the folders above it up to the runtime folder are this user's
        /// own (<see cref="RuntimeFolder"/>): what a later command stops, kills and deletes comes from it.
        /// </summary>
        public static string Folder
        {
            get
            {
                string root = RuntimeFolder.Root ?? throw new VmQuiesceException("InstantRestoreNoRecordFolder", FailureKind.InvalidOperation,
                    "An instant restore keeps its state in /run/vmquiesce (root) or in $XDG_RUNTIME_DIR, which is not set for this user.", "XDG_RUNTIME_DIR")
                {
                    Remedy = "Run it as root, or in a login session that has a runtime folder (systemd sets XDG_RUNTIME_DIR).",
                };
                RuntimeFolder.Check(root, FolderIn(root), create: true);
                return FolderIn(root);
            }
        }

        private static string FolderIn(string runtimeRoot) => Path.Combine(runtimeRoot, "vmquiesce", "instant-restores");

        public string Id { get; }

        public string VmName { get; }

        public string RestorePointId { get; }

        public string Repository { get; }

        public string Destination { get; }

        public IReadOnlyList<string> Disks { get; }

        /// <summary>The NBD socket the local disks' backing files name: short and fixed, so a later server listens where QEMU reconnects.</summary>
        public string SocketPath => Path.Combine(Folder, Id + ".nbd.sock");

        public int QemuProcessId { get; set; }

        /// <summary>QEMU's start time in clock ticks, so a reused process id is never taken for the VM.</summary>
        public string? QemuStartTicks { get; set; }

        public int ServerProcessId { get; set; }

        public string? ServerStartTicks { get; set; }

        /// <summary>Bytes per second the background copy may use; 0 for no limit.</summary>
        public long CopyRateLimit { get; set; }

        public bool QemuIsRunning => QemuProcessId > 0 && ProcessIdentity.IsRunning(QemuProcessId, QemuStartTicks, null);

        public bool ServerIsRunning => ProcessIdentity.IsRunning(ServerProcessId, ServerStartTicks, null);

        /// <summary>Records this process as the one serving the disks, and saves.</summary>
        public void ServeHere()
        {
            ServerProcessId = ProcessIdentity.Current.Pid;
            ServerStartTicks = ProcessIdentity.Current.StartTicks;
            Save();
        }

        public void Save() => RecordFile.Save(Folder, Id, ToJson());

        internal JsonObject ToJson() => new JsonObject()
            .With("schema", Schema)
            .With("id", Id)
            .With("vmName", VmName)
            .With("restorePointId", RestorePointId)
            .With("repository", Repository)
            .With("destination", Destination)
            .With("disks", new JsonArray(Disks.Cast<object?>()))
            .With("qemuProcessId", QemuProcessId)
            .With("qemuStartTicks", QemuStartTicks)
            .With("serverProcessId", ServerProcessId)
            .With("serverStartTicks", ServerStartTicks)
            .With("copyRateLimit", CopyRateLimit);

        public void Delete() => File.Delete(RecordFile.PathOf(Folder, Id));

        /// <summary>
        /// This user's records, in id order (none when this user has no record folder); files that are not valid records are
        /// passed over. Throws when the folder is not this user's own (see <see cref="Folder"/>).
        /// </summary>
        public static IReadOnlyList<InstantRestoreRecord> LoadAll()
        {
            string? root = RuntimeFolder.Root;
            if (root == null || !RuntimeFolder.Check(root, FolderIn(root), create: false))
            {
                return Array.Empty<InstantRestoreRecord>();
            }

            return Directory.EnumerateFiles(FolderIn(root), "*.json").Select(TryLoad).OfType<InstantRestoreRecord>().OrderBy(record => record.Id, StringComparer.Ordinal).ToList();
        }

        /// <summary>The record in <paramref name="file"/>, or null when it is not one of this user's valid records.</summary>
        internal static InstantRestoreRecord? TryLoad(string file)
        {
            JsonObject? json = RecordFile.TryRead(file, Schema);
            if (json == null)
            {
                return null;
            }

            try
            {
                string destination = json.GetString("destination");
                var record = new InstantRestoreRecord(json.GetString("id"), json.GetString("vmName"), json.GetString("restorePointId"), json.GetString("repository"), destination,
                    json.GetArray("disks").OfType<string>().ToList())
                {
                    QemuProcessId = checked((int)json.GetInt64("qemuProcessId")),
                    QemuStartTicks = json.GetOptionalString("qemuStartTicks"),
                    ServerProcessId = checked((int)json.GetInt64("serverProcessId")),
                    ServerStartTicks = json.GetOptionalString("serverStartTicks"),
                    CopyRateLimit = json.GetInt64("copyRateLimit"),
                };

                // Its own file, and disks only inside its own folder: a record never makes a later session delete other files.
                bool disksInside = Path.IsPathRooted(destination) && record.Disks.All(disk => Path.GetDirectoryName(disk) == destination && disk.EndsWith(".qcow2", StringComparison.Ordinal));
                return Path.GetFileNameWithoutExtension(file) == record.Id && disksInside ? record : null;
            }
            catch (Exception e) when (e is JsonFormatException || e is OverflowException)
            {
                return null;
            }
        }
    }
}
