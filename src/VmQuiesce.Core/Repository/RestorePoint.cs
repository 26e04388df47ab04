using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// One restore point: a complete copy of a VM's files at the captured point in time, as its manifest
    /// records it. Every restore point is a full restore, however little the backup stored.
    /// </summary>
    public sealed class RestorePoint
    {
        internal const string Schema = "VmQuiesceRestorePoint";
        /// <summary>
        /// 3: files carry "sizeAndChunksSha256" (see <see cref="FileDigestKind"/>) and may carry "owner" and
        /// "allocatedBytes"; 2 carried "chunkListSha256", 1 a content "sha256": both still read.
        /// </summary>
        internal const int SchemaVersion = 3;

        public RestorePoint(
            string id,
            string vmName,
            string host,
            string sourceKind,
            DateTime startTime,
            DateTime endTime,
            CapturedSnapshot? snapshot,
            QuiesceRecord quiesce,
            bool snapshotReleased,
            string? releaseError,
            int chunkSize,
            long storedBytes,
            long newChunkBytes,
            IReadOnlyList<RestorePointFile> files)
        {
            Id = id;
            VmName = vmName;
            Host = host;
            SourceKind = sourceKind;
            StartTime = startTime.ToUniversalTime();
            EndTime = endTime.ToUniversalTime();
            Snapshot = snapshot;
            Quiesce = quiesce;
            SnapshotReleased = snapshotReleased;
            ReleaseError = releaseError;
            ChunkSize = chunkSize;
            StoredBytes = storedBytes;
            NewChunkBytes = newChunkBytes;
            Files = files;
        }

        public string Id { get; }

        public string VmName { get; }

        /// <summary>The VM's own UUID (QEMU's query-uuid) when its hypervisor reports one: one VM's points share it, whatever it was called.</summary>
        public Guid? VmUuid { get; init; }

        /// <summary>What groups one VM's points (for -Latest and retention): its UUID when recorded, else its name.</summary>
        public string VmKey => VmUuid?.ToString() ?? VmName.ToUpperInvariant();

        /// <summary>
        /// The folders the VM used at backup time (of its configuration file, where it has one, and of its disks): a
        /// restore to the original location writes nowhere else. Null in points made before they were recorded.
        /// </summary>
        public IReadOnlyList<string>? VmFolders { get; init; }

        /// <summary>
        /// The machine the VM ran as at backup time (QEMU: machine type, memory, CPUs, CPU model), which instant
        /// restores and boot checks start with unless told otherwise. Null for other sources and for points made
        /// before it was recorded.
        /// </summary>
        public VmMachine? Machine { get; init; }

        /// <summary>The folders of <paramref name="paths"/> (full paths; those not absolute are left out): what <see cref="VmFolders"/> records.</summary>
        internal static IReadOnlyList<string> FoldersOf(IEnumerable<string> paths) => paths
            .Where(path => !string.IsNullOrEmpty(path) && System.IO.Path.IsPathRooted(path))
            .Select(path => System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!)
            .Distinct()
            .ToList();

        /// <summary>The machine that ran the backup.</summary>
        public string Host { get; }

        /// <summary>The source kind: "Qemu", "VMware", "HostVss", "Files".</summary>
        public string SourceKind { get; }

        /// <summary>UTC.</summary>
        public DateTime StartTime { get; }

        /// <summary>UTC: when the backup had stored all the point's data (its snapshot was released after).</summary>
        public DateTime EndTime { get; }

        /// <summary>Seconds from start to end: a number, as automation and ConvertTo-Json want it.</summary>
        public double Duration => (EndTime - StartTime).TotalSeconds;

        /// <summary>The snapshot the restore's second step reverts to, or null.</summary>
        public CapturedSnapshot? Snapshot { get; }

        /// <summary>The consistency the backup actually reached.</summary>
        public string Consistency => Quiesce.Reached;

        internal Consistency ConsistencyValue => Quiesce.ReachedValue;

        public QuiesceRecord Quiesce { get; }

        /// <summary>
        /// False when something the backup made is still on the VM: the snapshot -KeepSnapshot kept (a restore reverts
        /// to it; Remove-VmBackup deletes a VMware one with the last point that records it), or what the source could
        /// not release (see <see cref="ReleaseError"/>).
        /// </summary>
        public bool SnapshotReleased { get; }

        public string? ReleaseError { get; }

        public int ChunkSize { get; }

        /// <summary>Bytes this backup added to the chunk store (after compression); the rest was already there.</summary>
        public long StoredBytes { get; }

        /// <summary>
        /// The data in the chunks this backup added, before compression: <see cref="StoredBytes"/> is what they
        /// took on disk. 0 when nothing was added, and in points made before VmQuiesce recorded it.
        /// </summary>
        public long NewChunkBytes { get; }

        /// <summary>
        /// The new chunks' data divided by the bytes they took (2.0: stored in half the space); null when this
        /// backup added nothing, or did not record it.
        /// </summary>
        public double? CompressionRatio => NewChunkBytes > 0 && StoredBytes > 0 ? (double)NewChunkBytes / StoredBytes : (double?)null;

        public IReadOnlyList<RestorePointFile> Files { get; }

        /// <summary>"Incremental" when every tracked disk read only what changed, "Full" when one was read in full; null without change tracking.</summary>
        public string? ChangeTracking => ChangeTrackingRecord.Summarize(Files.Select(file => file.ChangeTrackingValue));

        /// <summary>Sum of the files' sizes: what a restore writes.</summary>
        public long Size
        {
            get
            {
                // A loop: Sum over longs is compiled at run time, as each backup reports its progress.
                long size = 0;
                foreach (RestorePointFile file in Files)
                {
                    size += file.Size;
                }

                return size;
            }
        }

        /// <summary>The repository folder this point was read from (not stored in the manifest).</summary>
        public string Repository { get; internal set; } = string.Empty;

        /// <summary>The manifest file this point was read from: what identifies it (two files may claim one id).</summary>
        internal string ManifestFile { get; set; } = string.Empty;

        public override string ToString() => $"{VmName} {Id}";

        internal JsonObject ToJson()
        {
            var files = new JsonArray(Files.Select(file => (object?)new JsonObject()
                .With("path", file.Path)
                .With("originalPath", file.OriginalPath)
                .With("format", file.Format)
                .With("size", file.Size)
                .With("allocatedBytes", file.AllocatedBytes)
                .With("owner", file.OwnerValue?.ToJson())
                .With(DigestMember(file.DigestKindValue), file.Digest)
                .With("chunks", new JsonArray(file.Chunks.Select(chunk => (object?)(chunk ?? ZeroChunk))))
                .With("restoreAs", file.RestoreAsValue?.ToJson())
                .With("changeTracking", file.ChangeTrackingValue?.ToJson())));
            return new JsonObject()
                .With("schema", Schema)
                .With("schemaVersion", SchemaVersion)
                .With("id", Id)
                .With("vmName", VmName)
                .With("vmUuid", VmUuid?.ToString())
                .With("host", Host)
                .With("vmFolders", VmFolders == null ? null : new JsonArray(VmFolders.Select(folder => (object?)folder)))
                .With("machine", Machine?.ToJson())
                .With("sourceKind", SourceKind)
                .With("startTime", FormatTime(StartTime))
                .With("endTime", FormatTime(EndTime))
                .With("snapshot", Snapshot == null ? null : new JsonObject()
                    .With("name", Snapshot.Name)
                    .With("id", Snapshot.Id)
                    .With("kind", Snapshot.Kind)
                    .With("vmrunPath", Snapshot.VmrunPath)
                    .With("vmrunHostType", Snapshot.VmrunHostType))
                .With("consistency", Quiesce.Reached.ToString())
                .With("quiesceMethod", Quiesce.Method)
                .With("frozen", new JsonArray(Quiesce.Frozen.Select(item => (object?)item)))
                .With("frozenMilliseconds", Quiesce.FrozenMilliseconds)
                .With("frozenMeasure", Quiesce.FrozenMeasure)
                .With("snapshotReleased", SnapshotReleased)
                .With("releaseError", ReleaseError)
                .With("chunkSize", ChunkSize)
                .With("size", Size)
                .With("storedBytes", StoredBytes)
                .With("newChunkBytes", NewChunkBytes)
                .With("files", files);
        }

        /// <summary>
        /// This point as a repository whose chunks have other ids names it (a copy between repositories with other
        /// keys): each chunk renamed by <paramref name="rename"/>, each chunk-list digest computed anew over the new
        /// list (a content digest stays as it is). Every other member is kept as it is.
        /// </summary>
        internal RestorePoint WithChunkIds(Func<string, string> rename)
        {
            JsonObject json = ToJson();
            var files = json.GetArray("files");
            for (int i = 0; i < Files.Count; i++)
            {
                RestorePointFile file = Files[i];
                var chunks = file.Chunks.Select(chunk => chunk == null ? null : rename(chunk)).ToList();
                string digest = file.DigestKindValue == FileDigestKind.ContentSha256 ? file.Digest : FileDigest.OfChunks(file.DigestKindValue, file.Size, chunks);
                ((JsonObject)files[i]!)
                    .With(DigestMember(file.DigestKindValue), digest)
                    .With("chunks", new JsonArray(chunks.Select(chunk => (object?)(chunk ?? ZeroChunk))));
            }

            // Through its text, as a manifest is read: the members keep the types a parsed manifest has.
            RestorePoint renamed = FromJson(JsonText.ParseObject(JsonText.Serialize(json, indented: false)));
            renamed.Repository = Repository;
            return renamed;
        }

        private static string DigestMember(FileDigestKind kind) => kind switch
        {
            FileDigestKind.SizeAndChunkListSha256 => "sizeAndChunksSha256",
            FileDigestKind.ChunkListSha256 => "chunkListSha256",
            _ => "sha256",
        };

        /// <summary>The block a restore leaves as a hole when it is all zero: what "allocatedBytes" counts in.</summary>
        internal const int AllocationBlock = 4096;

        /// <summary>The chunk-list entry for an all-zero chunk, which is never stored.</summary>
        internal const string ZeroChunk = "zero";

        internal static RestorePoint FromJson(JsonObject json)
        {
            if (json.GetString("schema") != Schema)
            {
                throw new JsonFormatException($"The member 'schema' is '{json.GetString("schema")}'; expected '{Schema}'.");
            }

            long version = json.GetInt64("schemaVersion");
            if (version > SchemaVersion)
            {
                throw new JsonFormatException($"The manifest has schema version {version}; this VmQuiesce reads up to version {SchemaVersion}. Update VmQuiesce.");
            }

            JsonObject? snapshot = json.GetOptionalObject("snapshot");
            var frozen = json.GetArray("frozen").Select(item => item as string ?? throw new JsonFormatException("The member 'frozen' must hold strings.")).ToList();
            var quiesce = new QuiesceRecord(
                ParseConsistency(json.GetString("consistency")),
                frozen,
                json.GetDouble("frozenMilliseconds"),
                json.GetString("quiesceMethod"),
                json.GetOptionalString("frozenMeasure"));
            var files = new List<RestorePointFile>();
            foreach (object? item in json.GetArray("files"))
            {
                var file = item as JsonObject ?? throw new JsonFormatException("The member 'files' must hold objects.");
                var chunks = file.GetArray("chunks").Select(chunk => chunk is string hash
                    ? (hash == ZeroChunk ? null : hash)
                    : throw new JsonFormatException("A chunk list entry must be a SHA-256 hex string or 'zero'.")).ToList();
                FileDigestKind kind = file.GetOptionalString(DigestMember(FileDigestKind.SizeAndChunkListSha256)) != null ? FileDigestKind.SizeAndChunkListSha256
                    : file.GetOptionalString(DigestMember(FileDigestKind.ChunkListSha256)) != null ? FileDigestKind.ChunkListSha256
                    : FileDigestKind.ContentSha256;
                string digest = file.GetString(DigestMember(kind));
                JsonObject? owner = file.GetOptionalObject("owner");
                long size = file.GetInt64("size");
                if (size < 0)
                {
                    throw new JsonFormatException($"The member 'size' is {size}; expected a file's size in bytes, 0 or more.");
                }

                long? allocated = file.GetOptionalInt64("allocatedBytes");
                if (allocated < 0 || allocated > size + AllocationBlock)
                {
                    throw new JsonFormatException($"The member 'allocatedBytes' is {allocated} for a file of {size} bytes.");
                }

                files.Add(new RestorePointFile(file.GetString("path"), file.GetString("originalPath"), size, digest, kind, chunks)
                {
                    AllocatedBytes = allocated,
                    OwnerValue = owner == null ? null : FileOwner.FromJson(owner),
                    Format = file.GetOptionalString("format"),
                    RestoreAsValue = file.GetOptionalObject("restoreAs") is JsonObject layout ? DiskImageLayout.FromJson(layout) : null,
                    ChangeTrackingValue = file.GetOptionalObject("changeTracking") is JsonObject tracking ? ChangeTrackingRecord.FromJson(tracking) : null,
                });
            }

            return new RestorePoint(
                json.GetString("id"),
                json.GetString("vmName"),
                json.GetString("host"),
                json.GetString("sourceKind"),
                ParseTime(json.GetString("startTime")),
                ParseTime(json.GetString("endTime")),
                snapshot == null ? null : new CapturedSnapshot(snapshot.GetString("name"), snapshot.GetOptionalString("id"), snapshot.GetString("kind"))
                {
                    VmrunPath = snapshot.GetOptionalString("vmrunPath"),
                    VmrunHostType = snapshot.GetOptionalString("vmrunHostType"),
                },
                quiesce,
                json.GetBoolean("snapshotReleased"),
                json.GetOptionalString("releaseError"),
                checked((int)json.GetInt64("chunkSize")),
                json.GetInt64("storedBytes"),
                json.GetOptionalInt64("newChunkBytes") ?? 0,
                files)
            {
                VmUuid = json.GetOptionalString("vmUuid") is string uuid
                    ? (Guid.TryParse(uuid, out Guid parsed) ? parsed : throw new JsonFormatException($"The member 'vmUuid' is '{uuid}'; expected a UUID."))
                    : (Guid?)null,
                Machine = json.GetOptionalObject("machine") is JsonObject machine ? VmMachine.FromJson(machine) : null,
                VmFolders = json.GetOptionalArray("vmFolders")?.Select(item => item as string ?? throw new JsonFormatException("The member 'vmFolders' must hold strings.")).ToList(),
            };
        }

        private static Consistency ParseConsistency(string text) =>
            JsonObject.EnumMemberNamed(typeof(Consistency), text) is Consistency value
                ? value
                : throw new JsonFormatException($"The member 'consistency' is '{text}'; expected Application, FileSystem or Crash.");

        private static string FormatTime(DateTime time) => time.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

        private static DateTime ParseTime(string text) =>
            DateTime.ParseExact(text, "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
    }

    /// <summary>One file of a restore point and the chunks that rebuild it.</summary>
    public sealed class RestorePointFile
    {
        /// <summary>A file of a new restore point: its digest is computed from <paramref name="size"/> and <paramref name="chunks"/>.</summary>
        public RestorePointFile(string path, string originalPath, long size, IReadOnlyList<string?> chunks)
            : this(path, originalPath, size, FileDigest.OfSizeAndChunks(size, chunks), FileDigestKind.SizeAndChunkListSha256, chunks)
        {
        }

        public RestorePointFile(string path, string originalPath, long size, string digest, FileDigestKind digestKind, IReadOnlyList<string?> chunks)
        {
            Path = path;
            OriginalPath = originalPath;
            Size = size;
            Digest = digest;
            DigestKindValue = digestKind;
            Chunks = chunks;
        }

        /// <summary>Path inside the restore point, with '/' separators.</summary>
        public string Path { get; }

        /// <summary>Where the file lived on the VM's host: the default restore location.</summary>
        public string OriginalPath { get; }

        public long Size { get; }

        /// <summary>The whole-file digest, lowercase hex; <see cref="DigestKind"/> says what it covers.</summary>
        public string Digest { get; }

        public string DigestKind => DigestKindValue.ToString();

        internal FileDigestKind DigestKindValue { get; }

        /// <summary>
        /// SHA-256 hex of each chunk in order; null for an all-zero chunk (a hole, never stored). Not a property, so
        /// ConvertTo-Json and Format-List leave the list (thousands of hashes per disk) out unless it is asked for.
        /// </summary>
        public IReadOnlyList<string?> GetChunks() => Chunks;

        internal IReadOnlyList<string?> Chunks { get; }

        /// <summary>
        /// Bytes of the 4 KiB blocks that hold data (not all zeros): what a restore allocates, as a restore leaves
        /// the rest as holes. Null for points from before schema 3 (a restore then assumes every data chunk whole).
        /// </summary>
        public long? AllocatedBytes { get; init; }

        /// <summary>
        /// Who owned the original file, and its permissions (Unix), as "uid:gid mode" (such as "0:0 0640"); null when
        /// unknown (the restore then makes it 0600). A file's members are plain values, so a restore point's JSON
        /// stays within ConvertTo-Json's default depth; <see cref="GetOwner"/> returns the parts.
        /// </summary>
        public string? Owner => OwnerValue?.ToString();

        /// <summary>The owner's numeric ids and mode, or null.</summary>
        public FileOwner? GetOwner() => OwnerValue;

        internal FileOwner? OwnerValue { get; init; }

        /// <summary>
        /// The disk image format the source recorded ("raw", "qcow2", "vmdk"), or null: not a disk, the source
        /// could not be certain, or a restore point made before formats were recorded. Never guessed from the bytes.
        /// </summary>
        public string? Format { get; init; }

        /// <summary>
        /// Set when the chunks hold the disk as the guest saw it (raw content, <see cref="Format"/> "raw") and a
        /// restore writes it in this image format; null when the chunks are the file itself.
        /// </summary>
        public string? RestoreAs => RestoreAsValue?.ToString();

        /// <summary>The format, cluster size and compat level a restore writes, or null.</summary>
        public DiskImageLayout? GetRestoreAs() => RestoreAsValue;

        internal DiskImageLayout? RestoreAsValue { get; init; }

        /// <summary>How a change-tracked backup read the disk ("Incremental", "Full (Reason)"); else null.</summary>
        public string? ChangeTracking => ChangeTrackingValue?.ToString();

        /// <summary>The disk's checkpoint and how it was read (bitmap, base point, bytes read), or null.</summary>
        public ChangeTrackingRecord? GetChangeTracking() => ChangeTrackingValue;

        internal ChangeTrackingRecord? ChangeTrackingValue { get; init; }

        /// <summary>The format of the file a restore writes.</summary>
        public string? RestoredFormat => RestoreAsValue?.Format ?? Format;

        public override string ToString() => Path;
    }

    /// <summary>The owner (numeric ids, as the backup's host knew them) and permission bits of a backed-up file.</summary>
    public sealed class FileOwner
    {
        public FileOwner(uint uid, uint gid, int mode)
        {
            Uid = uid;
            Gid = gid;
            Mode = mode & 0x1FF;
        }

        public uint Uid { get; }

        public uint Gid { get; }

        /// <summary>rwx for owner, group and others only: setuid, setgid and sticky are never recorded or restored.</summary>
        public int Mode { get; }

        /// <summary>The mode as chmod writes it, such as 0640.</summary>
        public string ModeText => Convert.ToString(Mode, 8).PadLeft(4, '0');

        public override string ToString() => $"{Uid}:{Gid} {ModeText}";

        internal JsonObject ToJson() => new JsonObject().With("uid", (long)Uid).With("gid", (long)Gid).With("mode", ModeText);

        internal static FileOwner FromJson(JsonObject json)
        {
            long uid = json.GetInt64("uid");
            long gid = json.GetInt64("gid");
            string mode = json.GetString("mode");
            if (uid < 0 || uid > uint.MaxValue - 1 || gid < 0 || gid > uint.MaxValue - 1 || mode.Length != 4 || mode[0] != '0' || mode.Any(c => c < '0' || c > '7'))
            {
                throw new JsonFormatException($"The member 'owner' ({uid}:{gid} {mode}) is not a valid owner; expected ids from 0 to {uint.MaxValue - 1} and a mode such as 0640.");
            }

            return new FileOwner((uint)uid, (uint)gid, Convert.ToInt32(mode, 8));
        }
    }
}
