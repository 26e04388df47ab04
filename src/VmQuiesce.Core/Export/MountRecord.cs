using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// What a mount of a restore point has set up so far, saved after every step under
    /// <see cref="RestorePointMount.RecordFolder"/> (a folder only root enters): whoever finds it can undo it,
    /// even after the process that made it is gone. Only records owned by this user are read.
    /// </summary>
    internal sealed class MountRecord
    {
        private const string Schema = "VmQuiesceMount";

        /// <summary>Mounts are root's: their records live in /run, checked as the other run-time records' folders are.</summary>
        private const string RunFolder = "/run";

        public MountRecord(string id, string folder, string vmName, string restorePointId, int serverProcessId)
        {
            Id = id;
            Folder = folder;
            VmName = vmName;
            RestorePointId = restorePointId;
            ServerProcessId = serverProcessId;
        }

        public string Id { get; }

        public string Folder { get; }

        public string VmName { get; }

        public string RestorePointId { get; }

        /// <summary>The process that serves the point over NBD.</summary>
        public int ServerProcessId { get; }

        public string? Scratch { get; set; }

        /// <summary>The mode the mount folder had when it existed before the mount (given back at the dismount); null when the mount made it.</summary>
        public int? FolderMode { get; init; }

        /// <summary>The FUSE files of the storage daemons: how a daemon, and a loop device reading it, are recognised before they are ended.</summary>
        public List<string> Daemons { get; } = new List<string>();

        public List<string> Mounts { get; } = new List<string>();

        public List<MountedFileSystem> FileSystems { get; } = new List<MountedFileSystem>();

        public void Save()
        {
            RuntimeFolder.Check(RunFolder, RestorePointMount.RecordFolder, create: true);
            RecordFile.Save(RestorePointMount.RecordFolder, Id, ToJson());
        }

        internal JsonObject ToJson() => new JsonObject()
            .With("schema", Schema)
            .With("id", Id)
            .With("folder", Folder)
            .With("vmName", VmName)
            .With("restorePointId", RestorePointId)
            .With("serverProcessId", ServerProcessId)
            .With("scratch", Scratch)
            .With("folderMode", FolderMode)
            .With("daemons", new JsonArray(Daemons.Cast<object?>()))
            .With("mounts", new JsonArray(Mounts.Cast<object?>()))
            .With("fileSystems", new JsonArray(FileSystems.Select(fs => (object?)new JsonObject().With("disk", fs.Disk).With("device", fs.Device).With("type", fs.Type).With("path", fs.Path))));

        public void Delete() => File.Delete(RecordFile.PathOf(RestorePointMount.RecordFolder, Id));

        /// <summary>
        /// The record in <paramref name="file"/>, or null when it is not one of this user's valid records. Throws when
        /// the file is in the record folder and that folder is not root's own.
        /// </summary>
        public static MountRecord? TryLoad(string file)
        {
            if (Path.GetDirectoryName(file) == RestorePointMount.RecordFolder && !RuntimeFolder.Check(RunFolder, RestorePointMount.RecordFolder, create: false))
            {
                return null;
            }

            JsonObject? json = RecordFile.TryRead(file, Schema);
            if (json == null)
            {
                return null;
            }

            try
            {
                var record = new MountRecord(json.GetString("id"), json.GetString("folder"), json.GetString("vmName"), json.GetString("restorePointId"), checked((int)json.GetInt64("serverProcessId")))
                {
                    Scratch = json.GetOptionalString("scratch"),
                    FolderMode = json.GetOptionalInt64("folderMode") is long mode && mode >= 0 && mode <= 0xFFF ? (int)mode : null,
                };
                record.Daemons.AddRange(json.GetArray("daemons").OfType<string>());
                record.Mounts.AddRange(json.GetArray("mounts").OfType<string>());
                record.FileSystems.AddRange(json.GetArray("fileSystems").OfType<JsonObject>()
                    .Select(fs => new MountedFileSystem(fs.GetString("disk"), fs.GetString("device"), fs.GetString("type"), fs.GetString("path"))));
                return Path.GetFileNameWithoutExtension(file) == record.Id ? record : null;
            }
            catch (Exception e) when (e is JsonFormatException || e is OverflowException)
            {
                return null;
            }
        }
    }
}
