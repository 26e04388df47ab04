using System;
using System.IO;
using VmQuiesce.Core.Tests.TestGuest;

namespace VmQuiesce.Core.Tests.Faults
{
    /// <summary>
    /// A file every read of which fails with EIO, as on a disk that fails: this process's /proc/&lt;pid&gt;/mem, a
    /// regular file whose offset 0 is never mapped, bind-mounted over it. Opening and inspecting it succeed, as on a
    /// failing disk; only the read fails, with the kernel's own error. Needs root (see <see cref="LinuxRootFactAttribute"/>);
    /// unmounted on dispose.
    /// </summary>
    internal sealed class UnreadableFile : IDisposable
    {
        public UnreadableFile(string path)
        {
            Path = path;
            File.WriteAllText(path, string.Empty);
            HostCommand.RunChecked("mount", new[] { "--bind", $"/proc/{Environment.ProcessId}/mem", path });
        }

        public string Path { get; }

        public void Dispose()
        {
            if (HostCommand.Run("umount", new[] { Path }).ExitCode != 0)
            {
                // Still open somewhere: the lazy unmount lets it go when its last user does.
                HostCommand.Run("umount", new[] { "-l", Path });
            }
        }
    }
}
