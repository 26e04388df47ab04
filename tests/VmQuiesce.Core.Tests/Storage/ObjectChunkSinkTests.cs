using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>The buffers of a backup into object storage: how many chunks of memory a worker and the sink hold.</summary>
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
            byte[] scratch = Array.Empty<byte>();

            var pending = (ObjectChunkSink.PendingUpload)sink.Write(Hash(sink, first), first, Chunk, ref scratch, CancellationToken.None)!;
            Assert.Equal(repository.ScratchLength, pending.Stored.Length);
            Assert.Empty(scratch);

            Assert.True(sink.Publish(pending) > 0);
            byte[] second = Filled(2);
            string secondHash = Hash(sink, second);
            var next = (ObjectChunkSink.PendingUpload)sink.Write(secondHash, second, Chunk, ref scratch, CancellationToken.None)!;
            Assert.Same(pending.Stored, next.Stored);
            Assert.Empty(scratch);
            sink.Publish(next);

            var read = new byte[Chunk];
            Assert.Null(repository.ReadVerifiedChunk(secondHash, read, Chunk, ChunkCheck.Hash, null, out _));
            Assert.Equal(second, read);
        }

        [Fact]
        public void A_new_chunk_waits_while_every_buffer_holds_an_encoded_chunk_and_then_takes_the_one_an_upload_gave_back()
        {
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(new FileObjectStorage(_root), Chunk, key: null);
            ObjectChunkSink sink = repository.ChunkSink;
            var held = new List<ObjectChunkSink.PendingUpload>();
            for (int i = 0; i < ObjectChunkSink.EncodedChunks; i++)
            {
                byte[] data = Filled(100 + i);
                byte[] scratch = Array.Empty<byte>();
                held.Add((ObjectChunkSink.PendingUpload)sink.Write(Hash(sink, data), data, Chunk, ref scratch, CancellationToken.None)!);
            }

            Assert.Equal(ObjectChunkSink.EncodedChunks, held.Select(upload => upload.Stored).Distinct().Count());
            byte[] extra = Filled(99);
            string extraHash = Hash(sink, extra);
            byte[] none = Array.Empty<byte>();
            // The timeout only ends the wait: a sink that did not wait would return the chunk at once.
            using (var giveUp = new CancellationTokenSource(TimeSpan.FromMilliseconds(200)))
            {
                Assert.ThrowsAny<OperationCanceledException>(() => sink.Write(extraHash, extra, Chunk, ref none, giveUp.Token));
            }

            Assert.Empty(none);
            sink.Abandon(held[2]);
            var next = (ObjectChunkSink.PendingUpload)sink.Write(extraHash, extra, Chunk, ref none, CancellationToken.None)!;
            Assert.Same(held[2].Stored, next.Stored);
        }

        [Fact]
        public void Free_memory_is_given_back_at_the_first_lookup_and_the_garbage_of_the_requests_collected_every_so_many_chunks_looked_up_new_or_stored()
        {
            using ObjectRepository repository = ObjectRepository.OpenOrCreate(new FileObjectStorage(_root), Chunk, key: null);
            ObjectChunkSink sink = repository.ChunkSink;
            int collections = 0;
            int returns = 0;
            sink.CollectRequestGarbage = () => collections++;
            sink.ReturnFreeMemory = () => returns++;
            byte[] scratch = Array.Empty<byte>();

            for (int i = 0; i < 2 * ObjectChunkSink.LookupsPerCollection + 1; i++)
            {
                // A third of the chunks are already stored (no upload): their HEADs leave garbage too.
                byte[] data = Filled(i % 3 == 0 ? 0 : i);
                PendingChunk? pending = sink.Write(Hash(sink, data), data, Chunk, ref scratch, CancellationToken.None);
                if (pending != null)
                {
                    sink.Publish(pending);
                }

                Assert.Equal((i + 1) / ObjectChunkSink.LookupsPerCollection, collections);
                Assert.Equal(1, returns);
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
