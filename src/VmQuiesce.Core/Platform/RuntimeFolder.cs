using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Where this user's run-time records live (instant restores, mounts, QEMU runs): /run for root, $XDG_RUNTIME_DIR
    /// for another user. Later commands kill, stop and delete what these records name, so on Linux a record there is
    /// read or written only when the runtime folder and each VmQuiesce folder below it is a real folder (not a link)
    /// of this user that neither group nor others may write: a folder another user controls could hold planted
    /// records, or have ours renamed away. The VmQuiesce folders are made 0700.
    /// </summary>
    internal static class RuntimeFolder
    {
        private const int GroupOrOtherWrite = 0x12; // 0022
        private const int OwnerOnlyFolder = 0x1C0; // 0700

        private static readonly AsyncLocal<string?> s_testRoot = new AsyncLocal<string?>();

        /// <summary>/run for root, $XDG_RUNTIME_DIR (an absolute path) for another user; null when this user has none.</summary>
        public static string? Root
        {
            get
            {
                if (s_testRoot.Value is string testRoot)
                {
                    return testRoot;
                }

                // Where there is no /run (macOS), root too has only its $XDG_RUNTIME_DIR, if any.
                if (Libc.geteuid() == 0 && Directory.Exists("/run"))
                {
                    return "/run";
                }

                string runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") ?? string.Empty;
                return Path.IsPathRooted(runtime) ? runtime.TrimEnd('/') : null;
            }
        }

        /// <summary>
        /// Tests: <paramref name="root"/> stands for the runtime folder in this test's flow (other tests keep theirs)
        /// until the result is disposed.
        /// </summary>
        internal static IDisposable UseRootForTests(string root)
        {
            s_testRoot.Value = root;
            return new TestRoot();
        }

        /// <summary>
        /// Checks <paramref name="root"/> and each folder from it down to <paramref name="folder"/> (at or below it),
        /// never through a link; with <paramref name="create"/>, missing folders below the root are made 0700. True when
        /// <paramref name="folder"/> is there and trusted; false when a folder is missing and not to be made (no record
        /// is there yet). Throws a VmQuiesceException naming the folder and what was expected otherwise. Checks nothing
        /// where there is no owner to check (Windows, macOS); there it only makes the folder when asked to.
        /// </summary>
        public static bool Check(string root, string folder, bool create)
        {
            if (!HostPlatform.IsLinux)
            {
                if (create)
                {
                    Directory.CreateDirectory(folder);
                }

                return Directory.Exists(folder);
            }

            string rest = folder.Length >= root.Length && folder.StartsWith(root, StringComparison.Ordinal) ? folder.Substring(root.Length) : throw new ArgumentException($"'{folder}' is not below '{root}'.", nameof(folder));
            string path = root;
            if (!CheckOne(path, create: false))
            {
                return create ? throw Untrusted(path, "missing") : false;
            }

            foreach (string name in rest.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries))
            {
                path = Path.Combine(path, name);
                if (!CheckOne(path, create))
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>False when <paramref name="path"/> is missing and not made.</summary>
        private static bool CheckOne(string path, bool create)
        {
            FileStatus? status = RegularFile.StatNoFollow(path);
            if (status == null && create)
            {
                // mkdir applies the umask, which can only narrow 0700; an existing folder (made by someone in between) is checked below.
                int errno = Libc.mkdir(path, OwnerOnlyFolder) == 0 ? 0 : Marshal.GetLastWin32Error();
                if (errno != 0 && errno != Libc.EEXIST)
                {
                    throw new VmQuiesceException("RecordFolderCreateFailed", FailureKind.WriteError, $"Cannot make the record folder '{path}': {Libc.ErrorText(errno)}.", path);
                }

                status = RegularFile.StatNoFollow(path);
            }

            if (status is not FileStatus found)
            {
                return false;
            }

            uint self = Libc.geteuid();
            string? problem = found.IsSymbolicLink ? "a symbolic link"
                : !found.IsDirectory ? found.KindName
                : found.Uid != self ? $"a folder of user id {found.Uid}"
                : (found.Permissions & GroupOrOtherWrite) != 0 ? $"a folder of mode {found.ModeText}, which group or others may write"
                : null;
            return problem == null ? true : throw Untrusted(path, problem);
        }

        private static VmQuiesceException Untrusted(string path, string found) =>
            new VmQuiesceException("RecordFolderUntrusted", FailureKind.SecurityError,
                $"The record folder '{path}' is {found}; expected a real folder (not a link) of this user (user id {Libc.geteuid()}) that neither group nor others may write. " +
                "VmQuiesce keeps there the records of what later commands stop, kill and delete, and neither reads nor writes one there.", path)
            {
                Remedy = $"Remove '{path}' or make it this user's own folder (chown, chmod 700); a user other than root needs a runtime folder ($XDG_RUNTIME_DIR) of its own, as a login session has.",
            };

        private sealed class TestRoot : IDisposable
        {
            public void Dispose() => s_testRoot.Value = null;
        }
    }
}
