using System;
using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// Request/reply over a <see cref="JsonLineConnection"/>, shared by the QMP and guest-agent clients:
    /// each request carries an "id", replies are matched on it (a reply without one goes to the oldest
    /// request), replies nobody waits for any more are dropped, and every call has a timeout. A message
    /// that is not valid JSON, breaks the parse budget or has the wrong shape fails the connection: every
    /// call then ends with that <see cref="ProtocolViolation"/>.
    /// </summary>
    internal sealed class CommandChannel : IDisposable
    {
        private const int QuotedLineChars = 120;

        private readonly JsonLineConnection _connection;
        private readonly Func<JsonObject, bool, int, bool> _intercept;
        private readonly Func<string, bool> _isQuery;
        private readonly object _gate = new object();
        private readonly List<Pending> _pending = new List<Pending>();

        /// <summary>Queries sent by <see cref="AskAhead"/> whose answers no <see cref="Send"/> took yet, by command and arguments.</summary>
        private readonly Dictionary<string, Pending> _askedAhead = new Dictionary<string, Pending>(StringComparer.Ordinal);

        /// <summary>Commands sent that are not queries: a query asked ahead while one left is not kept.</summary>
        private long _changesSent;
        private long _nextId;
        private Exception? _closedBy;
        private bool _closed;

        /// <param name="peer">First part of every error id: "Qmp" or "GuestAgent".</param>
        /// <param name="what">How messages name the peer: "QMP monitor", "guest agent".</param>
        /// <param name="wantsLine">Asked when a line starts, with whether a 0xFF came before it: false drops it unparsed.</param>
        /// <param name="intercept">
        /// Sees each message first, with whether a 0xFF came before it and its length in characters (events,
        /// greetings, sync replies); true means consumed. A <see cref="JsonFormatException"/> it throws is a protocol violation.
        /// </param>
        /// <param name="isQuery">Whether a command only reads (changes nothing), so it may be asked ahead (<see cref="AskAhead"/>).</param>
        public CommandChannel(JsonLineConnection connection, string peer, string what, Func<bool, bool> wantsLine, Func<JsonObject, bool, int, bool> intercept, Func<string, bool> isQuery)
        {
            _connection = connection;
            Peer = peer;
            What = what;
            _intercept = intercept;
            _isQuery = isQuery;
            _connection.Start(wantsLine, OnLine, OnClosed);
        }

        public string Address => _connection.Address;

        public string Peer { get; }

        public string What { get; }

        /// <summary>Raised (on the reader thread) once the peer closes the connection.</summary>
        public event Action? Closed;

        public bool IsClosed
        {
            get
            {
                lock (_gate)
                {
                    return _closed;
                }
            }
        }

        /// <summary>Whether a call waits for its reply right now.</summary>
        public bool HasPending
        {
            get
            {
                lock (_gate)
                {
                    return _pending.Count > 0;
                }
            }
        }

        /// <summary>
        /// Sends a command and returns its "return" value; QEMU's errors become <see cref="QemuCommandException"/>.
        /// Nothing is sent once <paramref name="cancel"/> is cancelled, or when <paramref name="beforeSend"/>, called
        /// right before the command leaves, throws.
        /// </summary>
        public object? Execute(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancel, Action? beforeSend = null) =>
            Await(Send(command, arguments, timeout, cancel, beforeSend), timeout, cancel);

        /// <summary>
        /// Sends every command before awaiting the first answer (the peer answers in order), so the channel's latency is
        /// paid once, not once per command. Each answer is the command's "return" member or the
        /// <see cref="QemuCommandException"/> the peer answered with; a timeout (<paramref name="timeout"/> for each answer)
        /// or a broken connection throws, and the replies still to come are dropped.
        /// </summary>
        public IReadOnlyList<CommandAnswer> ExecuteAll(IReadOnlyList<QemuCommand> commands, TimeSpan timeout, CancellationToken cancel)
        {
            var sent = new List<Pending>();
            try
            {
                foreach (QemuCommand command in commands)
                {
                    sent.Add(Send(command.Name, command.Arguments, timeout, cancel));
                }

                var answers = new List<CommandAnswer>();
                foreach (Pending pending in sent)
                {
                    try
                    {
                        answers.Add(new CommandAnswer(Await(pending, timeout, cancel), null));
                    }
                    catch (QemuCommandException refused)
                    {
                        answers.Add(new CommandAnswer(null, refused));
                    }
                }

                return answers;
            }
            catch
            {
                sent.ForEach(Forget);
                throw;
            }
        }

        /// <summary>
        /// Sends queries now whose answers later steps need, so that the peer answers them while the caller does other
        /// work: a later <see cref="Send"/> of the same command with the same arguments takes the answer instead of asking
        /// again (once). Any command that is not a query drops every answer not taken yet (it is dropped when it comes), so
        /// no answer taken is older than a change this client asked for. A query already asked ahead is not asked twice.
        /// </summary>
        public void AskAhead(IEnumerable<QemuCommand> queries, TimeSpan timeout, CancellationToken cancel)
        {
            foreach (QemuCommand query in queries)
            {
                if (!_isQuery(query.Name))
                {
                    throw new ArgumentException($"'{query.Name}' changes what it acts on; only queries are asked ahead.", nameof(queries));
                }

                string key = AskedKey(query.Name, query.Arguments);
                long changes;
                lock (_gate)
                {
                    if (_askedAhead.ContainsKey(key))
                    {
                        continue;
                    }

                    changes = _changesSent;
                }

                Pending pending = SendNow(query.Name, query.Arguments, timeout, cancel, null);
                lock (_gate)
                {
                    // A change another thread sent meanwhile may have left after this query: its answer could predate it.
                    if (!_askedAhead.ContainsKey(key) && changes == _changesSent)
                    {
                        _askedAhead.Add(key, pending);
                        continue;
                    }
                }

                Forget(pending);
            }
        }

        /// <summary>
        /// Sends a command without waiting for its reply: <see cref="Await"/> takes it, or <see cref="Forget"/> drops it.
        /// Nothing is sent once <paramref name="cancel"/> is cancelled, or when <paramref name="beforeSend"/> throws. A
        /// query asked ahead (<see cref="AskAhead"/>) is not sent again: its answer is taken.
        /// </summary>
        public Pending Send(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancel, Action? beforeSend = null)
        {
            if (!_isQuery(command))
            {
                try
                {
                    return SendNow(command, arguments, timeout, cancel, beforeSend);
                }
                finally
                {
                    // Once it has left (or failed to), what was asked ahead may predate what it changes.
                    DropAskedAhead(countChange: true);
                }
            }

            // A query takes its own answer, unless something must run right before it leaves.
            Pending? asked = beforeSend == null ? TakeAskedAhead(command, arguments) : null;
            if (asked == null)
            {
                return SendNow(command, arguments, timeout, cancel, beforeSend);
            }

            if (cancel.IsCancellationRequested)
            {
                Forget(asked);
                cancel.ThrowIfCancellationRequested();
            }

            return asked;
        }

        private static string AskedKey(string command, JsonObject? arguments) => command + " " + (arguments?.ToString() ?? "");

        /// <summary>The answer of this very query asked ahead, if any.</summary>
        private Pending? TakeAskedAhead(string command, JsonObject? arguments)
        {
            string key = AskedKey(command, arguments);
            lock (_gate)
            {
                if (_askedAhead.TryGetValue(key, out Pending? asked))
                {
                    _askedAhead.Remove(key);
                    return asked;
                }
            }

            return null;
        }

        /// <summary>Drops every answer asked ahead and not taken (after a change was sent: <paramref name="countChange"/>).</summary>
        private void DropAskedAhead(bool countChange)
        {
            List<Pending> dropped;
            lock (_gate)
            {
                _changesSent += countChange ? 1 : 0;
                if (_askedAhead.Count == 0)
                {
                    // Most commands: nothing was asked ahead (the agent's channel never asks any).
                    return;
                }

                dropped = new List<Pending>(_askedAhead.Values);
                _askedAhead.Clear();
            }

            dropped.ForEach(Forget);
        }

        private Pending SendNow(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancel, Action? beforeSend)
        {
            var request = new JsonObject().With("execute", command);
            if (arguments != null)
            {
                request["arguments"] = arguments;
            }

            var pending = new Pending(Interlocked.Increment(ref _nextId), command);
            request["id"] = pending.Id;
            lock (_gate)
            {
                ThrowIfClosed(command);
                _pending.Add(pending);
            }

            try
            {
                cancel.ThrowIfCancellationRequested();
                beforeSend?.Invoke();
                bool sent;
                try
                {
                    sent = _connection.Send(request.ToString(), withDelimiter: false, timeout);
                }
                catch (Exception e) when (e is System.Net.Sockets.SocketException || e is ObjectDisposedException)
                {
                    throw ConnectionClosed(command, e);
                }

                if (!sent)
                {
                    throw NotRead(command, timeout);
                }

                return pending;
            }
            catch
            {
                Forget(pending);
                throw;
            }
        }

        /// <summary>Waits for the reply to a sent command and returns its "return" value; QEMU's errors become <see cref="QemuCommandException"/>.</summary>
        public object? Await(Pending pending, TimeSpan timeout, CancellationToken cancel)
        {
            try
            {
                if (!pending.Done.Wait(ToMilliseconds(timeout), cancel))
                {
                    throw Timeout(pending.Command, timeout);
                }
            }
            finally
            {
                Forget(pending);
            }

            JsonObject reply = pending.Reply ?? throw ClosedError(pending.Command);
            if (reply["error"] is JsonObject error)
            {
                throw QemuCommandException.From(Peer, What, Address, pending.Command,
                    error.GetOptionalString("class") ?? "UnknownError", error.GetOptionalString("desc") ?? error.ToString());
            }

            return reply["return"];
        }

        /// <summary>Stops waiting for a command's reply: when it comes, it is dropped.</summary>
        public void Forget(Pending pending)
        {
            lock (_gate)
            {
                _pending.Remove(pending);
            }

            pending.Done.Dispose();
        }

        /// <summary>Sends a message whose reply the caller matches itself (the agent's sync).</summary>
        public void SendRaw(string json, bool withDelimiter, string command, TimeSpan timeout)
        {
            lock (_gate)
            {
                ThrowIfClosed(command);
            }

            bool sent;
            try
            {
                sent = _connection.Send(json, withDelimiter, timeout);
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException || e is ObjectDisposedException)
            {
                throw ConnectionClosed(command, e);
            }

            if (!sent)
            {
                throw NotRead(command, timeout);
            }
        }

        /// <summary>The peer stopped reading: for the agent's channel, nothing in the guest has it open.</summary>
        public VmQuiesceException NotRead(string command, TimeSpan timeout) =>
            new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                $"The {What} at '{Address}' did not take '{command}' within {timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s: nothing reads the other end of the socket.", Address);

        /// <summary>The peer answered <paramref name="command"/>, but not with <paramref name="expected"/> (e.g. "an object").</summary>
        public VmQuiesceException WrongAnswer(string command, string expected) =>
            new VmQuiesceException(Peer + "ProtocolError", FailureKind.ProtocolError,
                $"The {What} at '{Address}' answered '{command}' with something other than {expected}.", Address);

        public VmQuiesceException Timeout(string command, TimeSpan timeout) =>
            new VmQuiesceException(Peer + "Timeout", FailureKind.OperationTimeout,
                $"The {What} at '{Address}' did not answer '{command}' within {timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s.", Address);

        /// <summary>
        /// Why <paramref name="command"/> got no answer once the connection is gone: the protocol violation
        /// that ended it, or the peer closing it.
        /// </summary>
        public VmQuiesceException ClosedError(string command)
        {
            Exception? cause;
            lock (_gate)
            {
                cause = _closedBy;
            }

            return cause is VmQuiesceException violation && violation.Kind == FailureKind.ProtocolError
                ? new VmQuiesceException(violation.ErrorId, violation.Kind, violation.Message + $" '{command}' got no answer.", Address, violation)
                : ConnectionClosed(command, cause);
        }

        public VmQuiesceException ConnectionClosed(string command, Exception? cause) =>
            new VmQuiesceException(Peer + "ConnectionClosed", FailureKind.ConnectionError,
                $"The {What} at '{Address}' closed the connection before answering '{command}' (did the VM stop?)" +
                (cause == null ? "." : $": {cause.Message}"), Address, cause);

        /// <summary>A message that breaks the protocol: names the peer, why, and how the line began (control characters escaped).</summary>
        public VmQuiesceException ProtocolViolation(string why, string line) =>
            new VmQuiesceException(Peer + "ProtocolError", FailureKind.ProtocolError,
                $"The {What} at '{Address}' sent a message that breaks its protocol ({GuestText.Escape(why)}), so VmQuiesce closed the connection. " +
                $"The message began: {GuestText.Quote(line.Length > QuotedLineChars ? line.Substring(0, QuotedLineChars) + "..." : line)}.", Address);

        public int? FindPeerProcess() => _connection.FindPeerProcess();

        public void Dispose()
        {
            DropAskedAhead(countChange: false);
            _connection.Dispose();
        }

        internal static int ToMilliseconds(TimeSpan timeout) =>
            timeout == System.Threading.Timeout.InfiniteTimeSpan ? -1 : (int)Math.Max(0, Math.Min(int.MaxValue, timeout.TotalMilliseconds));

        private void ThrowIfClosed(string command)
        {
            if (_closed)
            {
                throw ClosedError(command);
            }
        }

        /// <summary>Runs on the reader thread; what it throws fails the connection (see <see cref="JsonLineConnection"/>).</summary>
        private void OnLine(string text, bool afterDelimiter)
        {
            JsonObject message;
            try
            {
                message = JsonText.ParseObject(text, _connection.Limits.Json);
                if (_intercept(message, afterDelimiter, text.Length))
                {
                    return;
                }

                CheckReplyShape(message);
            }
            catch (JsonFormatException e)
            {
                throw ProtocolViolation(e.Message, text);
            }

            if (!(message.Contains("return") || message.Contains("error")))
            {
                return;
            }

            lock (_gate)
            {
                Pending? target = null;
                if (message["id"] is long id)
                {
                    target = _pending.Find(p => p.Id == id);
                }
                else if (_pending.Count > 0)
                {
                    target = _pending[0];
                }

                if (target != null)
                {
                    _pending.Remove(target);
                    target.Reply = message;
                    target.Done.Set();
                }
            }
        }

        /// <summary>An error reply must be an object whose class and description are strings.</summary>
        private static void CheckReplyShape(JsonObject message)
        {
            if (message.Contains("error"))
            {
                JsonObject error = message.GetObject("error");
                error.GetOptionalString("class");
                error.GetOptionalString("desc");
            }
        }

        private void OnClosed(Exception? cause)
        {
            lock (_gate)
            {
                _closed = true;
                _closedBy = cause;
                foreach (Pending pending in _pending)
                {
                    pending.Done.Set();
                }

                _pending.Clear();
            }

            Closed?.Invoke();
        }

        /// <summary>A command sent whose reply is awaited.</summary>
        internal sealed class Pending
        {
            public Pending(long id, string command)
            {
                Id = id;
                Command = command;
            }

            public long Id { get; }

            public string Command { get; }

            public ManualResetEventSlim Done { get; } = new ManualResetEventSlim(false);

            public JsonObject? Reply { get; set; }
        }
    }

    /// <summary>A command and its arguments, for <see cref="CommandChannel.ExecuteAll"/>.</summary>
    public sealed class QemuCommand
    {
        public QemuCommand(string name, JsonObject? arguments = null)
        {
            Name = name;
            Arguments = arguments;
        }

        public string Name { get; }

        public JsonObject? Arguments { get; }
    }

    /// <summary>One answer of a batch of commands: the command's "return" member, or the error the peer answered with.</summary>
    public sealed class CommandAnswer
    {
        public CommandAnswer(object? value, QemuCommandException? error)
        {
            Value = value;
            Error = error;
        }

        public object? Value { get; }

        public QemuCommandException? Error { get; }

        /// <summary>The "return" member; the peer's error is thrown.</summary>
        public object? Result => Error == null ? Value : throw Error;
    }
}
