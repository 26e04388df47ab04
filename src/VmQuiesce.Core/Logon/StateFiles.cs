using System;
using System.IO;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon
{
    /// <summary>
    /// Small state files that only root/Administrators (or, for a user's own records, that user) may read: written
    /// atomically, read back only when they are still what was written (see <see cref="ReadOwn"/>).
    /// </summary>
    internal static class StateFiles
    {
        /// <summary>The largest state file read back; each is a few kilobytes.</summary>
        public const long MaxBytes = 1024 * 1024;

        private const string DefaultRemedy = "Run as root/Administrator, or choose a writable folder with -StateDirectory.";

        /// <summary>
        /// Writes <paramref name="path"/> in <paramref name="folder"/> atomically, private to this account. The folder is
        /// reached as <see cref="TrustedFolder.OpenForNewFiles"/> reaches it and everything is done through it: a link
        /// another user put on the way, or swaps in while the file is written, is not followed.
        /// </summary>
        public static void WriteProtected(string folder, string path, string content, string remedy = DefaultRemedy)
        {
            try
            {
                // Only a folder made here is restricted: one that exists is someone's choice (-StateDirectory, a
                // VMQUIESCE_*_FOLDER variable, even /tmp) and keeps its modes; the file itself is private either way.
                bool made = !Directory.Exists(folder);
                using TrustedFolder opened = TrustedFolder.OpenForNewFiles(folder);
                if (made && HostPlatform.IsWindows)
                {
                    WindowsSecurity.RestrictToAdministrators(folder);
                }
                else if (made && !HostPlatform.IsLinux)
                {
                    // On Linux the folders made on the way are 0700 already, made through descriptors.
                    PosixFiles.ChangeMode(folder, Convert.ToInt32("700", 8));
                }

                // Made private as it is created (on Linux and macOS 0600, exclusively, not through a link; on Windows with
                // the folder's DACL) and written through that one handle: no moment when another user could open it.
                opened.ReplaceWithText(Path.GetFileName(path), content, RegularFile.OwnerOnly);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("StateFileWriteFailed", FailureKind.WriteError,
                    $"Cannot write the state file '{path}': {e.Message}", path, e)
                {
                    Remedy = remedy,
                };
            }
        }

        /// <summary>
        /// The text of a state file this account wrote: a regular file (never a link, FIFO or device) of at most
        /// <see cref="MaxBytes"/>, owned by this user (checked on the open descriptor, so nothing can be swapped in
        /// between). Throws <see cref="FileNotFoundException"/> or <see cref="DirectoryNotFoundException"/> when there is
        /// none, and an <see cref="IOException"/> saying why for a file that is not one.
        /// </summary>
        public static string ReadOwn(string path)
        {
            using FileStream stream = RegularFile.OpenRead(path, MaxBytes);
            if (HostPlatform.IsLinux)
            {
                uint owner = UnixFiles.Stat((int)stream.SafeFileHandle.DangerousGetHandle(), path).Uid;
                if (owner != Libc.geteuid())
                {
                    throw new UnexpectedFileException(path, $"owned by user {owner}", $"a file of this user ({Libc.geteuid()})");
                }
            }

            return RegularFile.ReadToEnd(stream, path, MaxBytes);
        }
    }
}
