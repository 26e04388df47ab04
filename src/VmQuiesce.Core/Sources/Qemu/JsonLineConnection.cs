using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>What one peer of a JSON-line channel can make the host hold: one line, and what parsing it builds.</summary>
    internal sealed class PeerLimits
    {
        public PeerLimits(int maxLineBytes, JsonLimits json)
        {
            MaxLineBytes = maxLineBytes;
            Json = json;
        }

        /// <summary>
        /// QMP's largest answer is query-block: about 1 KiB per image, so 8 MiB holds hundreds of disks with
        /// deep backing chains; the chains also set the depth.
        /// </summary>
        public static PeerLimits Qmp { get; } = new PeerLimits(8 * 1024 * 1024, new JsonLimits(96, 200_000));

        /// <summary>
        /// The agent's largest answers are guest-get-fsinfo and guest-exec-status (a hook's output, base64):
        /// 1 MiB holds thousands of file systems and any hook output worth showing; nothing it sends nests deeply.
        /// </summary>
        public static PeerLimits GuestAgent { get; } = new PeerLimits(1024 * 1024, new JsonLimits(16, 50_000));

        public int MaxLineBytes { get; }

        public JsonLimits Json { get; }
    }

    /// <summary>
    /// A socket that carries one JSON document per line (QMP and the guest agent). A reader thread
    /// splits the stream into lines and hands each to the owner; a 0xFF byte (the guest agent's
    /// delimiter) discards any partial line and marks the next line as following a delimiter. The peer
    /// is not trusted: a line the owner does not want is skipped without being stored, a longer line than
    /// the peer's limit fails the connection, and nothing the owner throws for a line ends the process:
    /// it fails the connection, with that exception as the reason.
    /// </summary>
    internal sealed class JsonLineConnection : IDisposable
    {
        private const int RetainedBufferBytes = 64 * 1024;

        private readonly Socket _socket;
        private readonly object _sendLock = new object();
        private readonly Thread _reader;
        private readonly string _what;
        private readonly string _errorPrefix;
        private Func<bool, bool>? _wantsLine;
        private Action<string, bool>? _onLine;
        private Action<Exception?>? _onClosed;
        private int _disposed;

        private JsonLineConnection(Socket socket, string address, string what, string errorPrefix, PeerLimits limits)
        {
            _socket = socket;
            _what = what;
            _errorPrefix = errorPrefix;
            Address = address;
            Limits = limits;
            _reader = new Thread(ReadLoop) { IsBackground = true, Name = "VmQuiesce reader " + address };
        }

        /// <summary>The socket path or host:port, as the user gave it: every error names it.</summary>
        public string Address { get; }

        public PeerLimits Limits { get; }

        /// <summary>
        /// Connects to a unix socket path, or to TCP when the address is "tcp:host:port" or "host:port".
        /// Failures are <see cref="VmQuiesceException"/>s named "&lt;errorPrefix&gt;ConnectFailed".
        /// </summary>
        public static JsonLineConnection Open(string address, string what, string errorPrefix, PeerLimits limits, TimeSpan timeout, CancellationToken cancel)
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

            return new JsonLineConnection(socket, address, what, errorPrefix, limits);
        }

        /// <summary>
        /// Starts the reader; the callbacks run on the reader thread. <paramref name="wantsLine"/> is asked, with
        /// whether a 0xFF came before, when a line starts: false skips it unread.
        /// </summary>
        public void Start(Func<bool, bool> wantsLine, Action<string, bool> onLine, Action<Exception?> onClosed)
        {
            _wantsLine = wantsLine;
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

        /// <summary>The process serving the other end, when this host can tell (Linux: the peer's credentials of a unix socket, or the owner of a local TCP socket).</summary>
        public int? FindPeerProcess() => Platform.HostPlatform.IsLinux ? LinuxProcessInspector.PeerProcessId(_socket) : null;

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
            bool inLine = false;
            bool keep = false;
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
                            inLine = false;
                            afterDelimiter = true;
                        }
                        else if (b == (byte)'\n')
                        {
                            if (inLine && keep)
                            {
                                string text = Encoding.UTF8.GetString(line.GetBuffer(), 0, (int)line.Length).Trim();
                                _onLine!(text, afterDelimiter);
                            }

                            afterDelimiter = afterDelimiter && !inLine;
                            inLine = false;
                            line = line.Capacity > RetainedBufferBytes ? new MemoryStream() : line;
                            line.SetLength(0);
                        }
                        else if (!inLine && (b == (byte)' ' || b == (byte)'\r' || b == (byte)'\t'))
                        {
                            // Blank space between messages (QEMU ends lines with \r\n) starts no line.
                        }
                        else
                        {
                            if (!inLine)
                            {
                                inLine = true;
                                keep = _wantsLine!(afterDelimiter);
                            }

                            if (!keep)
                            {
                                continue;
                            }

                            if (line.Length >= Limits.MaxLineBytes)
                            {
                                throw new VmQuiesceException(_errorPrefix + "ProtocolError", FailureKind.ProtocolError,
                                    $"The {_what} at '{Address}' sent a line longer than {Limits.MaxLineBytes} bytes, the most VmQuiesce accepts from it, so VmQuiesce closed the connection.", Address);
                            }

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
            catch (Exception e)
            {
                // A line the owner refused (or could not handle): this connection ends, never the process.
                failure = e;
                Dispose();
            }

            try
            {
                _onClosed!(failure);
            }
            catch (Exception e)
            {
                // Nothing may escape a reader thread: the owner already knows the connection is gone.
                System.Diagnostics.Trace.TraceError("Closing the connection to '{0}' failed: {1}", Address, e);
            }
        }
    }
}
