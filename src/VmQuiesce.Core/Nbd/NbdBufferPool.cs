using System.Collections.Concurrent;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// The server's read buffers: at most <see cref="Capacity"/> of <see cref="BufferSize"/> bytes exist,
    /// whatever clients ask for; a request waits for one. Each request holds at most one buffer at a time
    /// and never waits for one while holding the connection's send lock, so waiting cannot deadlock.
    /// </summary>
    internal sealed class NbdBufferPool
    {
        private readonly SemaphoreSlim _available;
        private readonly ConcurrentBag<byte[]> _free = new ConcurrentBag<byte[]>();
        private int _rented;
        private int _peakRented;

        public NbdBufferPool(int bufferSize, int capacity)
        {
            BufferSize = bufferSize;
            Capacity = capacity;
            _available = new SemaphoreSlim(capacity, capacity);
        }

        public int BufferSize { get; }

        public int Capacity { get; }

        /// <summary>The most buffers out at once since the pool was made (tests check the bound with it).</summary>
        public int PeakRented => Volatile.Read(ref _peakRented);

        public async Task<byte[]> RentAsync()
        {
            await _available.WaitAsync().ConfigureAwait(false);
            int rented = Interlocked.Increment(ref _rented);
            int peak;
            while (rented > (peak = Volatile.Read(ref _peakRented)) && Interlocked.CompareExchange(ref _peakRented, rented, peak) != peak)
            {
            }

            return _free.TryTake(out byte[]? buffer) ? buffer : new byte[BufferSize];
        }

        public void Return(byte[] buffer)
        {
            _free.Add(buffer);
            Interlocked.Decrement(ref _rented);
            _available.Release();
        }
    }
}
