using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// The chunks a served restore point has read lately, each one read, decoded and re-hashed against its name
    /// before any byte of it is handed out (see <see cref="BackupRepository.ReadVerifiedChunk"/>). Bounded: at most
    /// <see cref="Capacity"/> chunks, read or being read, least recently used first out. Readers of a chunk being
    /// read wait for that one read instead of starting another. A chunk that fails is not kept: each read of it
    /// fails again, naming it.
    /// </summary>
    internal sealed class VerifiedChunkCache
    {
        private readonly BackupRepository _repository;
        private readonly object _gate = new object();
        private readonly Dictionary<string, LinkedListNode<Entry>> _entries = new Dictionary<string, LinkedListNode<Entry>>(StringComparer.Ordinal);
        private readonly LinkedList<Entry> _recent = new LinkedList<Entry>();
        private long _chunksRead;

        public VerifiedChunkCache(BackupRepository repository, int capacity)
        {
            if (capacity < 2)
            {
                throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "A chunk cache holds at least 2 chunks.");
            }

            _repository = repository;
            Capacity = capacity;
        }

        public int Capacity { get; }

        /// <summary>Chunks read from the repository so far (not counting cache hits): what tests and benchmarks look at.</summary>
        public long ChunksRead => Interlocked.Read(ref _chunksRead);

        /// <summary>
        /// The verified bytes of chunk <paramref name="hash"/> (<paramref name="length"/> of them); throws
        /// <see cref="ChunkUnusableException"/> when it is missing or damaged. The array is shared: only read it.
        /// </summary>
        public Task<byte[]> GetAsync(string hash, int length)
        {
            Task<byte[]> read;
            lock (_gate)
            {
                string key = Key(hash, length);
                if (_entries.TryGetValue(key, out LinkedListNode<Entry>? node))
                {
                    _recent.Remove(node);
                    _recent.AddFirst(node);
                    return node.Value.Read;
                }

                read = Task.Run(() => Read(hash, length));
                _entries.Add(key, _recent.AddFirst(new Entry(key, read)));
                while (_recent.Count > Capacity)
                {
                    LinkedListNode<Entry> oldest = _recent.Last!;
                    _recent.RemoveLast();
                    _entries.Remove(oldest.Value.Key);
                }
            }

            // A failed chunk leaves at once, so the next read tries the repository again (a chunk put back by a later backup is then served).
            read.ContinueWith(_ => Forget(Key(hash, length), read), CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return read;
        }

        /// <summary>Starts reading a chunk a reader will probably want next, unless it is cached or being read.</summary>
        public void Prefetch(string hash, int length) => _ = GetAsync(hash, length).ContinueWith(t => _ = t.Exception, TaskScheduler.Default);

        private static string Key(string hash, int length) => hash + ":" + length.ToString(System.Globalization.CultureInfo.InvariantCulture);

        private byte[] Read(string hash, int length)
        {
            byte[] buffer = new byte[_repository.ChunkSize];
            Interlocked.Increment(ref _chunksRead);
            string? failure = _repository.ReadVerifiedChunk(hash, buffer, length, null, out bool missing);
            if (failure != null)
            {
                throw new ChunkUnusableException(hash, failure, missing);
            }

            return buffer;
        }

        private void Forget(string key, Task<byte[]> read)
        {
            lock (_gate)
            {
                if (_entries.TryGetValue(key, out LinkedListNode<Entry>? node) && node.Value.Read == read)
                {
                    _entries.Remove(key);
                    _recent.Remove(node);
                }
            }
        }

        private sealed class Entry
        {
            public Entry(string key, Task<byte[]> read)
            {
                Key = key;
                Read = read;
            }

            public string Key { get; }

            public Task<byte[]> Read { get; }
        }
    }

    /// <summary>A chunk that is missing from the repository or does not hash to its name.</summary>
    internal sealed class ChunkUnusableException : Exception
    {
        public ChunkUnusableException(string hash, string detail, bool missing)
            : base(detail)
        {
            Hash = hash;
            Detail = detail;
            Missing = missing;
        }

        public string Hash { get; }

        public string Detail { get; }

        public bool Missing { get; }
    }
}
