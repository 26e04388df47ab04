using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Json;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// Behaves like qemu-ga on the host side of its channel: answers the 0xFF reset with a parse error,
    /// guest-sync-delimited with 0xFF + id, and the freeze, info and exec commands, with knobs for failures.
    /// </summary>
    public sealed class FakeGuestAgent : FakeSocketServer
    {
        private int _frozenCount;

        public FakeGuestAgent(string? path)
            : base(path)
        {
        }

        /// <summary>When false the agent reads everything and answers nothing (not running, or hung).</summary>
        public volatile bool Answers = true;

        /// <summary>When set, sync requests are answered only after this many have been received (a booting guest).</summary>
        public int SyncsToIgnore { get; set; }

        public string OsId { get; set; } = "debian";

        public bool FreezeEnabled { get; set; } = true;

        public string[] MountPoints { get; set; } = { "/", "/mnt/data" };

        /// <summary>Runs inside guest-fsfreeze-freeze before it answers (e.g. block to simulate a slow freeze).</summary>
        public Action? OnFreeze { get; set; }

        /// <summary>Runs for guest-exec: given path and args, returns (exit code, stdout).</summary>
        public Func<string, IReadOnlyList<string>, (int ExitCode, string Output)> OnExec { get; set; } = (_, _) => (0, "");

        public int ThawFailuresLeft { get; set; }

        /// <summary>Answers a command instead of the model: return true when handled.</summary>
        public Func<string, JsonObject, FakeGuestAgent, bool>? Override { get; set; }

        public void Answer(JsonObject request, object? value) => Reply(request, value);

        public void AnswerError(JsonObject request, string errorClass, string description) => ReplyError(request, errorClass, description);

        public bool IsFrozen => Volatile.Read(ref _frozenCount) > 0;

        public ManualResetEventSlim Thawed { get; } = new ManualResetEventSlim(false);

        public List<string> ExecLog { get; } = new List<string>();

        private readonly Dictionary<long, (int ExitCode, string Output)> _execs = new Dictionary<long, (int, string)>();

        protected override void OnConnected()
        {
        }

        protected override void OnLine(string line, bool afterReset)
        {
            if (!Answers)
            {
                return;
            }

            if (line == "\uFFFD")
            {
                Send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\ufffd'\"}}");
                return;
            }

            JsonObject request;
            try
            {
                request = JsonText.ParseObject(line);
            }
            catch (FormatException)
            {
                Send("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}");
                return;
            }

            string command = request.GetString("execute");
            Record(command);
            JsonObject args = request.GetOptionalObject("arguments") ?? new JsonObject();
            if (Override != null && Override(command, request, this))
            {
                return;
            }

            switch (command)
            {
                case "guest-sync-delimited":
                    if (SyncsToIgnore > 0)
                    {
                        SyncsToIgnore--;
                        return;
                    }

                    Send(new JsonObject().With("return", args["id"]).ToString(), withDelimiter: true);
                    break;
                case "guest-ping":
                    Reply(request, new JsonObject());
                    break;
                case "guest-info":
                    var commands = new JsonArray();
                    foreach (string name in new[] { "guest-ping", "guest-get-osinfo", "guest-get-fsinfo", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-fsfreeze-status", "guest-exec" })
                    {
                        // Like qemu-ga 7.2: while frozen, every command but status and thaw is reported disabled.
                        bool enabled = (FreezeEnabled || !name.StartsWith("guest-fsfreeze", StringComparison.Ordinal))
                            && (!IsFrozen || name == "guest-fsfreeze-status" || name == "guest-fsfreeze-thaw" || name == "guest-ping");
                        commands.Add(new JsonObject().With("name", name).With("enabled", enabled).With("success-response", true));
                    }

                    Reply(request, new JsonObject().With("version", "7.2.22").With("supported_commands", commands));
                    break;
                case "guest-get-osinfo":
                    Reply(request, new JsonObject().With("id", OsId).With("name", OsId == "mswindows" ? "Microsoft Windows" : "Debian GNU/Linux").With("kernel-release", "6.1.0"));
                    break;
                case "guest-get-fsinfo":
                    var fs = new JsonArray();
                    foreach (string mount in MountPoints)
                    {
                        fs.Add(new JsonObject().With("name", "vda").With("mountpoint", mount).With("type", "ext4"));
                    }

                    Reply(request, fs);
                    break;
                case "guest-fsfreeze-freeze":
                    OnFreeze?.Invoke();
                    Volatile.Write(ref _frozenCount, MountPoints.Length);
                    Reply(request, (long)MountPoints.Length);
                    break;
                case "guest-fsfreeze-status":
                    Reply(request, IsFrozen ? "frozen" : "thawed");
                    break;
                case "guest-fsfreeze-thaw":
                    if (ThawFailuresLeft > 0)
                    {
                        ThawFailuresLeft--;
                        ReplyError(request, "GenericError", "failed to thaw: Device or resource busy");
                        return;
                    }

                    Reply(request, (long)Interlocked.Exchange(ref _frozenCount, 0));
                    Thawed.Set();
                    break;
                case "guest-exec":
                    if (IsFrozen)
                    {
                        ReplyError(request, "CommandNotFound", "Command guest-exec has been disabled: the agent is in frozen state");
                        return;
                    }

                    var argv = new List<string>();
                    foreach (object? a in args.GetOptionalArray("arg") ?? new JsonArray())
                    {
                        argv.Add((string)a!);
                    }

                    lock (ExecLog)
                    {
                        ExecLog.Add(args.GetString("path") + " " + string.Join(" ", argv));
                    }

                    long pid = 100 + _execs.Count;
                    _execs[pid] = OnExec(args.GetString("path"), argv);
                    Reply(request, new JsonObject().With("pid", pid));
                    break;
                case "guest-exec-status":
                    (int exitCode, string output) = _execs[args.GetInt64("pid")];
                    Reply(request, new JsonObject().With("exitcode", (long)exitCode).With("exited", true)
                        .With("out-data", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(output))));
                    break;
                default:
                    ReplyError(request, "CommandNotFound", $"The command {command} has not been found");
                    break;
            }
        }
    }
}
