// What the chaos run (Invoke-Chaos.ps1) needs beyond PowerShell: a child process whose output is read as it
// comes, real signals, and a proxy on unix sockets that delays, drops and kills. Compiled with Add-Type.
#nullable enable
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace VmQuiesceChaos
{
    public static class Signals
    {
        public const int Interrupt = 2;
        public const int Kill = 9;
        public const int Terminate = 15;

        [DllImport("libc", SetLastError = true)]
        private static extern int kill(int pid, int sig);

        /// <summary>True when the signal was sent (false: no such process any more).</summary>
        public static bool Send(int processId, int signal) => kill(processId, signal) == 0;

        public static bool IsAlive(int processId) => Directory.Exists("/proc/" + processId) && !IsZombie(processId);

        private static bool IsZombie(int processId)
        {
            try
            {
                string stat = File.ReadAllText("/proc/" + processId + "/stat");
                int close = stat.LastIndexOf(')');
                return close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z';
            }
            catch (IOException)
            {
                return false;
            }
        }
    }

    /// <summary>A child process whose output lines are collected as they come, for a driver that waits on them.</summary>
    public sealed class ChildRun : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = new List<string>();
        private readonly List<TimeSpan> _times = new List<TimeSpan>();
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public ChildRun(string fileName, IEnumerable<string> arguments)
        {
            var start = new ProcessStartInfo(fileName)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
            };
            foreach (string argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            _process = new Process { StartInfo = start };
            _process.OutputDataReceived += (_, e) => Add(e.Data);
            _process.ErrorDataReceived += (_, e) => Add(e.Data);
            _process.Start();
            _process.StandardInput.Close();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public int ProcessId => _process.Id;

        public TimeSpan Elapsed => _clock.Elapsed;

        public bool HasExited => _process.HasExited;

        public int ExitCode => _process.ExitCode;

        public string[] Lines
        {
            get { lock (_lines) { return _lines.ToArray(); } }
        }

        /// <summary>When the first line starting with <paramref name="prefix"/> came, since the process started; null if none did.</summary>
        public TimeSpan? TimeOf(string prefix)
        {
            lock (_lines)
            {
                int index = _lines.FindIndex(line => line.StartsWith(prefix, StringComparison.Ordinal));
                return index < 0 ? (TimeSpan?)null : _times[index];
            }
        }

        /// <summary>The first line starting with <paramref name="prefix"/>, waiting up to <paramref name="timeout"/>; null when the process ended or time ran out first.</summary>
        public string? WaitForLine(string prefix, TimeSpan timeout)
        {
            var deadline = Stopwatch.StartNew();
            lock (_lines)
            {
                while (true)
                {
                    foreach (string line in _lines)
                    {
                        if (line.StartsWith(prefix, StringComparison.Ordinal))
                        {
                            return line;
                        }
                    }

                    TimeSpan left = timeout - deadline.Elapsed;
                    if (left <= TimeSpan.Zero || _process.HasExited && _ended)
                    {
                        return null;
                    }

                    Monitor.Wait(_lines, left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
                }
            }
        }

        public bool WaitForExit(TimeSpan timeout)
        {
            if (!_process.WaitForExit((int)Math.Min(int.MaxValue, timeout.TotalMilliseconds)))
            {
                return false;
            }

            _process.WaitForExit();   // drains the output readers
            return true;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(true);
                _process.WaitForExit();
            }

            _process.Dispose();
        }

        private volatile bool _ended;

        private void Add(string? line)
        {
            lock (_lines)
            {
                if (line == null)
                {
                    _ended = true;
                }
                else
                {
                    _lines.Add(line);
                    _times.Add(_clock.Elapsed);
                }

                Monitor.PulseAll(_lines);
            }
        }
    }

    public enum ProxyFault
    {
        /// <summary>Holds the matching line for a while, then passes it on.</summary>
        Delay,

        /// <summary>Closes both sides instead of passing the matching line on.</summary>
        Drop,

        /// <summary>Passes the matching line on, then SIGKILLs the process named.</summary>
        Kill,
    }

    /// <summary>
    /// A real proxy between a client and a unix socket server (QMP or the guest agent): lines pass through
    /// unchanged, except that the first request containing a trigger, or the first reply after it, gets the armed fault.
    /// </summary>
    public sealed class SocketProxy : IDisposable
    {
        private readonly Socket _listener;
        private readonly string _upstream;
        private readonly object _gate = new object();
        private readonly List<Socket> _open = new List<Socket>();
        private string? _trigger;
        private bool _onReply;
        private ProxyFault _fault;
        private TimeSpan _delay;
        private int _killProcessId;
        private bool _replyPending;

        public SocketProxy(string listenPath, string upstreamPath)
        {
            ListenPath = listenPath;
            _upstream = upstreamPath;
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(listenPath));
            _listener.Listen(16);
            new Thread(AcceptLoop) { IsBackground = true, Name = "proxy " + listenPath }.Start();
        }

        public string ListenPath { get; }

        /// <summary>What fired, once it did ("Drop on reply containing ..."); null before.</summary>
        public string? Fired { get; private set; }

        public void Arm(string trigger, bool onReply, ProxyFault fault, TimeSpan delay, int killProcessId)
        {
            lock (_gate)
            {
                _trigger = trigger;
                _onReply = onReply;
                _fault = fault;
                _delay = delay;
                _killProcessId = killProcessId;
                _replyPending = false;
                Fired = null;
            }
        }

        public void Disarm()
        {
            lock (_gate)
            {
                _trigger = null;
            }
        }

        public void Dispose()
        {
            _listener.Dispose();
            lock (_gate)
            {
                foreach (Socket socket in _open)
                {
                    socket.Dispose();
                }

                _open.Clear();
            }

            File.Delete(ListenPath);
        }

        private void AcceptLoop()
        {
            while (true)
            {
                Socket client;
                try
                {
                    client = _listener.Accept();
                }
                catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
                {
                    return;
                }

                var server = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    server.Connect(new UnixDomainSocketEndPoint(_upstream));
                }
                catch (SocketException)
                {
                    client.Dispose();
                    server.Dispose();
                    continue;
                }

                lock (_gate)
                {
                    _open.Add(client);
                    _open.Add(server);
                }

                new Thread(() => Pump(client, server, reply: false)) { IsBackground = true }.Start();
                new Thread(() => Pump(server, client, reply: true)) { IsBackground = true }.Start();
            }
        }

        private void Pump(Socket from, Socket to, bool reply)
        {
            var line = new MemoryStream();
            var buffer = new byte[65536];
            try
            {
                while (true)
                {
                    int read = from.Receive(buffer);
                    if (read == 0)
                    {
                        break;
                    }

                    for (int i = 0; i < read; i++)
                    {
                        line.WriteByte(buffer[i]);
                        if (buffer[i] == (byte)'\n')
                        {
                            if (!Forward(line.ToArray(), to, reply))
                            {
                                Close(from, to);
                                return;
                            }

                            line.SetLength(0);
                        }
                    }
                }

                if (line.Length > 0)
                {
                    to.Send(line.ToArray());
                }
            }
            catch (Exception e) when (e is SocketException || e is ObjectDisposedException)
            {
            }

            Close(from, to);
        }

        /// <summary>Passes one line on with the armed fault if it matches; false when the connection is to be dropped.</summary>
        private bool Forward(byte[] bytes, Socket to, bool reply)
        {
            ProxyFault? fault = null;
            TimeSpan delay = TimeSpan.Zero;
            int kill = 0;
            lock (_gate)
            {
                bool matches = _trigger != null && !reply && Encoding.Latin1.GetString(bytes).Contains(_trigger, StringComparison.Ordinal);
                if (matches && _onReply)
                {
                    _replyPending = true;
                }
                else if (matches || (reply && _replyPending && _trigger != null))
                {
                    fault = _fault;
                    delay = _delay;
                    kill = _killProcessId;
                    Fired = $"{_fault} on the {(reply ? "reply to" : "request")} '{_trigger}'";
                    _trigger = null;
                    _replyPending = false;
                }
            }

            switch (fault)
            {
                case ProxyFault.Drop:
                    return false;
                case ProxyFault.Delay:
                    Thread.Sleep(delay);
                    break;
            }

            to.Send(bytes);
            if (fault == ProxyFault.Kill && kill > 0)
            {
                Signals.Send(kill, Signals.Kill);
            }

            return true;
        }

        private static void Close(Socket a, Socket b)
        {
            try { a.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException || e is ObjectDisposedException) { }
            try { b.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException || e is ObjectDisposedException) { }
            a.Dispose();
            b.Dispose();
        }
    }
}
