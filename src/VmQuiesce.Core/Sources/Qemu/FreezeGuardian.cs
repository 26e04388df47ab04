using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A small process that outlives the backup's and thaws a guest the backup may have left frozen: the
    /// backup tells it, over the guardian's standard input, which guest may be frozen (arm) and when it is
    /// thawed again (disarm); when the backup's process ends, for any reason including SIGKILL, the pipe
    /// reaches its end and the guardian thaws every guest still armed through its agent (QEMU's chardev
    /// serves one client at a time: the dead process's connection is closed by then), confirms with
    /// guest-fsfreeze-status, and notes it in the run record. A line written to a pipe is kept by the kernel
    /// even if its writer dies at once, so the freeze never waits for the guardian.
    /// <para>
    /// It is the PowerShell that runs the module, with only this assembly loaded, started once per process when
    /// the first guest is about to be frozen (in its own session, so a Ctrl+C at the terminal does not reach it),
    /// behind a shell that stands in for it until there is a guest to thaw (<see cref="Standby"/>), and closed
    /// after a minute without a frozen guest. Where the host is no PowerShell (a program that embeds the core),
    /// there is no guardian.
    /// </para>
    /// </summary>
    public sealed class FreezeGuardian
    {
        /// <summary>How long the guardian keeps trying to thaw a guest (an agent that is slow to answer the freeze, a VM under load).</summary>
        internal static readonly TimeSpan ThawPersistence = TimeSpan.FromMinutes(10);

        /// <summary>
        /// The shell script that stands in for the guardian until there is a guest to thaw (run by <see cref="Shell"/>
        /// with the guardian's command line as its arguments). It holds the pipe and keeps the ids of the runs armed
        /// (hex); only a thaw instruction, or the end of its input with a run still armed, starts the guardian, which
        /// then reads every instruction since nothing was last armed and the rest of the input. Starting the
        /// guardian's PowerShell takes about a second of CPU that a backup on a small host would otherwise share its
        /// cores with, and the guardian still thaws within a second of the backup's process ending. Input that ends
        /// with nothing armed (the backup's process ended after its thaw, or the guardian idled out) starts nothing.
        /// The instructions are this class's own lines, each a JSON object whose first member names it
        /// (<see cref="Arm"/>, <see cref="Tell"/>).
        /// </summary>
        internal const string Standby =
            "set -f\n" +
            "armed= kept= now=\n" +
            "while IFS= read -r line; do\n" +
            "  kept=\"$kept$line\n\"\n" +
            "  id=${line#*'\":\"'}; id=${id%%'\"'*}\n" +
            "  case $line in\n" +
            "    '{\"arm\":'*) armed=\"$armed $id\" ;;\n" +
            "    '{\"disarm\":'*) left=; for run in $armed; do [ \"$run\" = \"$id\" ] || left=\"$left $run\"; done; armed=$left; [ -n \"$armed\" ] || kept= ;;\n" +
            "    '{\"thaw\":'*) now=1; break ;;\n" +
            "  esac\n" +
            "done\n" +
            "[ -n \"$now$armed\" ] || exit 0\n" +
            "{ printf '%s' \"$kept\"; exec cat; } | exec \"$@\"\n";

        /// <summary>The POSIX shell that runs <see cref="Standby"/>; where there is none (Windows), the guardian itself is started at once.</summary>
        internal const string Shell = "/bin/sh";

        private static readonly TimeSpan IdleClose = TimeSpan.FromMinutes(1);
        private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(500);
        private static readonly object s_sharedGate = new object();
        private static FreezeGuardian? s_shared;

        private readonly object _gate = new object();
        private readonly (string FileName, string[] Arguments) _host;
        private readonly HashSet<string> _armed = new HashSet<string>(StringComparer.Ordinal);
        private Process? _process;
        private Timer? _idleTimer;

        internal FreezeGuardian((string FileName, string[] Arguments) host)
        {
            _host = host;
        }

        /// <summary>The process's guardian, or null when this process is no PowerShell that can start one.</summary>
        internal static FreezeGuardian? ForThisProcess()
        {
            lock (s_sharedGate)
            {
                if (s_shared == null && FindPowerShellHost() is (string, string[]) host)
                {
                    s_shared = new FreezeGuardian(host);
                }

                return s_shared;
            }
        }

        /// <summary>The command that starts this PowerShell again: pwsh or powershell.exe, or dotnet with pwsh.dll (the local tool).</summary>
        internal static (string FileName, string[] Arguments)? FindPowerShellHost()
        {
#if NET5_0_OR_GREATER
            // MainModule lists every module the process mapped (/proc/self/maps here): milliseconds before a freeze.
            string? self = Environment.ProcessPath;
#else
            string? self;
            using (Process current = Process.GetCurrentProcess())
            {
                self = current.MainModule?.FileName;
            }
#endif

            if (self == null)
            {
                return null;
            }

            string first = Environment.GetCommandLineArgs()[0];
            if (first.EndsWith("pwsh.dll", StringComparison.OrdinalIgnoreCase) && File.Exists(first))
            {
                return (self, new[] { first });
            }

            string name = Path.GetFileNameWithoutExtension(self);
            return name.Equals("pwsh", StringComparison.OrdinalIgnoreCase) || name.Equals("powershell", StringComparison.OrdinalIgnoreCase)
                ? (self, Array.Empty<string>())
                : ((string, string[])?)null;
        }

        /// <summary>
        /// Asks the guardian to thaw the run's guest should this process end before <see cref="Disarm"/>; starts the
        /// guardian when none runs. Returns false (and the caller says so) when it cannot be started or told.
        /// </summary>
        internal bool Arm(QemuRunRecord run, string agentSocket, out string? why)
        {
            lock (_gate)
            {
                _idleTimer?.Dispose();
                _idleTimer = null;
                string line = new JsonObject().With("arm", run.RunId).With("agent", agentSocket).With("record", run.Path).ToString();
                why = null;
                for (int attempt = 0; attempt < 2; attempt++)
                {
                    try
                    {
                        StartIfNotRunning();
                        _process!.StandardInput.WriteLine(line);
                        _process.StandardInput.Flush();
                        _armed.Add(run.RunId);
                        why = null;
                        return true;
                    }
                    catch (Exception e) when (e is IOException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
                    {
                        // The guardian ended under us: start another once.
                        _process?.Dispose();
                        _process = null;
                        why = e.Message;
                    }
                }

                why = $"the guardian process ({_host.FileName}) could not be started or told: {why}";
                return false;
            }
        }

        /// <summary>
        /// Starts the guardian when none runs, ahead of <see cref="Arm"/>, so that starting it is not on the way to the
        /// freeze; unarmed, it closes after a quiet minute. One that cannot be started now is started (or reported) by Arm.
        /// </summary>
        internal void StartAhead()
        {
            lock (_gate)
            {
                try
                {
                    if (!StartIfNotRunning())
                    {
                        return;
                    }
                }
                catch (Exception e) when (e is IOException || e is InvalidOperationException || e is System.ComponentModel.Win32Exception)
                {
                    return;
                }

                if (_armed.Count == 0)
                {
                    CloseWhenIdle();
                }
            }
        }

        /// <summary>Starts the guardian unless one runs (under the gate); returns whether it started one.</summary>
        private bool StartIfNotRunning()
        {
            if (_process != null && !_process.HasExited)
            {
                return false;
            }

            _process?.Dispose();
            _process = null;
            _process = Start();
            return true;
        }

        /// <summary>(Re)starts the quiet minute after which an unarmed guardian is closed (under the gate).</summary>
        private void CloseWhenIdle()
        {
            _idleTimer?.Dispose();
            _idleTimer = new Timer(_ => CloseIfIdle(), null, IdleClose, Timeout.InfiniteTimeSpan);
        }

        /// <summary>The run's guest is thawed: nothing left to guard.</summary>
        internal void Disarm(string runId) => Tell(new JsonObject().With("disarm", runId), runId);

        /// <summary>The run could not thaw its guest: the guardian keeps trying from now on (once this process lets go of the agent socket).</summary>
        internal void ThawNow(string runId) => Tell(new JsonObject().With("thaw", runId), runId);

        /// <summary>
        /// The guardian's side: reads the backup's instructions until the end of <paramref name="input"/>, then
        /// thaws every guest still armed. Returns the exit code: 0, or 1 when a guest could not be thawed.
        /// </summary>
        public static int Serve(TextReader input, TextWriter log)
        {
            var armed = new Dictionary<string, (string Agent, string Record)>(StringComparer.Ordinal);
            var thaws = new List<Thread>();
            int failures = 0;
            void ThawInBackground(string agent, string record)
            {
                var thread = new Thread(() =>
                {
                    if (!ThawLeftBehind(agent, record, log))
                    {
                        Interlocked.Increment(ref failures);
                    }
                }) { IsBackground = false, Name = "VmQuiesce guardian thaw" };
                thaws.Add(thread);
                thread.Start();
            }

            string? line;
            while ((line = ReadLine(input)) != null)
            {
                JsonObject message;
                try
                {
                    message = JsonText.ParseObject(line, new JsonLimits(4, 16));
                }
                catch (FormatException)
                {
                    continue;
                }

                if (message.GetOptionalString("arm") is string arm && message.GetOptionalString("agent") is string agent && message.GetOptionalString("record") is string record)
                {
                    armed[arm] = (agent, record);
                }
                else if (message.GetOptionalString("disarm") is string disarm)
                {
                    armed.Remove(disarm);
                }
                else if (message.GetOptionalString("thaw") is string thaw && armed.TryGetValue(thaw, out var failed))
                {
                    armed.Remove(thaw);
                    ThawInBackground(failed.Agent, failed.Record);
                }
            }

            foreach ((string agent, string record) in armed.Values)
            {
                log.WriteLine($"VmQuiesce guardian: the backup process ended while the guest at '{agent}' may be frozen: thawing it now.");
                ThawInBackground(agent, record);
            }

            thaws.ForEach(thread => thread.Join());
            return failures == 0 ? 0 : 1;
        }

        /// <summary>
        /// Connects (again and again while the dying process still holds the channel, or the agent is busy),
        /// thaws, and confirms the guest says "thawed"; then notes it in the run record.
        /// </summary>
        internal static bool ThawLeftBehind(string agentSocket, string recordPath, TextWriter log)
        {
            var clock = Stopwatch.StartNew();
            string? last = null;
            while (clock.Elapsed < ThawPersistence)
            {
                try
                {
                    using GuestAgentClient agent = GuestAgentClient.Connect(agentSocket, TimeSpan.FromSeconds(10));
                    agent.Thaw();
                    if (agent.GetFreezeStatus() == "thawed")
                    {
                        string when = DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
                        QemuRunRecord.LoadFile(recordPath)?.MarkThawed($"the VmQuiesce guardian, at {when}");
                        log.WriteLine($"VmQuiesce guardian: the guest at '{agentSocket}' is thawed ({clock.Elapsed.TotalSeconds:0.0} s after the backup process ended).");
                        return true;
                    }
                }
                catch (Exception e) when (e is VmQuiesceException || e is IOException || e is UnauthorizedAccessException)
                {
                    last = e.Message;
                }

                Thread.Sleep(RetryPause);
            }

            log.WriteLine($"VmQuiesce guardian: THE GUEST AT '{agentSocket}' MAY STILL BE FROZEN: thawing failed for {ThawPersistence.TotalMinutes:0} minutes; the last error was: {last}");
            return false;
        }

        /// <summary>A line of at most 4 KiB (the backup's own short messages); longer input is cut, never held.</summary>
        private static string? ReadLine(TextReader input)
        {
            var line = new StringBuilder();
            int next;
            while ((next = input.Read()) >= 0 && next != '\n')
            {
                if (line.Length < 4096)
                {
                    line.Append((char)next);
                }
            }

            return next < 0 && line.Length == 0 ? null : line.ToString();
        }

        private void Tell(JsonObject message, string runId)
        {
            lock (_gate)
            {
                try
                {
                    _process?.StandardInput.WriteLine(message.ToString());
                    _process?.StandardInput.Flush();
                }
                catch (Exception e) when (e is IOException || e is InvalidOperationException)
                {
                    // The guardian is gone: nothing to tell, and the next Arm starts another.
                }

                _armed.Remove(runId);
                if (_armed.Count == 0 && _process != null)
                {
                    CloseWhenIdle();
                }
            }
        }

        /// <summary>Ends the guardian after a quiet minute: closing its input is the end of input, with nothing armed.</summary>
        private void CloseIfIdle()
        {
            lock (_gate)
            {
                if (_armed.Count > 0 || _process == null)
                {
                    return;
                }

                try
                {
                    _process.StandardInput.Close();
                }
                catch (IOException)
                {
                    // Already gone.
                }

                _process.Dispose();
                _process = null;
            }
        }

        private Process Start()
        {
            string script = "$ErrorActionPreference = 'Stop'; Add-Type -Path '" + typeof(FreezeGuardian).Assembly.Location.Replace("'", "''") + "'; " +
                "exit [VmQuiesce.Core.Sources.Qemu.FreezeGuardian]::Serve([Console]::In, [Console]::Error)";
            var arguments = new List<string>(_host.Arguments) { "-NoProfile", "-NonInteractive", "-EncodedCommand", Convert.ToBase64String(Encoding.Unicode.GetBytes(script)) };
            string fileName = _host.FileName;
            if (!HostPlatform.IsWindows && File.Exists(Shell))
            {
                arguments.InsertRange(0, new[] { "-c", Standby, "vmquiesce-guardian", fileName });
                fileName = Shell;
            }

            if (HostPlatform.IsLinux && File.Exists("/usr/bin/setsid"))
            {
                // A session of its own: the terminal's Ctrl+C and hang-up go to the backup, not to its guardian.
                arguments.Insert(0, fileName);
                fileName = "/usr/bin/setsid";
            }

            // Not a ToolProcess: the guardian must outlive this process, keep its input open and write to the inherited error stream.
            var startInfo = new ProcessStartInfo(fileName, string.Join(" ", arguments.ConvertAll(ToolCommand.Quote)))
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                CreateNoWindow = true,
            };
            return Process.Start(startInfo) ?? throw new InvalidOperationException("Process.Start returned no process.");
        }
    }
}
