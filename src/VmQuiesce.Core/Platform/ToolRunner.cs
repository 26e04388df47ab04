using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Platform
{
    /// <summary>What an external tool printed and how it ended.</summary>
    public sealed class ToolResult
    {
        private const int MessageLimit = 4000;

        public ToolResult(string commandLine, int exitCode, string standardOutput, string standardError)
        {
            CommandLine = commandLine;
            ExitCode = exitCode;
            StandardOutput = standardOutput;
            StandardError = standardError;
        }

        /// <summary>The command as a user could type it, secrets masked.</summary>
        public string CommandLine { get; }

        public int ExitCode { get; }

        public string StandardOutput { get; }

        public string StandardError { get; }

        /// <summary>Standard error, or standard output when the tool wrote nothing there: the text an error message quotes (its start, when long).</summary>
        public string Message
        {
            get
            {
                string text = (StandardError.Trim().Length > 0 ? StandardError : StandardOutput).Trim();
                return text.Length <= MessageLimit ? text : text.Substring(0, MessageLimit) + " [...]";
            }
        }
    }

    /// <summary>
    /// One run of a host program, described before it starts: an absolute program path (see <see cref="HostTools"/>),
    /// arguments passed one by one (never through a shell), a deadline, how much output to keep, and how failures
    /// are named. A secret argument stays a placeholder until the moment the process starts.
    /// </summary>
    internal sealed class ToolCommand
    {
        /// <summary>What a secret argument shows as in every text that may be displayed or logged.</summary>
        public const string Mask = "********";

        /// <param name="program">The program's absolute path.</param>
        /// <param name="arguments">The arguments; null marks the place of <see cref="Secret"/>.</param>
        public ToolCommand(string program, IEnumerable<string?> arguments)
        {
            if (!HostTools.IsAbsolute(program))
            {
                throw new ArgumentException($"'{program}' is not an absolute path: programs are found with HostTools, never by bare name.", nameof(program));
            }

            Program = program;
            Arguments = arguments.ToList();
        }

        /// <summary>A host program by name (qemu-img, e2fsck, systemctl), found in the system directories or its explicit setting.</summary>
        public static ToolCommand For(string tool, IEnumerable<string> arguments) => new ToolCommand(HostTools.ForThisHost.Find(tool), arguments);

        public string Program { get; }

        public IReadOnlyList<string?> Arguments { get; }

        /// <summary>The value of the null argument; revealed only into the starting process's argument list.</summary>
        public SecureString? Secret { get; init; }

        public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(30);

        /// <summary>Characters kept of each of standard output and standard error; the rest is read and dropped.</summary>
        public int OutputLimit { get; init; } = 4 << 20;

        /// <summary>The target object of errors; the program's path when null.</summary>
        public object? Target { get; init; }

        /// <summary>How messages name this call ("vmrun list for '(host)'"); the quoted command line when null.</summary>
        public string? Description { get; init; }

        public string StartFailureId { get; init; } = "ToolNotFound";

        public string? StartFailureRemedy { get; init; }

        public string TimeoutId { get; init; } = "ToolTimedOut";

        public string? TimeoutRemedy { get; init; }

        /// <summary>The command as a user could type it, the secret masked: for messages and verbose output.</summary>
        public string CommandLine => string.Join(" ", new[] { Program }.Concat(Arguments.Select(argument => argument ?? Mask)).Select(Quote));

        internal string Name => Description ?? $"'{CommandLine}'";

        /// <summary>The secret as a string: only for the starting process's arguments and for redacting echoes of it.</summary>
        internal static string Reveal(SecureString secret)
        {
            IntPtr native = Marshal.SecureStringToGlobalAllocUnicode(secret);
            try
            {
                return Marshal.PtrToStringUni(native) ?? string.Empty;
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(native);
            }
        }

        /// <summary>
        /// Quotes one argument so that both the MSVC runtime (Windows programs) and .NET's own parser (Linux and
        /// macOS) read it back unchanged: wrapped in quotes when it is empty or holds a space, tab, newline or quote;
        /// a run of backslashes is doubled when a quote follows it (inside or at the closing quote), and a quote becomes \".
        /// </summary>
        public static string Quote(string argument)
        {
            if (argument.Length > 0 && argument.IndexOfAny(new[] { ' ', '\t', '\n', '\v', '"' }) < 0)
            {
                return argument;
            }

            var quoted = new StringBuilder(argument.Length + 2).Append('"');
            int backslashes = 0;
            foreach (char c in argument)
            {
                if (c == '\\')
                {
                    backslashes++;
                    continue;
                }

                quoted.Append('\\', c == '"' ? (backslashes * 2) + 1 : backslashes);
                backslashes = 0;
                quoted.Append(c);
            }

            return quoted.Append('\\', backslashes * 2).Append('"').ToString();
        }
    }

    /// <summary>
    /// The one place VmQuiesce starts programs: standard input closed, output captured up to a limit on its own
    /// threads (a chatty program never blocks on a full pipe), the working folder a system folder (so neither a
    /// Windows DLL nor a relative path is looked up in the caller's folder), a deadline, and cancellation that
    /// stops the program and everything it started.
    /// </summary>
    internal sealed class ToolProcess : IDisposable
    {
        private static readonly PropertyInfo? ArgumentListProperty = typeof(ProcessStartInfo).GetProperty("ArgumentList");

        // .NET Core 3+ kills a process tree itself; .NET Framework (Windows PowerShell 5.1) needs taskkill /T.
        private static readonly MethodInfo? KillTreeMethod = typeof(Process).GetMethod("Kill", new[] { typeof(bool) });

        /// <summary>The least time a program that exited gets to close its output (children may still hold it).</summary>
        private static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(5);

        private readonly Process _process;
        private readonly ManualResetEvent _exited;
        private readonly Task<string> _output;
        private readonly Task<string> _error;

        private ToolProcess(ToolCommand command, Process process, ManualResetEvent exited)
        {
            Command = command;
            _process = process;
            _exited = exited;
            _output = Capture(process.StandardOutput, command.OutputLimit);
            _error = Capture(process.StandardError, command.OutputLimit);
        }

        public ToolCommand Command { get; }

        public int Id => _process.Id;

        public bool HasExited => _exited.WaitOne(0);

        public int ExitCode => _process.ExitCode;

        /// <summary>Runs <paramref name="command"/> to its end: its result whatever the exit code; throws when it overruns its deadline or is cancelled.</summary>
        public static ToolResult Run(ToolCommand command, CancellationToken cancel)
        {
            cancel.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            using ToolProcess process = Start(command);
            if (!process.WaitForExit(command.Timeout, cancel))
            {
                process.Kill();
                throw process.TimedOut($"did not finish within {command.Timeout.TotalSeconds:0.#} s; it and every process it started were stopped");
            }

            TimeSpan left = command.Timeout - clock.Elapsed;
            return process.Result(left > OutputGrace ? left : OutputGrace);
        }

        public static ToolProcess Start(ToolCommand command)
        {
            var start = new ProcessStartInfo(command.Program)
            {
                UseShellExecute = false,
                CreateNoWindow = true,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                StandardOutputEncoding = Encoding.UTF8,
                StandardErrorEncoding = Encoding.UTF8,
                WorkingDirectory = HostPlatform.IsWindows ? Environment.SystemDirectory : "/",
            };
            var exited = new ManualResetEvent(false);
            var process = new Process { StartInfo = start, EnableRaisingEvents = true };
            process.Exited += (_, _) =>
            {
                try
                {
                    exited.Set();
                }
                catch (ObjectDisposedException)
                {
                    // The caller already gave up on the process and released the handle.
                }
            };
            var argumentList = ArgumentListProperty?.GetValue(start) as Collection<string>;
            try
            {
                string? secret = command.Secret == null ? null : ToolCommand.Reveal(command.Secret);
                IEnumerable<string> arguments = command.Arguments.Select(argument => argument ?? secret ?? string.Empty);
                if (argumentList != null)
                {
                    foreach (string argument in arguments)
                    {
                        argumentList.Add(argument);
                    }
                }
                else
                {
                    start.Arguments = string.Join(" ", arguments.Select(ToolCommand.Quote));
                }

                process.Start();
            }
            catch (Exception e) when (e is Win32Exception || e is InvalidOperationException)
            {
                process.Dispose();
                exited.Dispose();
                throw new VmQuiesceException(command.StartFailureId, FailureKind.ResourceUnavailable,
                    $"{command.Name} could not be started: {e.Message}.", command.Target ?? command.Program, e)
                {
                    Remedy = command.StartFailureRemedy,
                };
            }
            finally
            {
                // The only copy of a secret outside its SecureString lived in these arguments.
                argumentList?.Clear();
                start.Arguments = string.Empty;
            }

            process.StandardInput.Close();
            return new ToolProcess(command, process, exited);
        }

        /// <summary>True when the program exited within <paramref name="timeout"/>; a cancel stops it and throws.</summary>
        public bool WaitForExit(TimeSpan timeout, CancellationToken cancel)
        {
            int milliseconds = (int)Math.Min(int.MaxValue, Math.Max(-1, timeout.TotalMilliseconds));
            int signalled = WaitHandle.WaitAny(new[] { _exited, cancel.WaitHandle }, milliseconds);
            if (signalled == 1)
            {
                Kill();
                throw new OperationCanceledException($"{Command.Name} was cancelled; it and every process it started were stopped.", cancel);
            }

            return signalled == 0;
        }

        /// <summary>What the exited program printed; waits up to <paramref name="grace"/> for its output to end.</summary>
        public ToolResult Result(TimeSpan grace)
        {
            if (!Task.WaitAll(new Task[] { _output, _error }, grace))
            {
                Kill();
                throw TimedOut("exited, but its output never ended: a process it started still holds it open");
            }

            _process.WaitForExit();
            return new ToolResult(Command.CommandLine, _process.ExitCode, _output.Result, _error.Result);
        }

        /// <summary>Stops the program and every process it started; nothing happens when it has already exited.</summary>
        public void Kill()
        {
            try
            {
                if (KillTreeMethod != null)
                {
                    KillTreeMethod.Invoke(_process, new object[] { true });
                }
                else if (HostPlatform.IsWindows)
                {
                    KillTreeWithTaskkill();
                }
                else
                {
                    _process.Kill();
                }

                _process.WaitForExit(10_000);
            }
            catch (Exception e) when (e is InvalidOperationException || e is Win32Exception || e is TargetInvocationException)
            {
                // Already gone.
            }
        }

        public void Dispose()
        {
            if (!HasExited)
            {
                Kill();
            }

            _process.Dispose();
            _exited.Dispose();
        }

        private VmQuiesceException TimedOut(string what) =>
            new VmQuiesceException(Command.TimeoutId, FailureKind.OperationTimeout, $"{Command.Name} {what}.", Command.Target ?? Command.Program)
            {
                Remedy = Command.TimeoutRemedy,
            };

        /// <summary>Reads a stream to its end on a thread of its own, keeping the first <paramref name="limit"/> characters.</summary>
        private static Task<string> Capture(StreamReader reader, int limit) => OwnThread.Start(() =>
        {
            var text = new StringBuilder();
            var buffer = new char[8192];
            bool dropped = false;
            try
            {
                int read;
                while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
                {
                    int keep = Math.Min(read, limit - text.Length);
                    text.Append(buffer, 0, keep);
                    dropped |= keep < read;
                }
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException)
            {
                // The pipe went away with a killed process: what was read stands.
            }

            return dropped ? text.Append($"\n[output beyond {limit} characters was dropped]").ToString() : text.ToString();
        });

        private void KillTreeWithTaskkill()
        {
            string taskkillPath;
            try
            {
                taskkillPath = HostTools.ForThisHost.Find("taskkill");
            }
            catch (VmQuiesceException)
            {
                _process.Kill();
                return;
            }

            var start = new ProcessStartInfo(taskkillPath, "/T /F /PID " + _process.Id.ToString(CultureInfo.InvariantCulture))
            {
                UseShellExecute = false,
                CreateNoWindow = true,
                WorkingDirectory = Environment.SystemDirectory,
            };
            using Process? taskkill = Process.Start(start);
            taskkill?.WaitForExit(10_000);
        }
    }
}
