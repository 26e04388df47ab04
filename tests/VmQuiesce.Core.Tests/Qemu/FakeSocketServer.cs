using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// A unix-socket server that serves one client at a time (as QEMU's chardev does) and hands each
    /// received line to the subclass. Runs on its own thread; real sockets, no mocks.
    /// </summary>
    public abstract class FakeSocketServer : IDisposable
    {
        private readonly Socket _listener;
        private readonly Thread _thread;
        private readonly object _sendLock = new object();
        private Socket? _client;
        private volatile bool _stopped;

        /// <param name="path">A unix socket path, or null to listen on TCP at 127.0.0.1 on a free port.</param>
        protected FakeSocketServer(string? path)
        {
            if (path == null)
            {
                _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                _listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
                SocketPath = "tcp:127.0.0.1:" + ((System.Net.IPEndPoint)_listener.LocalEndPoint!).Port;
            }
            else
            {
                _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                _listener.Bind(new UnixDomainSocketEndPoint(path));
                SocketPath = path;
            }

            _listener.Listen(4);
            _thread = new Thread(AcceptLoop) { IsBackground = true, Name = GetType().Name };
        }

        /// <summary>The address clients use: the unix socket path, or tcp:127.0.0.1:port.</summary>
        public string SocketPath { get; }

        /// <summary>Every command name received, in order.</summary>
        public List<string> Commands { get; } = new List<string>();

        public int Connections { get; private set; }

        public void Start() => _thread.Start();

        public bool ReceivedCommand(string name)
        {
            lock (Commands)
            {
                return Commands.Contains(name);
            }
        }

        /// <summary>Closes the current client's connection, as a dying peer would.</summary>
        public void DropClient()
        {
            try
            {
                _client?.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
            {
                // Already gone.
            }

            _client?.Dispose();
        }

        public virtual void Dispose()
        {
            _stopped = true;
            DropClient();
            _listener.Dispose();
            if (!SocketPath.StartsWith("tcp:", StringComparison.Ordinal))
            {
                File.Delete(SocketPath);
            }
        }

        /// <summary>Sends any text as one line (a hostile peer's), with the 0xFF delimiter before it when asked.</summary>
        public void SendRawLine(string text, bool withDelimiter = false) => Send(text, withDelimiter);

        protected abstract void OnConnected();

        /// <summary>Handles one received line; <paramref name="afterReset"/> when a 0xFF byte came before it.</summary>
        protected abstract void OnLine(string line, bool afterReset);

        protected void Send(string text, bool withDelimiter = false)
        {
            lock (_sendLock)
            {
                try
                {
                    if (withDelimiter)
                    {
                        _client?.Send(new byte[] { 0xFF });
                    }

                    _client?.Send(Encoding.UTF8.GetBytes(text + "\r\n"));
                }
                catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
                {
                    // The client went away: nothing to answer.
                }
            }
        }

        protected void Reply(JsonObject request, object? value) =>
            Send(WithId(new JsonObject().With("return", value), request).ToString());

        protected void ReplyError(JsonObject request, string errorClass, string description) =>
            Send(WithId(new JsonObject().With("error", new JsonObject().With("class", errorClass).With("desc", description)), request).ToString());

        protected void Record(string command)
        {
            lock (Commands)
            {
                Commands.Add(command);
                Monitor.PulseAll(Commands);
            }
        }

        /// <summary>Waits until <paramref name="count"/> commands have been received; false when <paramref name="timeout"/> passed first.</summary>
        public bool WaitForCommands(int count, TimeSpan timeout)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            lock (Commands)
            {
                while (Commands.Count < count)
                {
                    TimeSpan left = timeout - clock.Elapsed;
                    if (left <= TimeSpan.Zero || !Monitor.Wait(Commands, left))
                    {
                        return Commands.Count >= count;
                    }
                }

                return true;
            }
        }

        private static JsonObject WithId(JsonObject reply, JsonObject request)
        {
            if (request.Contains("id"))
            {
                reply["id"] = request["id"];
            }

            return reply;
        }

        private void AcceptLoop()
        {
            while (!_stopped)
            {
                try
                {
                    _client = _listener.Accept();
                }
                catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
                {
                    return;
                }

                Connections++;
                OnConnected();
                ReadClient(_client);
            }
        }

        private void ReadClient(Socket client)
        {
            var buffer = new byte[4096];
            var line = new MemoryStream();
            bool afterReset = false;
            try
            {
                while (true)
                {
                    int count = client.Receive(buffer);
                    if (count == 0)
                    {
                        return;
                    }

                    for (int i = 0; i < count; i++)
                    {
                        if (buffer[i] == 0xFF)
                        {
                            afterReset = true;
                            line.SetLength(0);
                            OnLine("\uFFFD", false);
                        }
                        else if (buffer[i] == (byte)'\n')
                        {
                            string text = Encoding.UTF8.GetString(line.ToArray()).Trim();
                            line.SetLength(0);
                            if (text.Length > 0)
                            {
                                OnLine(text, afterReset);
                                afterReset = false;
                            }
                        }
                        else
                        {
                            line.WriteByte(buffer[i]);
                        }
                    }
                }
            }
            catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
            {
                // Client gone: wait for the next one.
            }
            finally
            {
                client.Dispose();
            }
        }
    }
}
