using System;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Threading;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// A backup's chunks going into object storage: a worker asks whether the chunk is there (HEAD) and encodes it
    /// only when it is not, in a buffer of the sink's; a flusher uploads it from there with a create-if-absent PUT and
    /// gives the buffer back. At most <see cref="EncodedChunks"/> buffers exist, whatever the image size: a worker
    /// whose chunk is new waits for one, so no chunk is encoded before an upload or the waiting slot can take it.
    /// </summary>
    internal sealed class ObjectChunkSink : IChunkSink
    {
        /// <summary>Uploads at once: they are the parallelism (each holds its encoded chunk).</summary>
        internal const int Uploads = 4;

        /// <summary>Buffers of encoded chunks: one per upload and one for the chunk waiting for the next free upload.</summary>
        internal const int EncodedChunks = Uploads + 1;

        /// <summary>
        /// Chunks looked up between two gen0 collections of our own. Each lookup and upload leaves the S3 SDK's
        /// garbage (about 40 KiB a request; 180 KiB for a new chunk's HEAD, whose 404 the SDK throws), and .NET sizes
        /// gen0 from the L3 cache: with hundreds of MiB of L3 no collection runs during a whole backup and that garbage
        /// adds tens of MiB to the peak. A gen0 collection every so many chunks bounds it to a couple of MiB for about a
        /// millisecond each, and leaves the GC settings of the session the module runs in as they are.
        /// </summary>
        internal const int LookupsPerCollection = 8;

        private readonly ObjectRepository _repository;
        private readonly ConcurrentBag<byte[]> _buffers = new ConcurrentBag<byte[]>();

        /// <summary>Buffers not held by an encoded chunk: a new chunk takes one, its upload or abandonment gives it back.</summary>
        private readonly SemaphoreSlim _freeBuffers = new SemaphoreSlim(EncodedChunks, EncodedChunks);
        private int _lookups;

        public ObjectChunkSink(ObjectRepository repository) => _repository = repository;

        public HashAlgorithm NewIdHash() => _repository.Encryption.NewChunkIdHash();

        /// <summary>Collects the garbage of the last <see cref="LookupsPerCollection"/> lookups; tests count the calls.</summary>
        internal Action CollectRequestGarbage { get; set; } = () => GC.Collect(0);

        /// <summary>
        /// At the first lookup, before the sink's buffers exist: a full collection that gives what is free back to the
        /// system. The session's garbage so far (PowerShell's start and the module's import: tens of MiB, as gen0 is
        /// never collected) would otherwise stay committed after a plain collection, kept for the large gen0 budget,
        /// while the chunk buffers take large-object memory of their own on top. Once per backup; tests count the calls.
        /// .NET Framework has no collection that gives memory back, so nothing runs there.
        /// </summary>
        internal Action ReturnFreeMemory { get; set; } = () =>
        {
#if !NETFRAMEWORK
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
#endif
        };

        public PendingChunk? Write(string hash, byte[] data, int length, ref byte[] scratch, CancellationToken cancel)
        {
            int lookup = Interlocked.Increment(ref _lookups);
            if (lookup == 1)
            {
                ReturnFreeMemory();
            }
            else if (lookup % LookupsPerCollection == 0)
            {
                CollectRequestGarbage();
            }

            if (_repository.HasChunk(hash))
            {
                return null;
            }

            _freeBuffers.Wait(cancel);
            try
            {
                if (scratch.Length < _repository.ScratchLength)
                {
                    scratch = _buffers.TryTake(out byte[]? free) ? free : new byte[_repository.ScratchLength];
                }

                // Encoded and sealed in the buffer, which waits for its upload; the caller gets an empty one in its place.
                var pending = new PendingUpload(hash, scratch, _repository.EncodeStored(hash, data, length, scratch), length);
                scratch = Array.Empty<byte>();
                return pending;
            }
            catch
            {
                Release(scratch);
                scratch = Array.Empty<byte>();
                throw;
            }
        }

        /// <summary>Each waiting chunk holds its encoded bytes, so few wait: the flushers' uploads are the parallelism.</summary>
        public int WaitingCapacity => EncodedChunks - Uploads;

        public int Publishers => Uploads;

        public long Publish(PendingChunk chunk)
        {
            var upload = (PendingUpload)chunk;
            try
            {
                return _repository.Storage.CreateIfAbsent(ObjectRepository.ChunkKey(upload.Hash), new[] { new ArraySegment<byte>(upload.Stored, 0, (int)upload.Length) }) ? upload.Length : 0;
            }
            finally
            {
                Release(upload.Stored);
            }
        }

        public void Abandon(PendingChunk chunk) => Release(((PendingUpload)chunk).Stored);

        /// <summary>The scratch buffers here wait for uploads (see <see cref="Write"/>), so the stored bytes go to a rented buffer.</summary>
        public int Read(string hash, byte[] buffer, ref byte[] scratch) => _repository.ReadChunk(hash, buffer);

        public bool ReadAuthenticates => _repository.Encryption.IsEncrypted;

        public bool Contains(string hash) => _repository.HasChunk(hash);

        private void Release(byte[] buffer)
        {
            if (buffer.Length > 0)
            {
                _buffers.Add(buffer);
            }

            _freeBuffers.Release();
        }

        /// <summary>An encoded chunk waiting for its upload.</summary>
        internal sealed class PendingUpload : PendingChunk
        {
            public PendingUpload(string hash, byte[] stored, int storedLength, int dataLength)
                : base(hash, storedLength, dataLength)
            {
                Stored = stored;
            }

            public byte[] Stored { get; }
        }
    }
}
