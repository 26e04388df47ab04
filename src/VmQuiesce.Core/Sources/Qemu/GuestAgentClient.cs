using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A client of the QEMU guest agent (qemu-ga) through the host side of its virtio-serial channel.
    /// The channel has no greeting and may hold stale replies, so the client synchronises with
    /// guest-sync-delimited (0xFF reset, id matching) before the first command and after any timeout.
    /// Calls are serialised: the agent answers one command at a time, in order (<see cref="ExecuteAll"/> sends several at once).
    /// </summary>
    public sealed class GuestAgentClient : IDisposable
    {
        public const string What = "guest agent";
        private const string Peer = "GuestAgent";
        private static readonly TimeSpan SyncResendInterval = TimeSpan.FromSeconds(1);

        private readonly CommandChannel _channel;
        private readonly object _callLock = new object();
        private readonly ManualResetEventSlim _synced = new ManualResetEventSlim(false);
        private readonly Random _random = new Random();
        private long _expectedSyncId = -1;
        private bool _needsSync = true;

        private GuestAgentClient(JsonLineConnection connection, TimeSpan callTimeout)
        {
            CallTimeout = callTimeout;
            // Nothing is asked ahead: every answer of the agent is read after its sync.
            _channel = new CommandChannel(connection, Peer, What, WantsLine, Intercept, _ => false);
        }

        public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromSeconds(10);

        public string Address => _channel.Address;

        /// <summary>The timeout of a call (and of the sync before it) when the call does not give one.</summary>
        public TimeSpan CallTimeout { get; }

        /// <summary>
        /// Connects to the host side of the agent's channel. The agent itself is first asked on the
        /// first call, which synchronises (so an agent that is not running shows up as a timeout there).
        /// </summary>
        public static GuestAgentClient Connect(string address, TimeSpan? callTimeout = null, CancellationToken cancel = default)
        {
            TimeSpan limit = callTimeout ?? DefaultTimeout;
            return new GuestAgentClient(JsonLineConnection.Open(address, What, Peer, PeerLimits.GuestAgent, limit, cancel), limit);
        }

        /// <summary>
        /// Discards stale replies and waits until the agent answers: sends 0xFF + guest-sync-delimited with a
        /// fresh id every second (a booting guest receives them all at once) and waits for the latest id.
        /// </summary>
        public void Sync(TimeSpan? timeout = null, CancellationToken cancel = default)
        {
            TimeSpan limit = timeout ?? CallTimeout;
            lock (_callLock)
            {
                SyncLocked(limit, cancel);
            }
        }

        /// <summary>Runs an agent command (synchronising first when needed) and returns its "return" member.</summary>
        public object? Execute(string command, JsonObject? arguments = null, TimeSpan? timeout = null, CancellationToken cancel = default) =>
            Execute(command, arguments, timeout, cancel, null);

        /// <summary>
        /// Freezes every freezable guest file system; returns how many were frozen. <paramref name="beforeSend"/> runs
        /// right before the freeze leaves (after the sync), while no other command can be sent: when it throws,
        /// nothing is sent; when it returns, any thaw sent afterwards reaches the agent after the freeze.
        /// </summary>
        public int Freeze(TimeSpan? timeout = null, CancellationToken cancel = default, Action? beforeSend = null) =>
            ToCount("guest-fsfreeze-freeze", Execute("guest-fsfreeze-freeze", null, timeout, cancel, beforeSend));

        private object? Execute(string command, JsonObject? arguments, TimeSpan? timeout, CancellationToken cancel, Action? beforeSend)
        {
            TimeSpan limit = timeout ?? CallTimeout;
            var clock = Stopwatch.StartNew();
            EnterSynced(command, limit, cancel);
            try
            {
                TimeSpan left = limit == Timeout.InfiniteTimeSpan ? limit : limit - clock.Elapsed;
                try
                {
                    return _channel.Execute(command, arguments, left > TimeSpan.Zero || left == Timeout.InfiniteTimeSpan ? left : TimeSpan.Zero, cancel, beforeSend);
                }
                catch (Exception e) when (e is OperationCanceledException || (e is VmQuiesceException v && v.Kind == FailureKind.OperationTimeout))
                {
                    // A late reply may still come: resynchronise before the next command.
                    _needsSync = true;
                    throw;
                }
            }
            finally
            {
                Monitor.Exit(_callLock);
            }
        }

        /// <summary>
        /// Takes the channel for <paramref name="commands"/> (named in the error when an earlier command still holds it
        /// past <paramref name="limit"/>), resynchronising first when a late reply may still come. The caller exits the lock.
        /// </summary>
        private void EnterSynced(string commands, TimeSpan limit, CancellationToken cancel)
        {
            if (!Monitor.TryEnter(_callLock, CommandChannel.ToMilliseconds(limit)))
            {
                throw new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                    $"'{commands}' could not be sent to the {What} at '{Address}' within {limit.TotalSeconds:0.###} s: an earlier command is still waiting for its answer.", Address);
            }

            try
            {
                if (_needsSync)
                {
                    SyncLocked(limit, cancel);
                }
            }
            catch
            {
                Monitor.Exit(_callLock);
                throw;
            }
        }

        /// <summary>
        /// Runs commands without arguments in one go: all are sent before the first answer is awaited (qemu-ga answers in
        /// order), so the channel's latency is paid once, not once per command. Each answer is the command's "return" member
        /// or the <see cref="QemuCommandException"/> the agent answered with; a timeout (<see cref="CallTimeout"/> for each
        /// answer) or a broken connection throws.
        /// </summary>
        public IReadOnlyList<CommandAnswer> ExecuteAll(IReadOnlyList<string> commands, CancellationToken cancel = default)
        {
            EnterSynced(string.Join("', '", commands), CallTimeout, cancel);
            try
            {
                return _channel.ExecuteAll(commands.Select(command => new QemuCommand(command)).ToList(), CallTimeout, cancel);
            }
            catch
            {
                // Answers may still come: resynchronise before the next command.
                _needsSync = true;
                throw;
            }
            finally
            {
                Monitor.Exit(_callLock);
            }
        }

        public void Ping(TimeSpan? timeout = null, CancellationToken cancel = default) => Execute("guest-ping", null, timeout, cancel);

        public GuestAgentInfo GetInfo(CancellationToken cancel = default) => ReadInfo(Execute("guest-info", null, null, cancel));

        /// <summary>guest-info's answer, read and bounded.</summary>
        internal GuestAgentInfo ReadInfo(object? answer)
        {
            JsonObject info = AsObject("guest-info", answer);
            return Read("guest-info", () =>
            {
                var commands = new Dictionary<string, bool>(StringComparer.Ordinal);
                foreach (object? item in info.GetOptionalArray("supported_commands") ?? new JsonArray())
                {
                    if (item is JsonObject command && command.GetOptionalString("name") is string name)
                    {
                        commands[name] = command.GetOptionalBoolean("enabled") ?? false;
                    }
                }

                return new GuestAgentInfo(GuestText.Escape(info.GetOptionalString("version")), commands);
            });
        }

        public GuestOsInfo GetOsInfo(CancellationToken cancel = default) => ReadOsInfo(Execute("guest-get-osinfo", null, null, cancel));

        /// <summary>guest-get-osinfo's answer, read and bounded.</summary>
        internal GuestOsInfo ReadOsInfo(object? answer)
        {
            JsonObject os = AsObject("guest-get-osinfo", answer);
            return Read("guest-get-osinfo", () => new GuestOsInfo(GuestText.Escape(os.GetOptionalString("id")), GuestText.Escape(os.GetOptionalString("name")), GuestText.Escape(os.GetOptionalString("pretty-name")),
                GuestText.Escape(os.GetOptionalString("version")), GuestText.Escape(os.GetOptionalString("kernel-release"))));
        }

        public IReadOnlyList<GuestFileSystem> GetFileSystems(CancellationToken cancel = default) => ReadFileSystems(Execute("guest-get-fsinfo", null, null, cancel));

        /// <summary>guest-get-fsinfo's answer, read and bounded.</summary>
        internal IReadOnlyList<GuestFileSystem> ReadFileSystems(object? answer)
        {
            JsonArray list = answer as JsonArray ?? throw _channel.WrongAnswer("guest-get-fsinfo", "an array");
            return Read("guest-get-fsinfo", () =>
            {
                var result = new List<GuestFileSystem>();
                foreach (object? item in list)
                {
                    if (item is JsonObject fs)
                    {
                        // Shown and recorded in restore points: the guest controls these names.
                        result.Add(new GuestFileSystem(GuestText.Escape(fs.GetOptionalString("name")), GuestText.Escape(fs.GetOptionalString("mountpoint")), GuestText.Escape(fs.GetOptionalString("type"))));
                    }
                }

                return result;
            });
        }

        /// <summary>"thawed" or "frozen".</summary>
        public string GetFreezeStatus(TimeSpan? timeout = null, CancellationToken cancel = default) => ReadFreezeStatus(Execute("guest-fsfreeze-status", null, timeout, cancel));

        /// <summary>guest-fsfreeze-status's answer: "thawed" or "frozen".</summary>
        internal string ReadFreezeStatus(object? answer) => answer as string ?? throw _channel.WrongAnswer("guest-fsfreeze-status", "a string");

        /// <summary>Thaws the guest's file systems; returns how many were thawed (0 when nothing was frozen).</summary>
        public int Thaw(TimeSpan? timeout = null, CancellationToken cancel = default) => ToCount("guest-fsfreeze-thaw", Execute("guest-fsfreeze-thaw", null, timeout, cancel));

        /// <summary>
        /// Runs a program in the guest (guest-exec), polls guest-exec-status until it exits and returns its
        /// exit code and output. <paramref name="timeout"/> bounds the whole run.
        /// </summary>
        public GuestExecResult Exec(string path, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken cancel = default, string? input = null)
        {
            var request = new JsonObject().With("path", path).With("arg", new JsonArray(arguments)).With("capture-output", true);
            if (input != null)
            {
                request["input-data"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(input));
            }

            var clock = Stopwatch.StartNew();
            JsonObject started = ExecuteObject("guest-exec", request, cancel);
            long pid = Read("guest-exec", () => started.GetInt64("pid"));
            var poll = new JsonObject().With("pid", pid);
            TimeSpan delay = TimeSpan.FromMilliseconds(20);
            while (true)
            {
                JsonObject status = ExecuteObject("guest-exec-status", poll, cancel);
                GuestExecResult? result = Read("guest-exec-status", () => status.GetOptionalBoolean("exited") == true
                    ? new GuestExecResult(path, (int?)status.GetOptionalInt64("exitcode"), (int?)status.GetOptionalInt64("signal"),
                        Decode(status.GetOptionalString("out-data")), Decode(status.GetOptionalString("err-data")))
                    : null);
                if (result != null)
                {
                    return result;
                }

                if (clock.Elapsed > timeout)
                {
                    throw new VmQuiesceException(Peer + "ExecTimeout", FailureKind.OperationTimeout,
                        $"'{path}' (guest pid {pid}) started through the {What} at '{Address}' was still running after {timeout.TotalSeconds:0.#} s.", Address);
                }

                cancel.WaitHandle.WaitOne(delay);
                cancel.ThrowIfCancellationRequested();
                delay = TimeSpan.FromMilliseconds(Math.Min(200, delay.TotalMilliseconds * 2));
            }
        }

        /// <summary>The process serving this socket, when this host can tell (see <see cref="QemuProcessTrust"/>).</summary>
        internal int? FindPeerProcess() => _channel.FindPeerProcess();

        public void Dispose() => _channel.Dispose();

        private static string Decode(string? base64) => base64 == null ? "" : Encoding.UTF8.GetString(Convert.FromBase64String(base64));

        private JsonObject ExecuteObject(string command, JsonObject? arguments, CancellationToken cancel) =>
            AsObject(command, Execute(command, arguments, null, cancel));

        private JsonObject AsObject(string command, object? answer) => answer as JsonObject ?? throw _channel.WrongAnswer(command, "an object");

        private int ToCount(string command, object? value) => value is long count ? (int)count : throw _channel.WrongAnswer(command, "a number");

        /// <summary>Reads a reply's members; a reply of the wrong shape (or bad base64) is the agent's protocol error, not ours.</summary>
        private T Read<T>(string command, Func<T> read)
        {
            try
            {
                return read();
            }
            catch (FormatException e)
            {
                throw new VmQuiesceException(Peer + "ProtocolError", FailureKind.ProtocolError,
                    $"The {What} at '{Address}' answered '{command}' with a reply of the wrong shape: {GuestText.Escape(e.Message)}", Address, e);
            }
        }

        private void SyncLocked(TimeSpan timeout, CancellationToken cancel)
        {
            var clock = Stopwatch.StartNew();
            _synced.Reset();
            while (true)
            {
                long id;
                lock (_random)
                {
                    id = _random.Next(1, int.MaxValue);
                }

                Interlocked.Exchange(ref _expectedSyncId, id);
                var sync = new JsonObject().With("execute", "guest-sync-delimited").With("arguments", new JsonObject().With("id", id));
                TimeSpan sendLimit = timeout == Timeout.InfiniteTimeSpan ? timeout : timeout - clock.Elapsed;
                _channel.SendRaw(sync.ToString(), withDelimiter: true, "guest-sync-delimited", sendLimit > TimeSpan.Zero || sendLimit == Timeout.InfiniteTimeSpan ? sendLimit : TimeSpan.FromMilliseconds(1));
                // Whole milliseconds, rounded up: a sub-millisecond remainder must not turn into Wait(0) and a burst of resends.
                double left = timeout == Timeout.InfiniteTimeSpan ? SyncResendInterval.TotalMilliseconds : (timeout - clock.Elapsed).TotalMilliseconds;
                int waitMilliseconds = (int)Math.Ceiling(Math.Min(left, SyncResendInterval.TotalMilliseconds));
                if (waitMilliseconds > 0 && _synced.Wait(waitMilliseconds, cancel))
                {
                    _needsSync = false;
                    return;
                }

                if (_channel.IsClosed)
                {
                    throw _channel.ClosedError("guest-sync-delimited");
                }

                if (timeout != Timeout.InfiniteTimeSpan && clock.Elapsed >= timeout)
                {
                    throw new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                        $"The {What} at '{Address}' did not answer guest-sync-delimited within {timeout.TotalSeconds:0.###} s: qemu-ga is not running in the guest, or the guest has not finished booting.",
                        Address)
                    {
                        Remedy = "Check that qemu-ga runs in the guest (systemctl status qemu-guest-agent) and that the VM's virtio-serial port is named org.qemu.guest_agent.0.",
                    };
                }
            }
        }

        /// <summary>
        /// Only a sync reply while synchronising, or a reply while a call waits: anything else the agent sends
        /// is dropped unread, so an agent cannot make the host parse (and hold) what nobody asked for.
        /// </summary>
        private bool WantsLine(bool afterDelimiter) => afterDelimiter ? !_synced.IsSet : _synced.IsSet && _channel != null && _channel.HasPending;

        private bool Intercept(JsonObject message, bool afterDelimiter, int length)
        {
            if (afterDelimiter)
            {
                // Only sync replies follow the agent's 0xFF; a stale id is dropped.
                if (message["return"] is long id && id == Interlocked.Read(ref _expectedSyncId))
                {
                    _synced.Set();
                }

                return true;
            }

            // Replies to the 0xFF reset itself (a parse error) arrive while synchronising: nobody waits for them.
            return !_synced.IsSet;
        }
    }

    /// <summary>guest-info: the agent's version and which commands it has, enabled or not.</summary>
    public sealed class GuestAgentInfo
    {
        public GuestAgentInfo(string version, IReadOnlyDictionary<string, bool> supportedCommands)
        {
            Version = version;
            SupportedCommands = supportedCommands;
        }

        public string Version { get; }

        /// <summary>Command name to whether it is enabled (an agent may disable commands, e.g. with --block-rpcs).</summary>
        public IReadOnlyDictionary<string, bool> SupportedCommands { get; }

        public bool IsEnabled(string command) => SupportedCommands.TryGetValue(command, out bool enabled) && enabled;
    }

    /// <summary>guest-get-osinfo.</summary>
    public sealed class GuestOsInfo
    {
        public GuestOsInfo(string id, string name, string prettyName, string version, string kernelRelease)
        {
            Id = id;
            Name = name;
            PrettyName = prettyName;
            Version = version;
            KernelRelease = kernelRelease;
        }

        /// <summary>"mswindows" for Windows guests, else the os-release ID ("debian", ...).</summary>
        public string Id { get; }

        public string Name { get; }

        public string PrettyName { get; }

        public string Version { get; }

        public string KernelRelease { get; }

        public bool IsWindows => string.Equals(Id, "mswindows", StringComparison.OrdinalIgnoreCase);

        /// <summary>The guest in words: "Debian GNU/Linux 12 (debian)"; an agent that reports nothing (empty fields) is "the guest", never " ()".</summary>
        public string Describe()
        {
            string name = PrettyName.Trim().Length > 0 ? PrettyName.Trim() : Name.Trim();
            string id = Id.Trim();
            return name.Length == 0 ? (id.Length == 0 ? "the guest" : $"the guest ({id})") : id.Length == 0 ? name : $"{name} ({id})";
        }
    }

    /// <summary>How a program run with guest-exec ended.</summary>
    public sealed class GuestExecResult
    {
        public GuestExecResult(string path, int? exitCode, int? signal, string standardOutput, string standardError)
        {
            Path = path;
            ExitCode = exitCode;
            Signal = signal;
            StandardOutput = standardOutput;
            StandardError = standardError;
        }

        public string Path { get; }

        public int? ExitCode { get; }

        /// <summary>The signal that ended it, on a Linux guest.</summary>
        public int? Signal { get; }

        public string StandardOutput { get; }

        public string StandardError { get; }

        public bool Succeeded => ExitCode == 0 && Signal == null;
    }
}
