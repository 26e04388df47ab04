using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Restore
{
    /// <summary>Finds who is using a file a restore would replace: a running VM must be stopped first.</summary>
    public interface IFileUsageProbe
    {
        /// <summary>A description of the process or lock holding <paramref name="path"/> ("process 4242 (qemu-system-x86_64)"), or null when it is free.</summary>
        string? FindUser(string path, CancellationToken cancel);
    }

    /// <summary>
    /// This host's view: on Linux, any process with the file open (/proc/*/fd), then QEMU's image lock
    /// (qemu-img info without -U fails while a QEMU holds it, also for processes of other users).
    /// </summary>
    public sealed class HostFileUsageProbe : IFileUsageProbe
    {
        public static HostFileUsageProbe Instance { get; } = new HostFileUsageProbe();

        public string? FindUser(string path, CancellationToken cancel)
        {
            string full = Path.GetFullPath(path);
            if (HostPlatform.IsLinux && FindOpeningProcess(full) is string process)
            {
                return process;
            }

            return File.Exists(full) && QemuImage.WhyLocked(full, cancel) is string locked ? "a QEMU image lock (" + locked + ")" : null;
        }

        private static string? FindOpeningProcess(string full)
        {
            int self = HostPlatform.ProcessId;
            foreach (int pid in Repository.ProcessIdentity.ProcessIds().Where(pid => pid != self))
            {
                string folder = "/proc/" + pid.ToString(System.Globalization.CultureInfo.InvariantCulture);

                IEnumerable<string> descriptors;
                try
                {
                    descriptors = Directory.GetFiles(Path.Combine(folder, "fd"));
                }
                catch (Exception e) when (e is UnauthorizedAccessException || e is IOException)
                {
                    // Another user's process (the image lock check covers QEMUs we cannot see) or one that just ended.
                    continue;
                }

                foreach (string descriptor in descriptors)
                {
                    if (UnixFiles.ReadLink(descriptor) == full)
                    {
                        return $"process {pid} ({ProcessName(folder)})";
                    }
                }
            }

            return null;
        }

        private static string ProcessName(string procFolder)
        {
            try
            {
                return File.ReadAllText(Path.Combine(procFolder, "comm")).Trim();
            }
            catch (Exception e) when (e is UnauthorizedAccessException || e is IOException)
            {
                return "unknown";
            }
        }
    }
}
