using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// The chunks a served restore point has read lately, each one read, decoded and re-hashed against its name
    /// before any byte of it is handed out (see <see cref="IRestorePointSource.ReadVerifiedChunk"/>), from a folder or
    /// from object storage (one GET per chunk). Readers of a chunk
    /// being read wait for that one read instead of starting another. A chunk that fails is not kept: each read of it
    /// fails again, naming it.
    /// </summary>
    /// <remarks>
    /// Memory is <see cref="Capacity"/> chunk buffers at most, whatever the size of the point and however many
    /// clients read: the buffers are made once and reused. A buffer is reused only when no read fills it and no
    /// reader copies out of it or sends from it (each holds a pin); when every buffer is pinned, a reader waits for
    /// one, and a read ahead is skipped. A pin is held only while a chunk's read runs or a reader copies or sends
    /// out of it, never while waiting for another chunk, so waiting cannot deadlock.
    /// </remarks>
    internal sealed class VerifiedChunkCache
    {
        private readonly IRestorePointSource _repository;
        private readonly object _gate = new object();
        private readonly Dictionary<string, Entry> _entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        private readonly LinkedList<Entry> _recent = new LinkedList<Entry>();
        private readonly Stack<byte[]> _free = new Stack<byte[]>();
        private List<TaskCompletionSource<bool>> _waiting = new List<TaskCompletionSource<bool>>();
        private int _buffersMade;
        private long _chunksRead;

        public VerifiedChunkCache(IRestorePointSource repository, int capacity)
        {
            if (capacity < 2)
            {
                throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "A chunk cache holds at least 2 chunks.");
            }

            _repository = repository;
            Capacity = capacity;
            // A GET from object storage waits far longer for its first byte than a file read: more reads in flight hide it.
            ReadAheadChunks = repository is ObjectRepository ? 4 : 2;
        }

        public int Capacity { get; }

        /// <summary>Chunks read ahead of a reader that reads in order, so a booting guest or a copy rarely waits for one.</summary>
        public int ReadAheadChunks { get; }

        /// <summary>Chunks read from the repository so far (not counting cache hits): what tests and benchmarks look at.</summary>
        public long ChunksRead => Interlocked.Read(ref _chunksRead);

        /// <summary>Chunk buffers allocated since the cache was made: never more than <see cref="Capacity"/>.</summary>
        public int BuffersMade => Volatile.Read(ref _buffersMade);

        /// <summary>
        /// <paramref name="count"/> verified bytes of chunk <paramref name="hash"/> (<paramref name="length"/> bytes
        /// long) from <paramref name="offset"/>, in the cache's own buffer, which is not reused until the lease is
        /// disposed; throws <see cref="ChunkUnusableException"/> when the chunk is missing or damaged.
        /// </summary>
        public async Task<NbdLease> LendAsync(string hash, int length, int offset, int count)
        {
            Entry entry = await PinAsync(hash, length).ConfigureAwait(false);
            try
            {
                await entry.Ready.ConfigureAwait(false);
                if (entry.Failure != null)
                {
                    throw new ChunkUnusableException(hash, entry.Failure, entry.Missing, notAuthentic: !entry.Missing && _repository.Encryption.IsEncrypted);
                }
            }
            catch
            {
                Unpin(entry);
                throw;
            }

            return new NbdLease(entry.Buffer, offset, count, () => Unpin(entry));
        }

        /// <summary>Starts reading a chunk a reader will probably want next, unless it is cached, being read, or no buffer is free.</summary>
        public void Prefetch(string hash, int length)
        {
            lock (_gate)
            {
                string key = Key(hash, length);
                if (!_entries.ContainsKey(key))
                {
                    // Nobody awaits a read ahead: a read that throws (not a damaged chunk, which is a Failure) is observed here.
                    _ = TryStartRead(key, hash, length)?.Ready.ContinueWith(read => _ = read.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                }
            }
        }

        private static string Key(string hash, int length) => hash + ":" + length.ToString(System.Globalization.CultureInfo.InvariantCulture);

        /// <summary>The chunk's entry, cached or with its read started, pinned for the caller; waits while every buffer is pinned.</summary>
        private async Task<Entry> PinAsync(string hash, int length)
        {
            string key = Key(hash, length);
            while (true)
            {
                Task bufferUnpinned;
                lock (_gate)
                {
                    if (_entries.TryGetValue(key, out Entry? entry) || (entry = TryStartRead(key, hash, length)) != null)
                    {
                        entry.Pins++;
                        _recent.Remove(entry.Node);
                        _recent.AddFirst(entry.Node);
                        return entry;
                    }

                    var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                    _waiting.Add(waiter);
                    bufferUnpinned = waiter.Task;
                }

                await bufferUnpinned.ConfigureAwait(false);
            }
        }

        /// <summary>
        /// Under the lock: a new entry for the chunk, its buffer a free one, a new one while fewer than
        /// <see cref="Capacity"/> exist, or the least recently used unpinned entry's; its read started (and pinned by it).
        /// Null when every buffer is pinned.
        /// </summary>
        private Entry? TryStartRead(string key, string hash, int length)
        {
            byte[]? buffer = _free.Count > 0 ? _free.Pop() : _buffersMade < Capacity ? NewBuffer() : TakeLeastRecentlyUsed();
            if (buffer == null)
            {
                return null;
            }

            var entry = new Entry(key, buffer) { Pins = 1 };
            entry.Node = _recent.AddFirst(entry);
            _entries.Add(key, entry);
            entry.Ready = Task.Run(() => Read(entry, hash, length));
            return entry;
        }

        private byte[] NewBuffer()
        {
            Interlocked.Increment(ref _buffersMade);
            return new byte[_repository.ChunkSize];
        }

        private byte[]? TakeLeastRecentlyUsed()
        {
            for (LinkedListNode<Entry>? node = _recent.Last; node != null; node = node.Previous)
            {
                if (node.Value.Pins == 0)
                {
                    Remove(node.Value);
                    return node.Value.Buffer;
                }
            }

            return null;
        }

        private void Read(Entry entry, string hash, int length)
        {
            bool verified = false;
            try
            {
                Interlocked.Increment(ref _chunksRead);
                entry.Failure = _repository.ReadVerifiedChunk(hash, entry.Buffer, length, ChunkCheck.SealOrHash, null, out bool missing);
                entry.Missing = missing;
                verified = entry.Failure == null;
            }
            finally
            {
                if (!verified)
                {
                    // A failed chunk leaves at once, so the next read tries the repository again (a chunk put back by a later backup is then served).
                    lock (_gate)
                    {
                        Remove(entry);
                    }
                }

                Unpin(entry);
            }
        }

        private void Remove(Entry entry)
        {
            _entries.Remove(entry.Key);
            _recent.Remove(entry.Node);
            entry.Removed = true;
        }

        private void Unpin(Entry entry)
        {
            List<TaskCompletionSource<bool>> waiting;
            lock (_gate)
            {
                if (--entry.Pins > 0)
                {
                    return;
                }

                if (entry.Removed)
                {
                    _free.Push(entry.Buffer);
                }

                waiting = _waiting;
                _waiting = new List<TaskCompletionSource<bool>>();
            }

            waiting.ForEach(waiter => waiter.SetResult(true));
        }

        private sealed class Entry
        {
            public Entry(string key, byte[] buffer)
            {
                Key = key;
                Buffer = buffer;
            }

            public string Key { get; }

            public byte[] Buffer { get; }

            public LinkedListNode<Entry> Node { get; set; } = null!;

            public Task Ready { get; set; } = Task.CompletedTask;

            /// <summary>Readers copying out plus the read filling the buffer; the buffer is reused only at 0.</summary>
            public int Pins { get; set; }

            /// <summary>Out of the cache: its buffer goes back to the free list when the last pin goes.</summary>
            public bool Removed { get; set; }

            public string? Failure { get; set; }

            public bool Missing { get; set; }
        }
    }

    /// <summary>A chunk that is missing from the repository, does not hash to its name, or does not open with the repository's key.</summary>
    internal sealed class ChunkUnusableException : Exception
    {
        public ChunkUnusableException(string hash, string detail, bool missing, bool notAuthentic)
            : base(detail)
        {
            Hash = hash;
            Detail = detail;
            Missing = missing;
            NotAuthentic = notAuthentic;
        }

        public string Hash { get; }

        public string Detail { get; }

        public bool Missing { get; }

        /// <summary>In an encrypted repository: it does not open with the key (changed, swapped or planted by someone without it).</summary>
        public bool NotAuthentic { get; }
    }
}
