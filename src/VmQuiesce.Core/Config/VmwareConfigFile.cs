using System;
using System.IO;
using System.Reflection;
using System.Runtime.ExceptionServices;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Config
{
    /// <summary>
    /// Reads and atomically replaces VMware configuration files. A write goes to a temporary file in
    /// the same folder, is flushed to disk and then renamed over the target, keeping the previous
    /// version as <c>&lt;name&gt;.bak</c>; a crash at any moment leaves either the old or the new file.
    /// </summary>
    public static class VmwareConfigFile
    {
        public const string BackupExtension = ".bak";

        /// <summary>
        /// The most a configuration file may hold: a .vmx is a few kilobytes, vmvsswriter.cfg a line. Anything near this
        /// is not a configuration file, and reading it whole would only cost memory.
        /// </summary>
        public const int MaxBytes = 1 << 20;

        /// <summary>
        /// The parsed file, or null when it does not exist. Only a regular file of at most <see cref="MaxBytes"/> is read:
        /// the file may sit in a folder others can write (a VM folder), and a link there could lead to any host file, a
        /// FIFO would hang the read and a device never end it.
        /// </summary>
        public static VmwareConfigDocument? TryRead(string path)
        {
            RequireFolder(path);
            ArraySegment<byte> content;
            try
            {
                content = RegularFile.ReadAllBytes(path, MaxBytes);
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                return null;
            }
            catch (UnexpectedFileException e)
            {
                throw new VmQuiesceException("ConfigReadFailed", FailureKind.InvalidData, $"Could not read the configuration file: {e.Message}", path, e)
                {
                    Remedy = $"Make '{path}' the configuration file itself (a regular file, not a link), or check who replaced it.",
                };
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw Failure(e, path, "read", "ConfigReadFailed", FailureKind.ReadError);
            }

            var bytes = new byte[content.Count];
            Buffer.BlockCopy(content.Array!, content.Offset, bytes, 0, content.Count);
            return VmwareConfigDocument.Parse(bytes, path);
        }

        /// <summary>
        /// Writes <paramref name="document"/> to <paramref name="path"/> when it was modified (creating the
        /// file if needed). Returns false, and touches nothing, when there was nothing to write.
        /// </summary>
        public static bool Write(string path, VmwareConfigDocument document)
        {
            if (!document.IsModified)
            {
                return false;
            }

            RequireFolder(path);
            FileStatus? found = RequireNoLink(path);
            bool exists = File.Exists(path);
            if (exists)
            {
                RequireWritable(path);
            }

            string temporary = Path.Combine(Path.GetDirectoryName(path)!, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N") + ".tmp");
            try
            {
                // On Linux made with the old file's permission bits set through its descriptor: a chmod by name could be
                // led by whoever may write the folder to a file of their choosing.
                using (FileStream stream = RegularFile.CreateNew(temporary, found?.Permissions ?? RegularFile.OwnerOnly))
                {
                    byte[] bytes = document.ToBytes();
                    stream.Write(bytes, 0, bytes.Length);
                    stream.Flush(true);
                }

                if (exists)
                {
                    if (!HostPlatform.IsLinux)
                    {
                        CopyUnixFileMode(path, temporary);
                    }

                    File.Replace(temporary, path, path + BackupExtension);
                }
                else
                {
                    File.Move(temporary, path);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw Failure(e, path, "write", "ConfigWriteFailed", FailureKind.WriteError);
            }
            finally
            {
                TryDelete(temporary);
            }

            return true;
        }

        /// <summary>
        /// Removes the file by renaming it to <c>&lt;name&gt;.bak</c> (replacing an older backup), so the
        /// last version can be restored. Returns false when there was no file.
        /// </summary>
        public static bool Remove(string path)
        {
            RequireFolder(path);
            if (!File.Exists(path))
            {
                return false;
            }

            RequireNoLink(path);
            RequireWritable(path);
            string backup = path + BackupExtension;
            try
            {
                if (File.Exists(backup))
                {
                    File.Delete(backup);
                }

                File.Move(path, backup);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw Failure(e, path, "remove", "ConfigWriteFailed", FailureKind.WriteError);
            }

            return true;
        }

        private static void RequireFolder(string path)
        {
            string? folder = Path.GetDirectoryName(path);
            if (string.IsNullOrEmpty(folder) || !Directory.Exists(folder))
            {
                throw FolderNotFound(folder ?? path);
            }
        }

        internal static VmQuiesceException FolderNotFound(string folder) =>
            new VmQuiesceException("ConfigFolderNotFound", FailureKind.ObjectNotFound,
                $"The folder '{folder}' does not exist. Expected an existing folder (such as the VMware Server install folder) or a file path inside one.", folder);

        /// <summary>
        /// What is at <paramref name="path"/> (Linux; null elsewhere, or when nothing is), refused unless a regular file:
        /// the file is opened for writing and its mode copied, and neither may be done to whatever a link leads to.
        /// </summary>
        private static FileStatus? RequireNoLink(string path)
        {
            FileStatus? found = RegularFile.StatNoFollow(path);
            if (found is FileStatus status && !status.IsRegularFile)
            {
                throw new VmQuiesceException("ConfigWriteFailed", FailureKind.InvalidData, $"'{path}' is {status.KindName}; expected a regular file. Nothing was written through it.", path)
                {
                    Remedy = $"Make '{path}' the configuration file itself (a regular file, not a link), or check who replaced it.",
                };
            }

            return found;
        }

        /// <summary>
        /// Fails before anything is written when the file is read-only, locked by another program or not
        /// writable for this account: the rename would otherwise replace a file the user protected.
        /// </summary>
        private static void RequireWritable(string path)
        {
            if ((File.GetAttributes(path) & FileAttributes.ReadOnly) != 0)
            {
                throw new VmQuiesceException("ConfigFileReadOnly", FailureKind.PermissionDenied,
                    $"The file '{path}' is read-only; nothing was changed.", path)
                {
                    Remedy = "Clear the read-only attribute (Windows: attrib -r; Linux: chmod u+w) if the file may be changed, then run the command again.",
                };
            }

            try
            {
                using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                {
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw Failure(e, path, "open for writing", "ConfigWriteFailed", FailureKind.WriteError);
            }
        }

        private static VmQuiesceException Failure(Exception e, string path, string action, string otherId, FailureKind otherKind)
        {
            // RegularFile reports a refused open on Linux as an IOException carrying the errno.
            if (e is UnauthorizedAccessException || RegularFile.ErrnoOf(e) == Libc.EACCES || RegularFile.ErrnoOf(e) == Libc.EPERM)
            {
                return new VmQuiesceException("ConfigAccessDenied", FailureKind.PermissionDenied,
                    $"Access to '{path}' was denied (could not {action} it): {e.Message} Nothing was changed.", path, e)
                {
                    Remedy = "Run as an account that may modify the VMware Server install folder (on Windows, an elevated session).",
                };
            }

            if (e is DirectoryNotFoundException)
            {
                return FolderNotFound(Path.GetDirectoryName(path) ?? path);
            }

            // ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: another program holds the file open.
            int win32 = e.HResult & 0xFFFF;
            if ((e.HResult & unchecked((int)0xFFFF0000)) == unchecked((int)0x80070000) && (win32 == 32 || win32 == 33))
            {
                return new VmQuiesceException("ConfigFileLocked", FailureKind.ResourceBusy,
                    $"The file '{path}' is in use by another program (could not {action} it). Nothing was changed.", path, e)
                {
                    Remedy = "Close the program that holds the file open (an editor, or the VMware VSS Writer service), then run the command again.",
                };
            }

            return new VmQuiesceException(otherId, otherKind, $"Could not {action} '{path}': {e.Message}", path, e);
        }

        /// <summary>
        /// Gives the new file the old one's permission bits, which a rename would otherwise reset to the
        /// umask default (on Windows, File.Replace keeps attributes and ACLs itself; on Linux the new file is
        /// made with them). By name, so only where there are no descriptors to do it by. The API exists from
        /// .NET 7 (PowerShell 7.3+); netstandard2.0 cannot name it, so it is found at run time.
        /// </summary>
        private static void CopyUnixFileMode(string from, string to)
        {
            if (HostPlatform.IsWindows)
            {
                return;
            }

            MethodInfo? get = typeof(File).GetMethod("GetUnixFileMode", new[] { typeof(string) });
            MethodInfo? set = get == null ? null : typeof(File).GetMethod("SetUnixFileMode", new[] { typeof(string), get.ReturnType });
            if (get != null && set != null)
            {
                try
                {
                    set.Invoke(null, new[] { to, get.Invoke(null, new object[] { from }) });
                }
                catch (TargetInvocationException e) when (e.InnerException != null)
                {
                    // Report the file system's own exception, which the caller maps to an error id.
                    ExceptionDispatchInfo.Capture(e.InnerException).Throw();
                }
            }
        }

        private static void TryDelete(string path)
        {
            try
            {
                if (File.Exists(path))
                {
                    File.Delete(path);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                // Best effort: the error that matters is the one already being reported.
            }
        }
    }
}
