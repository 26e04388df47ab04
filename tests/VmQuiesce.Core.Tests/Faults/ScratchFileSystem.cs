using System;
using System.IO;
using VmQuiesce.Core.Tests.TestGuest;

namespace VmQuiesce.Core.Tests.Faults
{
    /// <summary>
    /// A real, small tmpfs mounted on a temp folder, for faults a file system really raises: full (of bytes or
    /// of inodes), read-only. Needs root (see <see cref="LinuxRootFactAttribute"/>); unmounted on dispose.
    /// </summary>
    internal sealed class ScratchFileSystem : IDisposable
    {
        public ScratchFileSystem(string options)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vmq-fs-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
            HostCommand.RunChecked("mount", new[] { "-t", "tmpfs", "-o", options, "vmq-scratch", Path });
        }

        public string Path { get; }

        /// <summary>Changes the mount's options in place: "ro", "rw", "nr_inodes=4000", "size=8m".</summary>
        public void Remount(string options) => HostCommand.RunChecked("mount", new[] { "-o", "remount," + options, Path });

        public void Dispose()
        {
            HostCommand.Run("umount", new[] { Path });
            try
            {
                Directory.Delete(Path);
            }
            catch (IOException)
            {
                // Still mounted (busy): the lazy unmount below lets it go when its last user does.
                HostCommand.Run("umount", new[] { "-l", Path });
            }
        }
    }
}
