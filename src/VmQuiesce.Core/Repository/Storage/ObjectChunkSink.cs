using System;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Threading;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// A backup's chunks going into object storage: a worker asks whether the chunk is there (HEAD) and encodes it
    /// only when it is not, in its own scratch buffer; a flusher uploads it from there with a create-if-absent PUT.
    /// The buffers go round between workers and flushers, so memory is bounded by how many chunks the engine has in
    /// flight, whatever the image size.
    /// </summary>
    internal sealed class ObjectChunkSink : IChunkSink
    {
        private readonly ObjectRepository _repository;
        /// <summary>
        /// Chunks looked up between two gen0 collections of our own. Each lookup and upload leaves the S3 SDK's
        /// garbage (about 40 KiB a request; 180 KiB for a new chunk's HEAD, whose 404 the SDK throws), and .NET sizes
        /// gen0 from the L3 cache: with hundreds of MiB of L3 no collection runs during a whole backup and that garbage
        /// adds tens of MiB to the peak. A gen0 collection every so many chunks bounds it to a few MiB for about a
        /// millisecond each, and leaves the GC settings of the session the module runs in as they are.
        /// </summary>
        internal const int LookupsPerCollection = 32;

        private readonly ConcurrentBag<byte[]> _buffers = new ConcurrentBag<byte[]>();
        private int _lookups;

        public ObjectChunkSink(ObjectRepository repository) => _repository = repository;

        public HashAlgorithm NewIdHash() => _repository.Encryption.NewChunkIdHash();

        public int ScratchLength => _repository.ScratchLength;

        /// <summary>Collects the garbage of the last <see cref="LookupsPerCollection"/> lookups; tests count the calls.</summary>
        internal Action CollectRequestGarbage { get; set; } = () => GC.Collect(0);

        public PendingChunk? Write(string hash, byte[] data, int length, ref byte[] scratch)
        {
            if (Interlocked.Increment(ref _lookups) % LookupsPerCollection == 0)
            {
                CollectRequestGarbage();
            }

            if (_repository.HasChunk(hash))
            {
                return null;
            }

            if (scratch.Length < _repository.ScratchLength)
            {
                scratch = _buffers.TryTake(out byte[]? free) ? free : new byte[_repository.ScratchLength];
            }

            // Encoded and sealed in the caller's buffer, which waits for its upload. The caller gets an empty one in
            // its place, filled only when it next encodes: a worker waiting to hand over its chunk holds no spare.
            var pending = new PendingUpload(hash, scratch, _repository.EncodeStored(hash, data, length, scratch), length);
            scratch = Array.Empty<byte>();
            return pending;
        }

        /// <summary>Each waiting chunk holds its encoded bytes, so few wait: the flushers' uploads are the parallelism.</summary>
        public int WaitingCapacity => 1;

        public long Publish(PendingChunk chunk)
        {
            var upload = (PendingUpload)chunk;
            try
            {
                return _repository.Storage.CreateIfAbsent(ObjectRepository.ChunkKey(upload.Hash), new[] { new ArraySegment<byte>(upload.Stored, 0, (int)upload.Length) }) ? upload.Length : 0;
            }
            finally
            {
                _buffers.Add(upload.Stored);
            }
        }

        public void Abandon(PendingChunk chunk) => _buffers.Add(((PendingUpload)chunk).Stored);

        public int Read(string hash, byte[] buffer) => _repository.ReadChunk(hash, buffer);

        public bool ReadAuthenticates => _repository.Encryption.IsEncrypted;

        public bool Contains(string hash) => _repository.HasChunk(hash);

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
