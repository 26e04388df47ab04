using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A socket that carries one JSON document per line (QMP and the guest agent). A reader thread
    /// splits the stream into lines and hands each to the owner; a 0xFF byte (the guest agent's
    /// delimiter) discards any partial line and marks the next line as following a delimiter.
    /// </summary>
    internal sealed class JsonLineConnection : IDisposable
    {
        private const int MaxLineBytes = 16 * 1024 * 1024;

        private readonly Socket _socket;
        private readonly object _sendLock = new object();
        private readonly Thread _reader;
        private Action<string, bool>? _onLine;
        private Action<Exception?>? _onClosed;
        private int _disposed;

        private JsonLineConnection(Socket socket, string address)
        {
            _socket = socket;
            Address = address;
            _reader = new Thread(ReadLoop) { IsBackground = true, Name = "VmQuiesce reader " + address };
        }

        /// <summary>The socket path or host:port, as the user gave it: every error names it.</summary>
        public string Address { get; }

        /// <summary>
        /// Connects to a unix socket path, or to TCP when the address is "tcp:host:port" or "host:port".
        /// Failures are <see cref="VmQuiesceException"/>s named "&lt;errorPrefix&gt;ConnectFailed".
        /// </summary>
        public static JsonLineConnection Open(string address, string what, string errorPrefix, TimeSpan timeout, CancellationToken cancel)
        {
            EndPoint endPoint = ParseEndPoint(address, what, errorPrefix);
            var socket = endPoint.AddressFamily == AddressFamily.Unix
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                Task connect = socket.ConnectAsync(endPoint);
                if (!connect.Wait((int)Math.Min(int.MaxValue, timeout.TotalMilliseconds), cancel))
                {
                    throw new VmQuiesceException(errorPrefix + "ConnectTimeout", FailureKind.OperationTimeout,
                        $"Connecting to the {what} at '{address}' did not finish within {timeout.TotalSeconds:0.#} s.", address);
                }
            }
            catch (AggregateException e) when (e.InnerException is SocketException socketError)
            {
                socket.Dispose();
                throw ConnectFailed(address, what, errorPrefix, socketError);
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            return new JsonLineConnection(socket, address);
        }

        /// <summary>Starts the reader; the callbacks run on the reader thread.</summary>
        public void Start(Action<string, bool> onLine, Action<Exception?> onClosed)
        {
            _onLine = onLine;
            _onClosed = onClosed;
            _reader.Start();
        }

        /// <summary>
        /// Sends one message, preceded by the 0xFF delimiter when asked. Returns false when the peer did not
        /// take it within <paramref name="timeout"/>: QEMU stops reading a channel whose guest side is
        /// closed (no agent running), and a send must not block forever on that.
        /// </summary>
        public bool Send(string json, bool withDelimiter, TimeSpan timeout)
        {
            byte[] text = Encoding.UTF8.GetBytes(json + "\n");
            byte[] message = withDelimiter ? new byte[text.Length + 1] : text;
            if (withDelimiter)
            {
                message[0] = 0xFF;
                Buffer.BlockCopy(text, 0, message, 1, text.Length);
            }

            lock (_sendLock)
            {
                _socket.SendTimeout = timeout == Timeout.InfiniteTimeSpan ? 0 : (int)Math.Max(1, Math.Min(int.MaxValue, timeout.TotalMilliseconds));
                try
                {
                    _socket.Send(message);
                    return true;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut || e.SocketErrorCode == SocketError.WouldBlock)
                {
                    return false;
                }
            }
        }

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
                // Already closed by the peer: nothing left to shut down.
            }

            _socket.Dispose();
        }

        internal static EndPoint ParseEndPoint(string address, string what, string errorPrefix)
        {
            if (string.IsNullOrWhiteSpace(address))
            {
                throw new VmQuiesceException(errorPrefix + "AddressInvalid", FailureKind.InvalidArgument,
                    $"The {what} address is empty; expected a unix socket path or tcp:host:port.", address);
            }

            string rest = address.StartsWith("unix:", StringComparison.Ordinal) ? address.Substring(5) : address;
            bool explicitTcp = address.StartsWith("tcp:", StringComparison.Ordinal);
            if (explicitTcp)
            {
                rest = address.Substring(4);
            }

            int colon = rest.LastIndexOf(':');
            bool looksLikeHostPort = colon > 0 && rest.IndexOfAny(new[] { '/', '\\' }) < 0 && int.TryParse(rest.Substring(colon + 1), out _) && !File.Exists(rest);
            if (explicitTcp || (!address.StartsWith("unix:", StringComparison.Ordinal) && looksLikeHostPort))
            {
                if (colon <= 0 || !int.TryParse(rest.Substring(colon + 1), out int port) || port <= 0 || port > 65535)
                {
                    throw new VmQuiesceException(errorPrefix + "AddressInvalid", FailureKind.InvalidArgument,
                        $"The {what} address '{address}' is not host:port with a port from 1 to 65535.", address);
                }

                string host = rest.Substring(0, colon).Trim('[', ']');
                return IPAddress.TryParse(host, out IPAddress? ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(host, port);
            }

            return new UnixSocketEndPoint(rest, what, errorPrefix);
        }

        private static VmQuiesceException ConnectFailed(string address, string what, string errorPrefix, SocketException error)
        {
            string why = error.SocketErrorCode switch
            {
                SocketError.AddressNotAvailable or SocketError.HostNotFound => "there is no such socket or host",
                SocketError.ConnectionRefused => "nothing is listening there (is the VM running?)",
                SocketError.AccessDenied => "access is denied (run as the VM's owner or root)",
                _ => error.Message,
            };
            if (error.SocketErrorCode == SocketError.AddressNotAvailable && !File.Exists(address) && !address.Contains(":"))
            {
                why = "the socket file does not exist (is the VM running, and is this its path?)";
            }

            return new VmQuiesceException(errorPrefix + "ConnectFailed", FailureKind.ConnectionError,
                $"Cannot connect to the {what} at '{address}': {why}.", address, error);
        }

        private void ReadLoop()
        {
            var buffer = new byte[8192];
            var line = new MemoryStream();
            bool afterDelimiter = false;
            Exception? failure = null;
            try
            {
                while (true)
                {
                    int count = _socket.Receive(buffer);
                    if (count == 0)
                    {
                        break;
                    }

                    for (int i = 0; i < count; i++)
                    {
                        byte b = buffer[i];
                        if (b == 0xFF)
                        {
                            line.SetLength(0);
                            afterDelimiter = true;
                        }
                        else if (b == (byte)'\n')
                        {
                            string text = Encoding.UTF8.GetString(line.GetBuffer(), 0, (int)line.Length).Trim();
                            line.SetLength(0);
                            if (text.Length > 0)
                            {
                                _onLine!(text, afterDelimiter);
                                afterDelimiter = false;
                            }
                        }
                        else if (line.Length >= MaxLineBytes)
                        {
                            throw new IOException($"A message from '{Address}' is longer than {MaxLineBytes} bytes.");
                        }
                        else
                        {
                            line.WriteByte(b);
                        }
                    }
                }
            }
            catch (ObjectDisposedException)
            {
                // Closed by Dispose: the owner knows.
            }
            catch (Exception e) when (e is SocketException || e is IOException)
            {
                failure = Volatile.Read(ref _disposed) != 0 ? null : e;
            }

            _onClosed!(failure);
        }
    }
}
