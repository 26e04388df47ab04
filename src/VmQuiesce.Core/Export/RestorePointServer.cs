using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Export
{
    /// <summary>How a restore point is served.</summary>
    public sealed class RestorePointServerOptions
    {
        /// <summary>
        /// The unix socket to listen on (Linux, macOS); it must not exist yet. Null: a socket in a new folder only
        /// this user may enter. Ignored on Windows, which serves on loopback TCP.
        /// </summary>
        public string? SocketPath { get; set; }

        /// <summary>Verified chunks kept in memory, shared by the point's disks (with the default 4 MiB chunks, 16 are 64 MiB).</summary>
        public int CacheChunks { get; set; } = 16;

        /// <summary>Called (on a pool thread) for each range that could not be served and each client that broke the protocol.</summary>
        public Action<NbdServerError>? OnError { get; set; }

        /// <summary>
        /// The server disposes the repository (closing its connection to object storage) when it stops, or when it
        /// fails to start: for a server that outlives the code that opened the repository.
        /// </summary>
        public bool OwnsRepository { get; set; }
    }

    /// <summary>One disk of a served restore point.</summary>
    public sealed class ServedDisk
    {
        internal ServedDisk(string exportName, RestorePointFile file, string uri)
        {
            ExportName = exportName;
            Path = file.Path;
            Format = file.Format;
            Size = file.Size;
            Uri = uri;
        }

        /// <summary>The NBD export name. Over TCP it holds a random secret: whoever knows it can read the disk.</summary>
        public string ExportName { get; }

        /// <summary>The file's path inside the restore point.</summary>
        public string Path { get; }

        /// <summary>The image format the backup recorded (raw, qcow2, vmdk), or null. The export serves the file's bytes as stored, in this format.</summary>
        public string? Format { get; }

        public long Size { get; }

        /// <summary>The URI QEMU and libnbd take (nbd+unix:///disk0?socket=... or nbd://127.0.0.1:port/disk0-secret).</summary>
        public string Uri { get; }

        public override string ToString() => Path;
    }

    /// <summary>
    /// A restore point served read-only over NBD from its repository, a folder or object storage (Start-VmBackupExport,
    /// Test-VmBackup -Boot, Mount-VmBackup): one export per file, disk0, disk1... in the point's order. It holds a
    /// shared lock on the repository (a lock file, or a lock object on object storage) for as long as it serves, so
    /// a prune cannot remove a chunk under a reader.
    /// </summary>
    /// <remarks>
    /// Who can read: on Linux and macOS the socket is mode 0600 in a folder of this user's (only this user, root
    /// here, connects). On Windows it is loopback TCP, which every local user can reach: there each export's name
    /// ends in 128 random bits, the server lists no export names and has no default export, so a client must be
    /// told the name (<see cref="ServedDisk.Uri"/>) by this process.
    /// </remarks>
    public sealed class RestorePointServer : IDisposable
    {
        private static readonly ConcurrentDictionary<string, RestorePointServer> s_running = new ConcurrentDictionary<string, RestorePointServer>(StringComparer.OrdinalIgnoreCase);

        private readonly NbdServer _server;
        private readonly IDisposable _lock;
        private readonly IDisposable? _ownedRepository;
        private readonly ScratchFolder? _folder;
        private readonly ConcurrentQueue<NbdServerError> _errors = new ConcurrentQueue<NbdServerError>();
        private readonly VerifiedChunkCache _cache;
        private int _stopped;

        private RestorePointServer(string id, RestorePoint point, NbdServer server, IDisposable repositoryLock, IDisposable? ownedRepository, ScratchFolder? folder, VerifiedChunkCache cache, IReadOnlyList<ServedDisk> disks)
        {
            _ownedRepository = ownedRepository;
            Id = id;
            Point = point;
            _server = server;
            _lock = repositoryLock;
            _folder = folder;
            _cache = cache;
            Disks = disks;
            StartTime = DateTime.UtcNow;
        }

        /// <summary>Errors seen so far by the servers of this process, newest last, at most this many per server.</summary>
        private const int MaxErrorsKept = 100;

        /// <summary>The servers this process runs now (what Get-VmBackupExport lists).</summary>
        public static IReadOnlyList<RestorePointServer> Running => s_running.Values.OrderBy(server => server.StartTime).ToList();

        /// <summary>A short id, unique in this process, that Get-/Stop-VmBackupExport take.</summary>
        public string Id { get; }

        public RestorePoint Point { get; }

        public string VmName => Point.VmName;

        public string RestorePointId => Point.Id;

        public string Repository => Point.Repository;

        public NbdEndpoint Endpoint => _server.Endpoint;

        public IReadOnlyList<ServedDisk> Disks { get; }

        /// <summary>UTC.</summary>
        public DateTime StartTime { get; }

        public bool IsRunning => _stopped == 0;

        public int ConnectionCount => _server.ConnectionCount;

        /// <summary>Chunks read from the repository (and verified) since the server started; cache hits are not counted.</summary>
        public long ChunksRead => _cache.ChunksRead;

        /// <summary>Chunk buffers the server has allocated: at most <see cref="RestorePointServerOptions.CacheChunks"/>, whatever the point's size and its readers.</summary>
        public int ChunkBuffers => _cache.BuffersMade;

        /// <summary>The most read buffers of the NBD server's own in use at once: none while every read is sent straight from the chunk cache.</summary>
        internal int PeakReadBuffersRented => _server.Buffers.PeakRented;

        /// <summary>Ranges that could not be served (a damaged or missing chunk, named) and protocol errors of clients, oldest first.</summary>
        public IReadOnlyList<NbdServerError> Errors => _errors.ToList();

        /// <summary>Serves <paramref name="point"/> of <paramref name="repository"/> until <see cref="Stop"/> (or Dispose).</summary>
        public static RestorePointServer Start(IRestorePointSource repository, RestorePoint point, RestorePointServerOptions? options = null)
        {
            options ??= new RestorePointServerOptions();
            IDisposable? owned = options.OwnsRepository ? repository as IDisposable : null;
            try
            {
                return Serve(repository, point, options, owned);
            }
            catch
            {
                owned?.Dispose();
                throw;
            }
        }

        private static RestorePointServer Serve(IRestorePointSource repository, RestorePoint point, RestorePointServerOptions options, IDisposable? owned)
        {
            if (point.ChunkSize != repository.ChunkSize)
            {
                throw new VmQuiesceException("RestorePointChunkSizeMismatch", FailureKind.InvalidData,
                    $"The restore point '{point.Id}' has chunk size {point.ChunkSize}; its repository '{repository.Location}' uses {repository.ChunkSize}.", point.Id);
            }

            if (point.Files.Count == 0)
            {
                throw new VmQuiesceException("ExportNothingToServe", FailureKind.InvalidData, $"The restore point '{point.Id}' of VM '{point.VmName}' holds no files to serve.", point.Id);
            }

            if (options.CacheChunks < 2 || options.CacheChunks > 1024)
            {
                throw new VmQuiesceException("ExportCacheSizeInvalid", FailureKind.InvalidArgument, $"The chunk cache of {options.CacheChunks} chunks is out of range; expected 2 to 1024.", options.CacheChunks);
            }

            var cache = new VerifiedChunkCache(repository, options.CacheChunks);
            bool tcp = HostPlatform.IsWindows;
            var exports = point.Files.Select((file, i) => new NbdExport(ExportName(i, tcp), new RestorePointDisk(point, file, cache, repository.ChunkSize), $"{point.VmName} {point.Id} {file.Path}")
            {
                Listed = !tcp,
            }).ToList();

            // A lock file in a folder, a lock object on object storage: either way a prune waits until the server stops.
            IDisposable shared = repository.LockShared($"Serving restore point {point.Id} over NBD", _ => { });
            ScratchFolder? folder = null;
            try
            {
                string? socketPath = options.SocketPath;
                if (!tcp && socketPath == null)
                {
                    folder = ScratchFolder.Create("vmq-nbd");
                    socketPath = System.IO.Path.Combine(folder.Path, "nbd.sock");
                }

                RestorePointServer? served = null;
                NbdServer server = NbdServer.Start(tcp ? NbdEndpoint.LoopbackTcp() : NbdEndpoint.UnixSocket(socketPath!), exports, new NbdServerOptions
                {
                    OnError = error =>
                    {
                        served?.Keep(error);
                        options.OnError?.Invoke(error);
                    },
                });
                var disks = exports.Select((export, i) => new ServedDisk(export.Name, point.Files[i], server.GetUri(export.Name))).ToList();
                served = new RestorePointServer(NewId(), point, server, shared, owned, folder, cache, disks);
                s_running[served.Id] = served;
                return served;
            }
            catch
            {
                folder?.Dispose();
                shared.Dispose();
                throw;
            }
        }

        /// <summary>The running server with this id, or null.</summary>
        public static RestorePointServer? Find(string id) => s_running.TryGetValue(id, out RestorePointServer? server) ? server : null;

        /// <summary>The first <paramref name="count"/> bytes of a served disk (fewer when it is shorter), verified like every read.</summary>
        internal byte[] ReadStart(ServedDisk disk, int count, System.Threading.CancellationToken cancel)
        {
            NbdExport export = _server.Exports.Single(candidate => candidate.Name == disk.ExportName);
            byte[] start = new byte[(int)Math.Min(count, export.Backend.Size)];
            if (start.Length > 0)
            {
                export.Backend.ReadAsync(0, start, 0, start.Length, cancel).GetAwaiter().GetResult();
            }

            return start;
        }

        /// <summary>Stops serving: clients get ESHUTDOWN for new requests, the socket goes, the repository lock is released.</summary>
        public void Stop()
        {
            if (System.Threading.Interlocked.Exchange(ref _stopped, 1) != 0)
            {
                return;
            }

            s_running.TryRemove(Id, out _);
            try
            {
                _server.StopAsync(TimeSpan.FromSeconds(5)).Wait();
            }
            finally
            {
                _folder?.Dispose();
                try
                {
                    _lock.Dispose();
                }
                finally
                {
                    _ownedRepository?.Dispose();
                }
            }
        }

        public void Dispose() => Stop();

        public override string ToString() => $"{VmName} {RestorePointId} on {Endpoint}";

        private static string ExportName(int index, bool secret)
        {
            string name = "disk" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!secret)
            {
                return name;
            }

            byte[] random = new byte[16];
            using (var generator = RandomNumberGenerator.Create())
            {
                generator.GetBytes(random);
            }

            return name + "-" + ChunkStore.ToHex(random);
        }

        private static string NewId()
        {
            byte[] random = new byte[4];
            using var generator = RandomNumberGenerator.Create();
            generator.GetBytes(random);
            return ChunkStore.ToHex(random);
        }

        private void Keep(NbdServerError error)
        {
            _errors.Enqueue(error);
            while (_errors.Count > MaxErrorsKept && _errors.TryDequeue(out _))
            {
            }
        }
    }
}
