using System;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// A backup's chunks going into object storage: a worker asks whether the chunk is there (HEAD) and encodes it
    /// only when it is not; a flusher uploads it with a create-if-absent PUT. The encoded chunks wait in buffers
    /// reused from one chunk to the next, so memory is bounded by how many chunks the engine has in flight, whatever
    /// the image size.
    /// </summary>
    internal sealed class ObjectChunkSink : IChunkSink
    {
        private readonly ObjectRepository _repository;
        private readonly ConcurrentBag<byte[]> _buffers = new ConcurrentBag<byte[]>();

        public ObjectChunkSink(ObjectRepository repository) => _repository = repository;

        public HashAlgorithm NewIdHash() => _repository.Encryption.NewChunkIdHash();

        public int ScratchLength => _repository.ScratchLength;

        public PendingChunk? Write(string hash, byte[] data, int length, byte[] scratch)
        {
            if (_repository.HasChunk(hash))
            {
                return null;
            }

            byte[] stored = _buffers.TryTake(out byte[]? free) ? free : new byte[_repository.MaxStoredLength];
            try
            {
                return new PendingUpload(hash, stored, _repository.EncodeStored(hash, data, length, scratch, stored), length);
            }
            catch
            {
                _buffers.Add(stored);
                throw;
            }
        }

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

        public bool Contains(string hash) => _repository.HasChunk(hash);

        /// <summary>An encoded chunk waiting for its upload.</summary>
        private sealed class PendingUpload : PendingChunk
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
