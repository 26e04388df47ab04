using System;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// Where an NBD server listens: a unix socket (Linux, macOS: only local processes with access to the
    /// socket file can connect) or TCP (Windows, where QEMU and .NET Framework have no unix sockets; the
    /// server binds only to loopback).
    /// </summary>
    public sealed class NbdEndpoint
    {
        private NbdEndpoint(string? socketPath, string? host, int port)
        {
            SocketPath = socketPath;
            Host = host;
            Port = port;
        }

        /// <summary>The unix socket's path; null for TCP.</summary>
        public string? SocketPath { get; }

        /// <summary>The TCP host; null for a unix socket.</summary>
        public string? Host { get; }

        /// <summary>The TCP port (0 when a server should pick a free one); 0 for a unix socket.</summary>
        public int Port { get; }

        public bool IsUnixSocket => SocketPath != null;

        public static NbdEndpoint UnixSocket(string path)
        {
            if (string.IsNullOrEmpty(path))
            {
                throw new VmQuiesceException("NbdAddressInvalid", FailureKind.InvalidArgument, "The NBD unix socket path is empty; expected a full path.", path);
            }

            _ = new UnixSocketEndPoint(path, "NBD server", "Nbd"); // validates the length now, not at connect time
            return new NbdEndpoint(path, null, 0);
        }

        public static NbdEndpoint Tcp(string host, int port)
        {
            if (string.IsNullOrWhiteSpace(host) || port < 0 || port > 65535)
            {
                throw new VmQuiesceException("NbdAddressInvalid", FailureKind.InvalidArgument,
                    $"The NBD address '{host}:{port}' is not a host name with a port from 0 to 65535.", host);
            }

            return new NbdEndpoint(null, host, port);
        }

        /// <summary>Loopback TCP on the given port (0: any free port), for a server where unix sockets are not an option.</summary>
        public static NbdEndpoint LoopbackTcp(int port = 0) => Tcp(IPAddress.Loopback.ToString(), port);

        /// <summary>
        /// The NBD URI of one export as QEMU (qemu-img, -drive, blockdev nbd) and libnbd (nbdinfo, nbdcopy)
        /// take it: nbd+unix:///name?socket=path or nbd://host:port/name.
        /// </summary>
        public string ToUri(string exportName)
        {
            string name = Escape(exportName ?? string.Empty);
            if (IsUnixSocket)
            {
                return "nbd+unix:///" + name + "?socket=" + Escape(SocketPath!);
            }

            string host = Host!.IndexOf(':') >= 0 ? "[" + Host + "]" : Host!;
            return "nbd://" + host + ":" + Port.ToString(CultureInfo.InvariantCulture) + "/" + name;
        }

        /// <summary>"unix:/path" or "tcp:host:port": how errors name the server.</summary>
        public override string ToString() => IsUnixSocket ? "unix:" + SocketPath : "tcp:" + Host + ":" + Port.ToString(CultureInfo.InvariantCulture);

        /// <summary>Percent-encoding where a URI needs it; '/' stays readable (both QEMU and libnbd decode either form).</summary>
        private static string Escape(string text) => Uri.EscapeDataString(text).Replace("%2F", "/");

        internal EndPoint ToEndPoint()
        {
            if (IsUnixSocket)
            {
                return new UnixSocketEndPoint(SocketPath!, "NBD server", "Nbd");
            }

            return IPAddress.TryParse(Host, out IPAddress? address) ? new IPEndPoint(address, Port) : new DnsEndPoint(Host!, Port);
        }

        internal Socket CreateSocket()
        {
            if (IsUnixSocket)
            {
                return new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            }

            EndPoint endPoint = ToEndPoint();
            var socket = endPoint is IPEndPoint ip
                ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
                : new Socket(SocketType.Stream, ProtocolType.Tcp);
            socket.NoDelay = true; // request and reply headers are small; Nagle would hold them back
            return socket;
        }
    }
}
