using System;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// One NBD connection's socket: exact reads (a short stream is an error, never a partial message) and
    /// writes. Blocking operations end when the socket is disposed, which is how timeouts and stops
    /// interrupt them on every runtime (.NET Framework ignores cancellation tokens on socket reads).
    /// </summary>
    internal sealed class NbdStream : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private int _disposed;

        public NbdStream(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
        }

        public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

        public static async Task<NbdStream> ConnectAsync(NbdEndpoint endpoint, CancellationToken cancel)
        {
            Socket socket = endpoint.CreateSocket();
            try
            {
                using (cancel.Register(socket.Dispose))
                {
                    await socket.ConnectAsync(endpoint.ToEndPoint()).ConfigureAwait(false);
                }

                cancel.ThrowIfCancellationRequested();
                return new NbdStream(socket);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        /// <summary>Reads exactly <paramref name="count"/> bytes; the end of the stream first throws <see cref="EndOfStreamException"/>.</summary>
        public async Task ReadExactAsync(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int read = await _stream.ReadAsync(buffer, offset, count).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new EndOfStreamException($"the connection ended with {count} byte(s) of a message still to come");
                }

                offset += read;
                count -= read;
            }
        }

        /// <summary>Reads and drops <paramref name="count"/> bytes through <paramref name="scratch"/>.</summary>
        public async Task SkipAsync(long count, byte[] scratch)
        {
            while (count > 0)
            {
                int piece = (int)Math.Min(count, scratch.Length);
                await ReadExactAsync(scratch, 0, piece).ConfigureAwait(false);
                count -= piece;
            }
        }

        public Task WriteAsync(byte[] buffer, int offset, int count) => _stream.WriteAsync(buffer, offset, count);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // The peer closed first: nothing left to shut down.
            }
            catch (ObjectDisposedException)
            {
                // Disposed while connecting.
            }

            _stream.Dispose();
        }
    }
}
