using System;
using System.IO;
using System.Text;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon
{
    /// <summary>Writes small state files that only root/Administrators may read, atomically.</summary>
    internal static class StateFiles
    {
        public static void WriteProtected(string folder, string path, string content)
        {
            try
            {
                Directory.CreateDirectory(folder);
                if (HostPlatform.IsWindows)
                {
                    WindowsSecurity.RestrictToAdministrators(folder);
                }
                else
                {
                    PosixFiles.ChangeMode(folder, Convert.ToInt32("700", 8));
                }

                string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N");
                // Restrict the file before any content goes in; on Windows it inherits the folder's DACL.
                File.WriteAllBytes(temporary, Array.Empty<byte>());
                if (!HostPlatform.IsWindows)
                {
                    PosixFiles.ChangeMode(temporary, Convert.ToInt32("600", 8));
                }

                File.WriteAllText(temporary, content, new UTF8Encoding(false));
                ReplaceAtomically(temporary, path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("StateFileWriteFailed", FailureKind.WriteError,
                    $"Cannot write the state file '{path}': {e.Message}", path, e)
                {
                    Remedy = "Run as root/Administrator, or choose a writable folder with -StateDirectory.",
                };
            }
        }

        /// <summary>Rename over the target: readers see the old file or the new one, never half of one.</summary>
        public static void ReplaceAtomically(string temporary, string path)
        {
            if (File.Exists(path))
            {
                File.Replace(temporary, path, null);
            }
            else
            {
                File.Move(temporary, path);
            }
        }
    }
}
