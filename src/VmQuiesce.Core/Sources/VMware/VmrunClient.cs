using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// Runs vmrun (the real one or any program at the configured path) and reads its answers. Every call
    /// has a deadline; a call that overruns it is killed with its child processes. The password reaches
    /// vmrun's argument list and nothing else: verbose text, errors and vmrun's own echoed output are redacted.
    /// </summary>
    public sealed class VmrunClient
    {
        private const string RunningHeader = "Total running VMs:";
        private const string SnapshotsHeader = "Total snapshots:";

        private readonly VmrunConnection _connection;
        private readonly Action<string>? _verbose;
        private int _warned;

        public VmrunClient(VmrunConnection connection, Action<string>? verbose = null, Action<string>? warn = null)
        {
            _connection = connection;
            _verbose = verbose;
            Warn = warn;
        }

        public VmrunConnection Connection => _connection;

        /// <summary>Receives the password-on-command-line warning, once per client, before the first call that carries one.</summary>
        public Action<string>? Warn { get; }

        /// <summary>Paths of the running VMs (<c>vmrun list</c>).</summary>
        public IReadOnlyList<string> ListRunning(CancellationToken cancel)
        {
            VmrunCommandLine line = VmrunCommandLine.Build(_connection, "list");
            return ParseCountedList(Run(line, "(host)", cancel), RunningHeader, line.Command, "(host)");
        }

        /// <summary>Snapshot names of a VM, oldest first as vmrun lists them (<c>vmrun listSnapshots</c>).</summary>
        public IReadOnlyList<string> ListSnapshots(string vmPath, CancellationToken cancel)
        {
            VmrunCommandLine line = VmrunCommandLine.Build(_connection, "listSnapshots", vmPath);
            return ParseCountedList(Run(line, vmPath, cancel), SnapshotsHeader, line.Command, vmPath);
        }

        public void Snapshot(string vmPath, string name, CancellationToken cancel) => RunChecked(cancel, vmPath, "snapshot", vmPath, name);

        public void RevertToSnapshot(string vmPath, string name, CancellationToken cancel) => RunChecked(cancel, vmPath, "revertToSnapshot", vmPath, name);

        public void DeleteSnapshot(string vmPath, string name, CancellationToken cancel) => RunChecked(cancel, vmPath, "deleteSnapshot", vmPath, name);

        public void Start(string vmPath, CancellationToken cancel) => RunChecked(cancel, vmPath, "start", vmPath, "nogui");

        public void Stop(string vmPath, bool hard, CancellationToken cancel) => RunChecked(cancel, vmPath, "stop", vmPath, hard ? "hard" : "soft");

        /// <summary>The command as the user could run it by hand (password masked): for remedies and reports.</summary>
        public string DisplayCommand(string command, params string[] arguments) =>
            VmrunCommandLine.QuoteArgument(_connection.VmrunPath) + " " + VmrunCommandLine.Build(_connection, command, arguments).Display;

        /// <summary>
        /// Reads "Total snapshots: N" / "Total running VMs: N" followed by one item per line. A count that does
        /// not match the lines is an unrecognised answer, not something to guess around.
        /// </summary>
        internal static IReadOnlyList<string> ParseCountedList(string output, string header, string command, string target)
        {
            string[] lines = output.Replace("\r\n", "\n").Split('\n');
            int headerIndex = Array.FindIndex(lines, l => l.TrimStart().StartsWith(header, StringComparison.Ordinal));
            if (headerIndex < 0 ||
                !int.TryParse(lines[headerIndex].Trim().Substring(header.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int count))
            {
                throw Unrecognised(output, header, command, target);
            }

            List<string> items = lines.Skip(headerIndex + 1).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
            if (items.Count != count)
            {
                throw Unrecognised(output, $"{header} {count} followed by {count} line(s), got {items.Count}", command, target);
            }

            return items;
        }

        /// <summary>
        /// vmrun's failure text: from the first "Error:" line (or "Unable to connect to host") to the end, or
        /// null when the output reports no failure. vmrun reports some failures with exit code 0.
        /// </summary>
        internal static string? FindError(string output)
        {
            string[] lines = output.Replace("\r\n", "\n").Split('\n');
            int index = Array.FindIndex(lines, l =>
                l.TrimStart().StartsWith("Error:", StringComparison.OrdinalIgnoreCase) ||
                l.TrimStart().StartsWith("Unable to connect to host", StringComparison.OrdinalIgnoreCase));
            return index < 0 ? null : string.Join(" ", lines.Skip(index).Select(l => l.Trim()).Where(l => l.Length > 0));
        }

        private void RunChecked(CancellationToken cancel, string target, string command, params string[] arguments) =>
            Run(VmrunCommandLine.Build(_connection, command, arguments), target, cancel);

        /// <summary>Runs one call; a failure (non-zero exit or an "Error:" line) throws the mapped error.</summary>
        private string Run(VmrunCommandLine line, string target, CancellationToken cancel)
        {
            cancel.ThrowIfCancellationRequested();
            if (_connection.Credential != null && Interlocked.Exchange(ref _warned, 1) == 0)
            {
                Warn?.Invoke(VmrunConnection.PasswordOnCommandLineWarning);
            }

            _verbose?.Invoke($"Running {VmrunCommandLine.QuoteArgument(_connection.VmrunPath)} {line.Display}");
            (int exitCode, string rawOutput) = Execute(line, target, cancel);
            string output = line.Redact(rawOutput);
            string? error = FindError(output);
            if (exitCode != 0 || error != null)
            {
                throw VmrunErrors.Map(error ?? output.Trim(), exitCode, line.Command, target);
            }

            return output;
        }

        private (int ExitCode, string Output) Execute(VmrunCommandLine line, string target, CancellationToken cancel)
        {
            var startInfo = new ProcessStartInfo(_connection.VmrunPath)
            {
                UseShellExecute = false,
                CreateNoWindow = true,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                StandardOutputEncoding = Encoding.UTF8,
                StandardErrorEncoding = Encoding.UTF8,
            };

            using var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
            using var exited = new ManualResetEvent(false);
            process.Exited += (_, _) =>
            {
                try
                {
                    exited.Set();
                }
                catch (ObjectDisposedException)
                {
                    // The call already ended (timeout or cancellation) and released the handle.
                }
            };
            try
            {
                startInfo.Arguments = line.ToProcessArguments();
                process.Start();
            }
            catch (Exception e) when (e is Win32Exception || e is InvalidOperationException)
            {
                throw new VmQuiesceException("VmrunNotStartable", FailureKind.ObjectNotFound,
                    $"Could not run vmrun at '{_connection.VmrunPath}': {e.Message}", _connection.VmrunPath, e)
                {
                    Remedy = "Give the full path of vmrun with -VmrunPath.",
                };
            }
            finally
            {
                // The only copy of the password outside its SecureString lived in this string.
                startInfo.Arguments = string.Empty;
            }

            process.StandardInput.Close();
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            var deadline = Stopwatch.StartNew();
            int signalled = WaitHandle.WaitAny(new[] { exited, cancel.WaitHandle }, _connection.CommandTimeout);
            if (signalled != 0)
            {
                KillTree(process);
                _ = Task.WhenAll(stdout, stderr).ContinueWith(t => t.Exception, TaskScheduler.Default);
                if (signalled == 1)
                {
                    throw new OperationCanceledException($"vmrun {line.Command} for '{target}' was cancelled; vmrun was stopped.", cancel);
                }

                throw new VmQuiesceException("VmrunTimedOut", FailureKind.OperationTimeout,
                    $"vmrun {line.Command} for '{target}' did not finish within {_connection.CommandTimeout.TotalSeconds:0.#} s; vmrun and its child processes were stopped.", target)
                {
                    Remedy = "Check that the VMware host responds (a dialog waiting in the VMware user interface blocks vmrun), then try again.",
                };
            }

            // vmrun has exited; its output pipes close with it unless a child still holds them.
            TimeSpan remaining = _connection.CommandTimeout - deadline.Elapsed;
            if (!Task.WaitAll(new Task[] { stdout, stderr }, remaining > TimeSpan.FromSeconds(5) ? remaining : TimeSpan.FromSeconds(5)))
            {
                KillTree(process);
                throw new VmQuiesceException("VmrunTimedOut", FailureKind.OperationTimeout,
                    $"vmrun {line.Command} for '{target}' exited but its output never ended (a child process kept it open).", target);
            }

            process.WaitForExit();
            return (process.ExitCode, stdout.Result + stderr.Result);
        }

        /// <summary>
        /// Kills vmrun and every process it started. PowerShell 7 (.NET Core 3+) has Process.Kill(bool entireProcessTree);
        /// Windows PowerShell 5.1 (.NET Framework) does not, so there taskkill /T does it by process id.
        /// </summary>
        private static void KillTree(Process process)
        {
            try
            {
                MethodInfo? killTree = typeof(Process).GetMethod("Kill", new[] { typeof(bool) });
                if (killTree != null)
                {
                    killTree.Invoke(process, new object[] { true });
                }
                else if (HostPlatform.IsWindows)
                {
                    using Process? taskkill = Process.Start(new ProcessStartInfo("taskkill.exe", "/T /F /PID " + process.Id.ToString(CultureInfo.InvariantCulture))
                    {
                        UseShellExecute = false,
                        CreateNoWindow = true,
                    });
                    taskkill?.WaitForExit(10_000);
                }
                else
                {
                    process.Kill();
                }

                process.WaitForExit(10_000);
            }
            catch (Exception e) when (e is InvalidOperationException || e is Win32Exception || e is TargetInvocationException)
            {
                // Already gone.
            }
        }

        private static VmQuiesceException Unrecognised(string output, string expected, string command, string target) =>
            new VmQuiesceException("VmrunOutputUnrecognized", FailureKind.ProtocolError,
                $"vmrun {command} for '{target}' answered in an unrecognised form; expected '{expected}'. It printed: {VmrunCommandLine.RedactFlags(output.Trim())}", target);
    }
}
