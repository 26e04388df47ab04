using System.Net;
using System.Net.Sockets;
using System.Text;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// An AF_UNIX address (netstandard2.0 has no UnixDomainSocketEndPoint), for connecting and for binding:
    /// the QMP and guest-agent clients, the NBD client and the NBD server.
    /// </summary>
    internal sealed class UnixSocketEndPoint : EndPoint
    {
        /// <summary>sun_path holds 108 bytes on Linux, one of them the terminating NUL.</summary>
        private const int MaxPathBytes = 107;
        private readonly byte[] _path;

        /// <summary>
        /// <paramref name="what"/> names the peer in the error ("QEMU monitor", "NBD server");
        /// <paramref name="errorPrefix"/> starts the error id ("Qmp" gives "QmpAddressInvalid").
        /// </summary>
        public UnixSocketEndPoint(string path, string what, string errorPrefix)
        {
            _path = Encoding.UTF8.GetBytes(path);
            if (_path.Length > MaxPathBytes)
            {
                throw new VmQuiesceException(errorPrefix + "AddressInvalid", FailureKind.InvalidArgument,
                    $"The {what} socket path '{path}' is {_path.Length} bytes; unix sockets allow at most {MaxPathBytes}. Use a shorter path.", path);
            }

            Path = path;
        }

        public string Path { get; }

        public override AddressFamily AddressFamily => AddressFamily.Unix;

        public override SocketAddress Serialize()
        {
            var address = new SocketAddress(AddressFamily.Unix, 2 + _path.Length + 1);
            for (int i = 0; i < _path.Length; i++)
            {
                address[2 + i] = _path[i];
            }

            address[2 + _path.Length] = 0;
            return address;
        }

        public override EndPoint Create(SocketAddress socketAddress) => this;

        public override string ToString() => Path;
    }
}
