using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// What tells a process apart from every other on a host, now and later: host name, boot (Linux boot_id),
    /// PID namespace, pid and its start time (in clock ticks since boot on Linux, exact; elsewhere the start time,
    /// within 2 s). A lock records it, so a later process can prove the holder gone: another boot, no such pid,
    /// or a pid that a later process reused.
    /// </summary>
    internal sealed class ProcessIdentity
    {
        private static readonly Lazy<ProcessIdentity> s_current = new Lazy<ProcessIdentity>(Capture);

        private ProcessIdentity(int pid, DateTime start, string? startTicks, string? bootId, string? pidNamespace)
        {
            Pid = pid;
            Start = start;
            StartTicks = startTicks;
            BootId = bootId;
            PidNamespace = pidNamespace;
        }

        public static ProcessIdentity Current => s_current.Value;

        public int Pid { get; }

        public DateTime Start { get; }

        public string? StartTicks { get; }

        public string? BootId { get; }

        public string? PidNamespace { get; }

        public JsonObject ToJson(string purpose) => new JsonObject()
            .With("pid", Pid)
            .With("host", Environment.MachineName)
            .With("bootId", BootId)
            .With("pidNamespace", PidNamespace)
            .With("processStart", Start.ToString("o", CultureInfo.InvariantCulture))
            .With("processStartTicks", StartTicks)
            .With("purpose", purpose)
            .With("since", DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture));

        /// <summary>
        /// Whether process <paramref name="pid"/> of this host and namespace is still the one that started at the
        /// recorded time. False when no such process exists or a later one has the id; true when it runs and the
        /// recorded start matches or was not recorded.
        /// </summary>
        public static bool IsRunning(int pid, string? startTicks, string? start)
        {
            if (HostPlatform.IsLinux)
            {
                if (Libc.kill(pid, 0) != 0 && System.Runtime.InteropServices.Marshal.GetLastWin32Error() == Libc.ESRCH)
                {
                    return false;
                }

                // It exists; /proc may hide its start (hidepid), and then it counts as the same process.
                string? ticks = StartTicksOf(pid);
                return ticks == null || startTicks == null || ticks == startTicks;
            }

            try
            {
                using var process = Process.GetProcessById(pid);
                if (process.HasExited)
                {
                    return false;
                }

                return start == null
                    || !DateTime.TryParse(start, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out DateTime recorded)
                    || Math.Abs((process.StartTime.ToUniversalTime() - recorded.ToUniversalTime()).TotalSeconds) < 2;
            }
            catch (Exception e) when (e is ArgumentException || e is InvalidOperationException)
            {
                return false;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // It exists but may not be inspected (another user's, on Windows): not ours to call gone.
                return true;
            }
        }

        private static ProcessIdentity Capture()
        {
            using var process = Process.GetCurrentProcess();
            if (!HostPlatform.IsLinux)
            {
                return new ProcessIdentity(process.Id, process.StartTime.ToUniversalTime(), null, null, null);
            }

            return new ProcessIdentity(process.Id, process.StartTime.ToUniversalTime(), StartTicksOf(process.Id), ReadTrimmed("/proc/sys/kernel/random/boot_id"), UnixFiles.ReadLink("/proc/self/ns/pid"));
        }

        /// <summary>The ids of the processes /proc lists (Linux): its numeric folders. Any of them may end while the caller looks.</summary>
        internal static System.Collections.Generic.IEnumerable<int> ProcessIds()
        {
            foreach (string folder in Directory.EnumerateDirectories("/proc"))
            {
                if (int.TryParse(Path.GetFileName(folder), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
                {
                    yield return pid;
                }
            }
        }

        /// <summary>Field 22 of /proc/&lt;pid&gt;/stat (start time in clock ticks since boot), or null when there is no such process.</summary>
        internal static string? StartTicksOf(int pid) => StatFieldsAfterName(pid) is string[] fields && fields.Length > 19 ? fields[19] : null;

        /// <summary>Whether process <paramref name="pid"/> has exited but its parent has not collected it yet (state Z, field 3 of /proc/&lt;pid&gt;/stat).</summary>
        internal static bool IsZombie(int pid) => StatFieldsAfterName(pid) is string[] fields && fields.Length > 0 && fields[0] == "Z";

        /// <summary>The fields of /proc/&lt;pid&gt;/stat from the third on, or null when there is no such process.</summary>
        private static string[]? StatFieldsAfterName(int pid)
        {
            string? stat = ReadTrimmed($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // The command name (field 2) is in parentheses and may hold spaces: count fields after its last ')'.
            return stat?.Substring(stat.LastIndexOf(')') + 1).Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
        }

        private static string? ReadTrimmed(string path)
        {
            try
            {
                return File.ReadAllText(path).Trim();
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }
    }
}
