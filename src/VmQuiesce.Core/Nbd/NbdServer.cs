using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// A read-only NBD server for named exports (<see cref="INbdExportBackend"/>), for QEMU, qemu-img,
    /// qemu-nbd, nbdinfo and nbdcopy: fixed newstyle negotiation with NBD_OPT_GO/INFO and block sizes,
    /// structured replies (holes as NBD_REPLY_TYPE_OFFSET_HOLE, backend failures as
    /// NBD_REPLY_TYPE_ERROR_OFFSET with EIO), the base:allocation context, several clients with pipelined
    /// requests processed concurrently.
    /// </summary>
    /// <remarks>
    /// Managed, so the repository can serve a restore point from its own verified chunks without a helper
    /// process or native library, on every platform the module loads on. Memory is bounded whatever
    /// clients do: read data goes through a shared pool of 1 MiB buffers (<see cref="NbdServerOptions.ReadBufferBytes"/>),
    /// or is sent straight from the buffers of a backend that lends them (a restore point's bounded chunk cache),
    /// each connection has at most <see cref="NbdServerOptions.MaxRequestsInFlightPerConnection"/> requests in
    /// progress (after that its socket is not read), and every length a client sends is bounded before use.
    /// On Linux and macOS it listens on a unix socket made readable and writable by its owner only (mode
    /// 0600, set before anyone can connect); on Windows on loopback TCP, which any local user can reach.
    /// </remarks>
    public sealed class NbdServer : IDisposable
    {
        private const int PieceSize = 1024 * 1024;

        private readonly Socket _listener;
        private readonly Dictionary<string, NbdExport> _exports;
        private readonly HashSet<NbdServerConnection> _connections = new HashSet<NbdServerConnection>();
        private readonly Dictionary<NbdServerConnection, Task> _running = new Dictionary<NbdServerConnection, Task>();
        private readonly string? _socketPath;
        private readonly Task _acceptLoop;
        private readonly object _gate = new object();
        private Task? _stopped;
        private volatile bool _stopping;
        private int _nextClient;

        private NbdServer(Socket listener, NbdEndpoint endpoint, Dictionary<string, NbdExport> exports, NbdServerOptions options, string? socketPath)
        {
            _listener = listener;
            Endpoint = endpoint;
            _exports = exports;
            Options = options;
            _socketPath = socketPath;
            Buffers = new NbdBufferPool(PieceSize, Math.Max(1, options.ReadBufferBytes / PieceSize));
            _acceptLoop = Task.Run(AcceptLoopAsync);
        }

        /// <summary>Where clients connect (for TCP, with the port the system chose when 0 was asked).</summary>
        public NbdEndpoint Endpoint { get; }

        public IReadOnlyCollection<NbdExport> Exports => _exports.Values;

        public int ConnectionCount
        {
            get
            {
                lock (_gate)
                {
                    return _connections.Count;
                }
            }
        }

        internal NbdServerOptions Options { get; }

        internal NbdBufferPool Buffers { get; }

        /// <summary>
        /// The endpoint a server should listen on here: the unix socket <paramref name="socketPath"/>, or
        /// loopback TCP on a free port on Windows.
        /// </summary>
        public static NbdEndpoint LocalEndpoint(string socketPath) => HostPlatform.IsWindows ? NbdEndpoint.LoopbackTcp() : NbdEndpoint.UnixSocket(socketPath);

        /// <summary>Starts serving <paramref name="exports"/> on <paramref name="listenOn"/> (a unix socket path that must not exist yet, or loopback TCP).</summary>
        public static NbdServer Start(NbdEndpoint listenOn, IEnumerable<NbdExport> exports, NbdServerOptions? options = null)
        {
            if (listenOn == null)
            {
                throw new ArgumentNullException(nameof(listenOn));
            }

            options ??= new NbdServerOptions();
            CheckOptions(options);
            Dictionary<string, NbdExport> byName = IndexExports(exports);
            Socket listener = listenOn.CreateSocket();
            try
            {
                NbdEndpoint bound = listenOn.IsUnixSocket ? BindUnix(listener, listenOn, options) : BindLoopback(listener, listenOn);
                listener.Listen(32);
                return new NbdServer(listener, bound, byName, options, bound.SocketPath);
            }
            catch
            {
                listener.Dispose();
                throw;
            }
        }

        /// <summary>The URI of an export for QEMU and libnbd tools (nbd+unix:///name?socket=... or nbd://127.0.0.1:port/name).</summary>
        public string GetUri(string exportName) => Endpoint.ToUri(exportName);

        /// <summary>
        /// Stops: no new connections; requests in progress are answered for up to <paramref name="drain"/>
        /// (new ones get ESHUTDOWN), then every connection closes and the socket file is removed.
        /// </summary>
        public Task StopAsync(TimeSpan drain)
        {
            lock (_gate)
            {
                if (_stopped == null)
                {
                    // Before this call returns, every connection refuses new requests.
                    _stopping = true;
                    foreach (NbdServerConnection connection in _connections)
                    {
                        connection.RefuseNewRequests();
                    }

                    _stopped = StopCoreAsync(drain);
                }

                return _stopped;
            }
        }

        public void Dispose() => StopAsync(TimeSpan.FromSeconds(5)).Wait();

        internal NbdExport? FindExport(string name)
        {
            if (_exports.TryGetValue(name, out NbdExport? export))
            {
                return export;
            }

            // The empty name asks for the default export: the only one, when there is one and it may be found unnamed.
            return name.Length == 0 && _exports.Count == 1 && _exports.Values.First().Listed ? _exports.Values.First() : null;
        }

        internal void Report(NbdServerError error)
        {
            try
            {
                Options.OnError?.Invoke(error);
            }
            catch (Exception)
            {
                // An observer's failure must not take a connection down with it.
            }
        }

        private static void CheckOptions(NbdServerOptions options)
        {
            if (options.MaxConnections < 1 || options.MaxRequestsInFlightPerConnection < 1 || options.ReadBufferBytes < PieceSize
                || options.HandshakeTimeout <= TimeSpan.Zero || options.HandshakeTimeout.TotalMilliseconds > int.MaxValue)
            {
                throw new VmQuiesceException("NbdServerOptionsInvalid", FailureKind.InvalidArgument,
                    $"The NBD server options are out of range: at least 1 connection and 1 request in flight, a read buffer of at least {PieceSize} bytes, and a positive handshake timeout are needed.", options);
            }
        }

        private static Dictionary<string, NbdExport> IndexExports(IEnumerable<NbdExport> exports)
        {
            var byName = new Dictionary<string, NbdExport>(StringComparer.Ordinal);
            foreach (NbdExport export in exports ?? throw new ArgumentNullException(nameof(exports)))
            {
                if (!NbdProtocol.IsPowerOfTwo(export.PreferredBlockSize) || export.PreferredBlockSize < 512 || export.PreferredBlockSize > NbdProtocol.MaxReadLength)
                {
                    throw new VmQuiesceException("NbdExportInvalid", FailureKind.InvalidArgument,
                        $"The preferred block size of the NBD export '{export.Name}' is {export.PreferredBlockSize}; expected a power of 2 from 512 to {NbdProtocol.MaxReadLength}.", export.Name);
                }

                if (byName.ContainsKey(export.Name))
                {
                    throw new VmQuiesceException("NbdExportInvalid", FailureKind.InvalidArgument, $"Two NBD exports are named '{export.Name}'; names must be unique.", export.Name);
                }

                byName.Add(export.Name, export);
            }

            if (byName.Count == 0)
            {
                throw new VmQuiesceException("NbdExportInvalid", FailureKind.InvalidArgument, "An NBD server needs at least one export.", null);
            }

            return byName;
        }

        private static NbdEndpoint BindUnix(Socket listener, NbdEndpoint endpoint, NbdServerOptions options)
        {
            string path = endpoint.SocketPath!;
            if (HostPlatform.IsWindows)
            {
                throw new VmQuiesceException("NbdAddressInvalid", FailureKind.NotSupported,
                    $"An NBD server on Windows listens on loopback TCP, not on the unix socket '{path}' (QEMU for Windows has no unix socket client).", path);
            }

            if (File.Exists(path) || Directory.Exists(path))
            {
                // Never remove what is there: it may be another server's live socket, or not a socket at all.
                throw new VmQuiesceException("NbdSocketPathInUse", FailureKind.ResourceBusy,
                    $"Cannot serve NBD on '{path}': something already exists there.", path)
                {
                    Remedy = "Choose a socket path in a folder of your own, or remove the leftover file if no server uses it.",
                };
            }

            // Linux makes the socket file with the mode of the unbound socket (less the umask): set on the socket, it is
            // 0600 from its first moment. A chmod by name after bind() would follow whatever link another user who may
            // write the folder had put in its place by then, and give root's 0600 to that link's target.
            if (HostPlatform.IsLinux && Libc.fchmod((int)listener.Handle, RegularFile.OwnerOnly) != 0)
            {
                throw ListenFailed(endpoint, new IOException(Libc.ErrorText(Marshal.GetLastWin32Error())));
            }

            try
            {
                listener.Bind(endpoint.ToEndPoint());
            }
            catch (SocketException e)
            {
                throw ListenFailed(endpoint, e);
            }

            options.AfterBind?.Invoke();
            if (!HostPlatform.IsLinux)
            {
                // macOS ignores a socket's own mode at bind(): only a chmod by name is left there.
                try
                {
                    PosixFiles.ChangeMode(path, RegularFile.OwnerOnly); // before listen(): nobody can connect yet
                }
                catch (IOException e)
                {
                    File.Delete(path); // the socket this call made, not left behind open to others
                    throw ListenFailed(endpoint, e);
                }
            }

            return endpoint;
        }

        private static NbdEndpoint BindLoopback(Socket listener, NbdEndpoint endpoint)
        {
            if (!IPAddress.TryParse(endpoint.Host, out IPAddress? address) || !IPAddress.IsLoopback(address))
            {
                throw new VmQuiesceException("NbdAddressInvalid", FailureKind.InvalidArgument,
                    $"An NBD server listens on a loopback address only (127.0.0.1 or ::1), not on '{endpoint.Host}': exports carry whole disks and have no authentication.", endpoint.Host);
            }

            try
            {
                listener.Bind(new IPEndPoint(address, endpoint.Port));
            }
            catch (SocketException e)
            {
                throw ListenFailed(endpoint, e);
            }

            return NbdEndpoint.Tcp(endpoint.Host!, ((IPEndPoint)listener.LocalEndPoint!).Port);
        }

        private static VmQuiesceException ListenFailed(NbdEndpoint endpoint, Exception error) =>
            new VmQuiesceException("NbdListenFailed", FailureKind.ResourceUnavailable, $"Cannot serve NBD on {endpoint}: {error.Message}.", endpoint.ToString(), error);

        private async Task AcceptLoopAsync()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
                {
                    if (_stopping)
                    {
                        return;
                    }

                    // Out of file descriptors, say: report, and back off rather than spin on the same failure.
                    Report(new NbdServerError("listener", null, $"accepting a connection failed: {e.Message}", e));
                    await Task.Delay(100).ConfigureAwait(false);
                    continue;
                }

                int number = ++_nextClient;
                string name = "client " + number.ToString(CultureInfo.InvariantCulture)
                    + (socket.RemoteEndPoint is IPEndPoint remote ? " (" + remote + ")" : string.Empty);
                if (!Endpoint.IsUnixSocket)
                {
                    socket.NoDelay = true;
                }

                var connection = new NbdServerConnection(this, new NbdStream(socket), name);
                lock (_gate)
                {
                    if (_stopping || _connections.Count >= Options.MaxConnections)
                    {
                        if (!_stopping)
                        {
                            Report(new NbdServerError(name, null, $"was refused: {Options.MaxConnections} connections are open already.", null));
                        }

                        socket.Dispose();
                        continue;
                    }

                    _connections.Add(connection);
                    _running.Add(connection, RunConnectionAsync(connection));
                }
            }
        }

        private async Task RunConnectionAsync(NbdServerConnection connection)
        {
            await Task.Yield();
            try
            {
                await connection.RunAsync().ConfigureAwait(false);
            }
            finally
            {
                lock (_gate)
                {
                    _connections.Remove(connection);
                    _running.Remove(connection);
                }
            }
        }

        private async Task StopCoreAsync(TimeSpan drain)
        {
            _listener.Dispose();
            await _acceptLoop.ConfigureAwait(false);
            NbdServerConnection[] connections;
            Task[] running;
            lock (_gate)
            {
                connections = _connections.ToArray();
                running = _running.Values.ToArray();
            }

            await Task.WhenAll(connections.Select(c => c.StopAsync(drain))).ConfigureAwait(false);

            // A backend that ignores cancellation could keep a connection's task alive: do not wait for it forever.
            Task all = Task.WhenAll(running);
            if (await Task.WhenAny(all, Task.Delay(drain)).ConfigureAwait(false) != all)
            {
                Report(new NbdServerError("server", null, "some requests were still in the backend when the server stopped.", null));
            }

            if (_socketPath != null)
            {
                File.Delete(_socketPath);
            }
        }
    }
}
