using System;
using System.IO;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>The buffers of a backup into object storage: how many chunks of memory a worker holds.</summary>
    public sealed class ObjectChunkSinkTests : IDisposable
    {
        private const int Chunk = 64 * 1024;
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-sink-" + Guid.NewGuid().ToString("N"));

        public void Dispose()
        {
            if (Directory.Exists(_root))
            {
                Directory.Delete(_root, recursive: true);
            }
        }

        [Fact]
        public void A_worker_whose_chunk_waits_for_its_upload_holds_no_spare_buffer_and_the_next_chunk_reuses_the_uploaded_one()
        {
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(new FileObjectStorage(_root), Chunk, key: null);
            ObjectChunkSink sink = repository.ChunkSink;
            byte[] first = Filled(1);
            byte[] buffer = new byte[sink.ScratchLength];
            byte[] scratch = buffer;

            var pending = (ObjectChunkSink.PendingUpload)sink.Write(Hash(sink, first), first, Chunk, ref scratch)!;
            Assert.Same(buffer, pending.Stored);
            Assert.Empty(scratch);

            Assert.True(sink.Publish(pending) > 0);
            byte[] second = Filled(2);
            string secondHash = Hash(sink, second);
            var next = (ObjectChunkSink.PendingUpload)sink.Write(secondHash, second, Chunk, ref scratch)!;
            Assert.Same(buffer, next.Stored);
            Assert.Empty(scratch);
            sink.Publish(next);

            var read = new byte[Chunk];
            Assert.Null(repository.ReadVerifiedChunk(secondHash, read, Chunk, null, out _));
            Assert.Equal(second, read);
        }

        [Fact]
        public void The_garbage_of_the_requests_is_collected_once_every_so_many_chunks_looked_up_new_or_stored()
        {
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(new FileObjectStorage(_root), Chunk, key: null);
            ObjectChunkSink sink = repository.ChunkSink;
            int collections = 0;
            sink.CollectRequestGarbage = () => collections++;
            byte[] scratch = new byte[sink.ScratchLength];

            for (int i = 0; i < 2 * ObjectChunkSink.LookupsPerCollection + 1; i++)
            {
                // A third of the chunks are already stored (no upload): their HEADs leave garbage too.
                byte[] data = Filled(i % 3 == 0 ? 0 : i);
                PendingChunk? pending = sink.Write(Hash(sink, data), data, Chunk, ref scratch);
                if (pending != null)
                {
                    sink.Publish(pending);
                }

                Assert.Equal((i + 1) / ObjectChunkSink.LookupsPerCollection, collections);
            }
        }

        private static byte[] Filled(int seed)
        {
            var data = new byte[Chunk];
            new Random(seed).NextBytes(data);
            return data;
        }

        private static string Hash(ObjectChunkSink sink, byte[] data)
        {
            using var sha = sink.NewIdHash();
            return ChunkStore.Hash(sha, data, data.Length);
        }
    }
}
