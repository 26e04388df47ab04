using System;
using System.IO;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// A new folder under the temp folder that only this user may enter, deleted with its content on Dispose.
    /// On Unix it is made by mkdir with mode 0700, so it is never wider for a moment and a name someone else
    /// made first (a folder, a link) is never used: mkdir fails on it and another name is drawn.
    /// </summary>
    internal sealed class ScratchFolder : IDisposable
    {
        private ScratchFolder(string path) => Path = path;

        public string Path { get; }

        /// <param name="prefix">The start of the folder's name; short, since a unix socket path inside is limited to 107 bytes.</param>
        public static ScratchFolder Create(string prefix)
        {
            for (int attempt = 0; ; attempt++)
            {
                string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), prefix + "-" + Guid.NewGuid().ToString("N").Substring(0, 12));
                if (HostPlatform.IsWindows)
                {
                    // The temp folder is the user's own there; CreateDirectory would quietly reuse an existing folder.
                    if (!Directory.Exists(path) && !File.Exists(path))
                    {
                        Directory.CreateDirectory(path);
                        return new ScratchFolder(path);
                    }
                }
                else if (Libc.mkdir(path, Convert.ToUInt32("700", 8)) == 0)
                {
                    return new ScratchFolder(path);
                }
                else
                {
                    int errno = Marshal.GetLastWin32Error();
                    if (errno != Libc.EEXIST || attempt >= 10)
                    {
                        throw new IOException($"Cannot create the private folder '{path}': {Libc.ErrorText(errno)}.");
                    }
                }
            }
        }

        /// <summary>
        /// Deletes the folder knowing what it holds: <paramref name="names"/> are deleted (when there), then the folder, empty;
        /// anything else in it makes this the whole <see cref="Dispose"/>. Spares the listing a recursive delete makes.
        /// </summary>
        public void DeleteWith(params string[] names)
        {
            try
            {
                foreach (string name in names)
                {
                    File.Delete(System.IO.Path.Combine(Path, name));
                }

                Directory.Delete(Path, recursive: false);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                Dispose();
            }
        }

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // A leftover in the temp folder is only readable by this user; the next reboot or cleaner removes it.
            }
        }
    }
}
