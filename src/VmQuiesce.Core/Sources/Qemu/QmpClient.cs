using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A client of QEMU's machine protocol (QMP) over a unix socket or TCP. Connect reads the greeting and
    /// negotiates capabilities; commands are matched to replies by id while events are queued for
    /// <see cref="WaitForEvent"/>. Thread-safe: commands may be sent from several threads.
    /// </summary>
    public sealed class QmpClient : IDisposable
    {
        public const string What = "QMP monitor";
        private const string Peer = "Qmp";
        private const int MaxQueuedEvents = 256;

        // QEMU's events are a few hundred bytes; a longer one is not kept, so the queue holds at most about 1 MiB of text.
        private const int MaxEventChars = 4096;

        private readonly object _gate = new object();
        private readonly LinkedList<QmpEvent> _events = new LinkedList<QmpEvent>();
        private readonly ManualResetEventSlim _greeted = new ManualResetEventSlim(false);
        private readonly CommandChannel _channel;
        private string? _greetedVersion;

        private QmpClient(JsonLineConnection connection, TimeSpan commandTimeout)
        {
            CommandTimeout = commandTimeout;
            // Every line is read: the greeting, replies and events (which a job wait may need later) all matter.
            _channel = new CommandChannel(connection, Peer, What, _ => true, Intercept, IsQuery);
            _channel.Closed += () =>
            {
                _greeted.Set();
                lock (_gate)
                {
                    Monitor.PulseAll(_gate);
                }
            };

            // The reader may have ended the connection before the handler above was attached (a bad greeting).
            if (_channel.IsClosed)
            {
                _greeted.Set();
            }
        }

        public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromSeconds(30);

        /// <summary>The socket path or host:port this client talks to.</summary>
        public string Address => _channel.Address;

        /// <summary>e.g. "7.2.22".</summary>
        public string QemuVersion { get; private set; } = "";

        /// <summary>The timeout of a command when the call does not give one.</summary>
        public TimeSpan CommandTimeout { get; }

        /// <summary>The QEMU process this monitor belongs to, once <see cref="QemuProcessTrust"/> verified it (null: not verified, off Linux).</summary>
        internal QemuPeer? VerifiedPeer { get; set; }

        /// <summary>Connects, waits for QEMU's greeting and sends qmp_capabilities.</summary>
        public static QmpClient Connect(string address, TimeSpan? timeout = null, CancellationToken cancel = default)
        {
            TimeSpan limit = timeout ?? DefaultTimeout;
            var client = new QmpClient(JsonLineConnection.Open(address, What, Peer, PeerLimits.Qmp, limit, cancel), limit);
            try
            {
                client.Handshake(limit, cancel);
                return client;
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        /// <summary>Runs a command and returns its "return" member (an object, array, string, number or null).</summary>
        public object? Execute(string command, JsonObject? arguments = null, TimeSpan? timeout = null, CancellationToken cancel = default) =>
            _channel.Execute(command, arguments, timeout ?? CommandTimeout, cancel);

        /// <summary>
        /// Runs the commands in one go (<see cref="CommandChannel.ExecuteAll"/>): QEMU runs a monitor's commands one after
        /// another and answers each in order. A command QEMU refuses is answered with its error.
        /// </summary>
        public IReadOnlyList<CommandAnswer> ExecuteAll(IReadOnlyList<QemuCommand> commands, CancellationToken cancel = default) =>
            _channel.ExecuteAll(commands, CommandTimeout, cancel);

        /// <summary>
        /// Asks the queries now, so that QEMU answers them while the caller does other work; a later command naming one
        /// (same arguments) takes its answer, once (see <see cref="CommandChannel.AskAhead"/>). A command that changes
        /// something drops the answers not taken yet.
        /// </summary>
        public void AskAhead(IEnumerable<QemuCommand> queries, CancellationToken cancel = default) => _channel.AskAhead(queries, CommandTimeout, cancel);

        /// <summary>QMP's queries (query-*, by QEMU's convention, and QOM reads) change nothing.</summary>
        internal static bool IsQuery(string command) =>
            command.StartsWith("query-", StringComparison.Ordinal) || command == "qom-get" || command == "qom-list";

        /// <summary><paramref name="answer"/> to <paramref name="command"/> as an object; QEMU's error is thrown.</summary>
        public JsonObject AnswerObject(string command, CommandAnswer answer) => answer.Result as JsonObject ?? throw _channel.WrongAnswer(command, "an object");

        /// <summary><paramref name="answer"/> to <paramref name="command"/> as an array; QEMU's error is thrown.</summary>
        public JsonArray AnswerArray(string command, CommandAnswer answer) => answer.Result as JsonArray ?? throw _channel.WrongAnswer(command, "an array");

        /// <summary>Runs a command whose reply is an object.</summary>
        public JsonObject ExecuteObject(string command, JsonObject? arguments = null, TimeSpan? timeout = null, CancellationToken cancel = default) =>
            Execute(command, arguments, timeout, cancel) as JsonObject ?? throw _channel.WrongAnswer(command, "an object");

        /// <summary>Runs a command whose reply is an array.</summary>
        public JsonArray ExecuteArray(string command, JsonObject? arguments = null, TimeSpan? timeout = null, CancellationToken cancel = default) =>
            Execute(command, arguments, timeout, cancel) as JsonArray ?? throw _channel.WrongAnswer(command, "an array");

        /// <summary>Runs a command whose reply is an array.</summary>
        public JsonArray ExecuteArray(QemuCommand command, CancellationToken cancel) => ExecuteArray(command.Name, command.Arguments, cancel: cancel);

        /// <summary>
        /// Takes the first queued event named <paramref name="name"/> that matches <paramref name="predicate"/>
        /// (events that arrived before the call count), waiting up to <paramref name="timeout"/> for one.
        /// </summary>
        public QmpEvent WaitForEvent(string name, Func<JsonObject, bool>? predicate, TimeSpan timeout, CancellationToken cancel = default)
        {
            return TryWaitForEvent(name, predicate, timeout, cancel) ?? throw new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                $"The {What} at '{Address}' sent no {name} event within {timeout.TotalSeconds:0.###} s.", Address);
        }

        /// <summary>Like <see cref="WaitForEvent"/>, but returns null at the timeout.</summary>
        public QmpEvent? TryWaitForEvent(string name, Func<JsonObject, bool>? predicate, TimeSpan timeout, CancellationToken cancel = default)
        {
            var clock = Stopwatch.StartNew();
            lock (_gate)
            {
                while (true)
                {
                    for (LinkedListNode<QmpEvent>? node = _events.First; node != null; node = node.Next)
                    {
                        if (node.Value.Name == name && (predicate == null || predicate(node.Value.Data)))
                        {
                            _events.Remove(node);
                            return node.Value;
                        }
                    }

                    cancel.ThrowIfCancellationRequested();
                    if (_channel.IsClosed)
                    {
                        throw _channel.ClosedError("waiting for the " + name + " event");
                    }

                    TimeSpan left = timeout - clock.Elapsed;
                    if (timeout != Timeout.InfiniteTimeSpan && left <= TimeSpan.Zero)
                    {
                        return null;
                    }

                    // Short waits so cancellation is seen promptly; events pulse the monitor.
                    Monitor.Wait(_gate, timeout == Timeout.InfiniteTimeSpan ? 100 : (int)Math.Min(100, Math.Max(1, left.TotalMilliseconds)));
                }
            }
        }

        /// <summary>The process serving this socket, when this host can tell (see <see cref="QemuProcessTrust"/>).</summary>
        internal int? FindPeerProcess() => _channel.FindPeerProcess();

        public void Dispose() => _channel.Dispose();

        private void Handshake(TimeSpan timeout, CancellationToken cancel)
        {
            if (!_greeted.Wait(CommandChannel.ToMilliseconds(timeout), cancel))
            {
                throw new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                    $"The {What} at '{Address}' sent no greeting within {timeout.TotalSeconds:0.#} s. QEMU serves one QMP client at a time: is another client (libvirt, a script) connected?",
                    Address);
            }

            if (_greetedVersion == null)
            {
                throw _channel.ClosedError("the greeting");
            }

            QemuVersion = _greetedVersion;

            Execute("qmp_capabilities", null, timeout, cancel);
        }

        private bool Intercept(JsonObject message, bool afterDelimiter, int length)
        {
            if (message.Contains("QMP"))
            {
                JsonObject? version = message.GetObject("QMP").GetOptionalObject("version")?.GetOptionalObject("qemu");
                _greetedVersion = version == null ? "" : $"{version.GetOptionalInt64("major")}.{version.GetOptionalInt64("minor")}.{version.GetOptionalInt64("micro")}";
                _greeted.Set();
                return true;
            }

            if (message.Contains("event"))
            {
                string name = message.GetString("event");
                var queued = new QmpEvent(name, message.GetOptionalObject("data") ?? new JsonObject(), message.GetOptionalObject("timestamp"));
                if (length > MaxEventChars)
                {
                    return true;
                }

                lock (_gate)
                {
                    if (_events.Count >= MaxQueuedEvents)
                    {
                        _events.RemoveFirst();
                    }

                    _events.AddLast(queued);
                    Monitor.PulseAll(_gate);
                }

                return true;
            }

            return false;
        }
    }

    /// <summary>An asynchronous QMP event, e.g. BLOCK_JOB_READY or JOB_STATUS_CHANGE.</summary>
    public sealed class QmpEvent
    {
        internal QmpEvent(string name, JsonObject data, JsonObject? timestamp)
        {
            Name = name;
            Data = data;
            if (timestamp != null && timestamp["seconds"] is long seconds && seconds >= 0 && seconds < 253402300800L && timestamp["microseconds"] is long micro && micro >= 0 && micro < 1_000_000)
            {
                Timestamp = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micro * 10);
            }
        }

        public string Name { get; }

        public JsonObject Data { get; }

        /// <summary>When QEMU emitted it, when QEMU said so.</summary>
        public DateTimeOffset? Timestamp { get; }

        public override string ToString() => $"{Name} {Data}";
    }
}
