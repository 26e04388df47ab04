using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
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
            ToolCommand.Quote(_connection.VmrunPath) + " " + VmrunCommandLine.Build(_connection, command, arguments).Display;

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

            _verbose?.Invoke($"Running {ToolCommand.Quote(_connection.VmrunPath)} {line.Display}");
            ToolResult result = ToolProcess.Run(new ToolCommand(_connection.VmrunPath, line.Arguments)
            {
                Secret = line.Password,
                Timeout = _connection.CommandTimeout,
                Target = target,
                Description = $"vmrun {line.Command} for '{target}'",
                StartFailureId = "VmrunNotStartable",
                StartFailureRemedy = "Give the full path of vmrun with -VmrunPath.",
                TimeoutId = "VmrunTimedOut",
                TimeoutRemedy = "Check that the VMware host responds (a dialog waiting in the VMware user interface blocks vmrun), then try again.",
            }, cancel);
            string output = line.Redact(result.StandardOutput + result.StandardError);
            string? error = FindError(output);
            if (result.ExitCode != 0 || error != null)
            {
                throw VmrunErrors.Map(error ?? output.Trim(), result.ExitCode, line.Command, target);
            }

            return output;
        }

        private static VmQuiesceException Unrecognised(string output, string expected, string command, string target) =>
            new VmQuiesceException("VmrunOutputUnrecognized", FailureKind.ProtocolError,
                $"vmrun {command} for '{target}' answered in an unrecognised form; expected '{expected}'. It printed: {GuestText.Escape(VmrunCommandLine.RedactFlags(output.Trim()))}", target);
    }
}
