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

        /// <summary>Connects, blocking; cancelling closes the socket, which ends the wait.</summary>
        public static NbdStream Connect(NbdEndpoint endpoint, CancellationToken cancel)
        {
            Socket socket = endpoint.CreateSocket();
            try
            {
                using (cancel.Register(socket.Dispose))
                {
                    socket.Connect(endpoint.ToEndPoint());
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

        /// <summary>Reads exactly <paramref name="count"/> bytes; the end of the stream first throws <see cref="EndOfStreamException"/> (the server's side).</summary>
        public async Task ReadExactAsync(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int read = await _stream.ReadAsync(buffer, offset, count).ConfigureAwait(false);
                if (read == 0)
                {
                    throw EndedEarly(count);
                }

                offset += read;
                count -= read;
            }
        }

        /// <summary>Reads exactly <paramref name="count"/> bytes, blocking (the client's side: one thread reads each connection).</summary>
        public void ReadExact(byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int read = _stream.Read(buffer, offset, count);
                if (read == 0)
                {
                    throw EndedEarly(count);
                }

                offset += read;
                count -= read;
            }
        }

        /// <summary>Reads and drops <paramref name="count"/> bytes through <paramref name="scratch"/>.</summary>
        public void Skip(long count, byte[] scratch)
        {
            while (count > 0)
            {
                int piece = (int)Math.Min(count, scratch.Length);
                ReadExact(scratch, 0, piece);
                count -= piece;
            }
        }

        /// <summary>Reads and drops <paramref name="count"/> bytes through <paramref name="scratch"/> (the server's side).</summary>
        public async Task SkipAsync(long count, byte[] scratch)
        {
            while (count > 0)
            {
                int piece = (int)Math.Min(count, scratch.Length);
                await ReadExactAsync(scratch, 0, piece).ConfigureAwait(false);
                count -= piece;
            }
        }

        public void Write(byte[] buffer, int offset, int count) => _stream.Write(buffer, offset, count);

        public Task WriteAsync(byte[] buffer, int offset, int count) => _stream.WriteAsync(buffer, offset, count);

        private static EndOfStreamException EndedEarly(int missing) => new EndOfStreamException($"the connection ended with {missing} byte(s) of a message still to come");

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
