using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository
{
    /// <summary>What is at a repository path before it is opened.</summary>
    internal enum LayoutState
    {
        Missing,
        Empty,

        /// <summary>Only the empty folders of a repository whose creation was interrupted (no marker yet).</summary>
        Partial,

        Repository,

        /// <summary>A folder holding something else.</summary>
        Foreign,
    }

    /// <summary>
    /// A repository's folders: what is at a path, building the layout (resumable, so an interrupted creation is
    /// completed by the next one, and safe beside a concurrent creator), checking that none of its folders is a
    /// link, how open it is to other users, and removing a repository that was made for nothing.
    /// </summary>
    internal static class RepositoryLayout
    {
        private const int OwnerOnlyFolder = 0x1C0; // 0700
        private const int GroupOrOtherWrite = 0x12; // S_IWGRP | S_IWOTH
        private const int GroupOrOtherAny = 0x3F; // rwx for group and others
        private const int WindowsReadData = 0x1; // FILE_READ_DATA, FILE_LIST_DIRECTORY for a folder
        private const int WindowsWriteData = 0x2; // FILE_WRITE_DATA, FILE_ADD_FILE for a folder

        /// <summary>Windows groups that hold every local user: rights granted to them are rights of anyone.</summary>
        private static readonly (string Sid, string Name)[] BroadWindowsGroups = { ("S-1-1-0", "Everyone"), ("S-1-5-11", "Authenticated Users"), ("S-1-5-32-545", "Users") };
        private static readonly string[] Folders = { ChunkStore.FolderName, BackupRepository.PointsFolderName, RepositoryLock.FolderName, DamagedChunks.FolderName };

        /// <summary>Characters that are never part of a repository path a user meant literally.</summary>
        private static readonly char[] Wildcards = { '*', '?' };

        /// <summary>
        /// The full path of <paramref name="path"/>, refusing empty paths, wildcards and control characters:
        /// PowerShell does not expand wildcards in these parameters, so '*' would otherwise become a folder name.
        /// </summary>
        public static string FullPath(string path, string what, string errorId = "InvalidRepositoryPath")
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidArgument, $"The {what} path is empty; expected a folder path.", path);
            }

            int bad = path.IndexOfAny(Wildcards);
            if (bad < 0)
            {
                bad = IndexOfControlOrInvalid(path);
            }

            if (bad >= 0)
            {
                string shown = char.IsControl(path[bad]) ? $"control character U+{(int)path[bad]:X4}" : $"'{path[bad]}'";
                throw new VmQuiesceException(errorId, FailureKind.InvalidArgument,
                    $"The {what} path '{Printable(path)}' contains {shown}; expected the literal path of one folder (wildcards are not expanded here).", path)
                {
                    Remedy = "Give the folder's full name without '*' or '?'; list the folders with Get-ChildItem first if you meant a pattern.",
                };
            }

            return Path.GetFullPath(path);
        }

        /// <summary>
        /// The first control character or character the OS refuses in paths, or -1. A loop: LINQ over chars here was
        /// compiled at run time on every backup's first path (generic code over a value type is not precompiled).
        /// </summary>
        private static int IndexOfControlOrInvalid(string path)
        {
            for (int i = 0; i < path.Length; i++)
            {
                if (path[i] < 32)
                {
                    return i;
                }
            }

            return path.IndexOfAny(Path.GetInvalidPathChars());
        }

        /// <summary>
        /// What is at <paramref name="full"/>. Throws RepositoryPathIsFile when it, or a folder on its way, is a file.
        /// <paramref name="tags"/>: where Windows' reparse tags are read (<see cref="RepositoryFileOps.ReparseTags"/>).
        /// </summary>
        public static LayoutState Inspect(string full, string given, IFolderHandles? tags)
        {
            ThrowIfFileOnPath(full, given, "repository", "RepositoryPathIsFile");
            if (!Directory.Exists(full))
            {
                return LayoutState.Missing;
            }

            var entries = Directory.EnumerateFileSystemEntries(full).Select(entry => Path.GetFileName(entry)).ToList();
            if (entries.Contains(BackupRepository.MarkerName))
            {
                return LayoutState.Repository;
            }

            if (entries.Count == 0)
            {
                return LayoutState.Empty;
            }

            return entries.All(name => IsMarkerTemp(name) || (Folders.Contains(name) && IsEmptyLayoutFolder(Path.Combine(full, name), name == ChunkStore.FolderName, tags)))
                ? LayoutState.Partial
                : LayoutState.Foreign;
        }

        /// <summary>
        /// Throws RepositoryPathIsFile when <paramref name="full"/> or one of its parents is a file (or anything but a
        /// folder): "a path under a file" gets a message, not a raw IOException.
        /// </summary>
        public static void ThrowIfFileOnPath(string full, string given, string what, string errorId)
        {
            for (string? current = full; !string.IsNullOrEmpty(current); current = Path.GetDirectoryName(current))
            {
                if (File.Exists(current))
                {
                    string where = current == full ? string.Empty : $" (the {what} path '{full}' runs under it)";
                    throw new VmQuiesceException(errorId, FailureKind.InvalidArgument,
                        $"'{current}' is a file{where}; expected a folder for the {what}.", given)
                    {
                        Remedy = $"Give the path of a folder (new or existing) for the {what}.",
                    };
                }

                if (Directory.Exists(current))
                {
                    return;
                }
            }
        }

        /// <summary>
        /// Makes the folders of a repository at <paramref name="full"/>, skipping what exists, so an interrupted
        /// creation (or a concurrent one) is completed. New folders are 0700 on Unix; on Windows the repository
        /// folder is restricted to Administrators and SYSTEM, which everything inside inherits. True when the
        /// repository folder itself was made here. The parent is reached as a folder for new files is (links only
        /// root's, missing folders made 0700) and everything below it through descriptors, following no link: a
        /// mkdir or chmod by name would follow a link whoever may write the parent put at the name meanwhile.
        /// </summary>
        public static bool Build(string full, Func<IEnumerable<string>> fanOutNames)
        {
            using TrustedFolder parent = TrustedFolder.OpenForNewFiles(Path.GetDirectoryName(full)!);
            string name = Path.GetFileName(full);
            bool made = !parent.Exists(name);
            using TrustedFolder repository = parent.OpenBelow(name, owner: null, create: true);
            if (HostPlatform.IsWindows)
            {
                WindowsSecurity.RestrictToAdministrators(full);
            }
            else if (HostPlatform.IsLinux)
            {
                if (Libc.fchmod(repository.Descriptor, OwnerOnlyFolder) != 0)
                {
                    throw RegularFile.Failure("restrict the folder", full, System.Runtime.InteropServices.Marshal.GetLastWin32Error());
                }
            }
            else
            {
                Logon.Linux.PosixFiles.ChangeMode(full, OwnerOnlyFolder); // macOS reaches folders by path
            }

            using (TrustedFolder chunks = repository.OpenBelow(ChunkStore.FolderName, owner: null, create: true))
            {
                foreach (string fanOut in fanOutNames())
                {
                    chunks.OpenBelow(fanOut, owner: null, create: true).Dispose();
                }
            }

            repository.OpenBelow(BackupRepository.PointsFolderName, owner: null, create: true).Dispose();
            repository.OpenBelow(RepositoryLock.FolderName, owner: null, create: true).Dispose();
            return made;
        }

        /// <summary>
        /// Refuses a repository whose folders (chunks, points, locks, the 256 chunk folders) are links or files. On Windows
        /// (<paramref name="tags"/>) a link is a reparse point that redirects the name: a OneDrive or deduplicated folder is a folder.
        /// </summary>
        public static void CheckNoLinks(string full, IEnumerable<string> fanOutNames, IFolderHandles? tags)
        {
            foreach (string folder in Folders.Select(name => Path.Combine(full, name))
                .Concat(fanOutNames.Select(name => Path.Combine(full, ChunkStore.FolderName, name))))
            {
                string? found = DescribeIfNotAFolder(folder, tags);
                if (found != null)
                {
                    throw new VmQuiesceException("RepositoryLayoutUnsafe", FailureKind.SecurityError,
                        $"'{folder}' in the repository '{full}' is {found}, not a folder; VmQuiesce neither writes nor deletes through it.", folder)
                    {
                        Remedy = $"Find out who made it (a repository writable by others can be turned against the host), replace it by a real folder, and restrict '{full}' to root (chmod 700).",
                    };
                }
            }
        }

        /// <summary>
        /// Who other than root (or this user) could change <paramref name="full"/> (a file or folder of the repository),
        /// or null: its owner, write access for its group or others, on Windows write access for everyone, all
        /// authenticated users or all users. A file someone else can change is no more than their word.
        /// </summary>
        public static string? DescribeOthersWrite(string full) => FindOthersAccess(full, WindowsWriteData, GroupOrOtherWrite) switch
        {
            (string group, _, _) => $"{group} can write '{full}'",
            (_, uint owner, _) => $"'{full}' belongs to user id {owner}",
            (_, _, int mode) => $"'{full}' has mode {Octal(mode)}, writable by its group or others",
            _ => null,
        };

        /// <summary>
        /// Why other users can read or change the repository (a folder wider than 0700 or owned by someone else;
        /// on Windows, read access for Users, Authenticated Users or Everyone), or null when they cannot.
        /// </summary>
        public static string? DescribeWideAccess(string full) => FindOthersAccess(full, WindowsReadData, GroupOrOtherAny) switch
        {
            (string group, _, _) => $"{group} can read '{full}', and so every guest's disks from its chunks",
            (_, uint owner, _) => $"'{full}' belongs to user id {owner}, who can read every guest's disks from its chunks and change anything in it",
            (_, _, int mode) => $"'{full}' has mode {Octal(mode)}: other local users can read every guest's disks from its chunks",
            _ => null,
        };

        /// <summary>
        /// What gives users other than root (or this user) access to <paramref name="full"/>: on Windows a group of
        /// every user holding one of <paramref name="windowsRights"/>; elsewhere an owner of theirs, or one of
        /// <paramref name="unixPermissions"/> in its mode. Null when nothing does (or it does not exist).
        /// </summary>
        private static (string? Group, uint? Owner, int? Mode)? FindOthersAccess(string full, int windowsRights, int unixPermissions)
        {
            if (HostPlatform.IsWindows)
            {
                foreach ((string sid, string name) in BroadWindowsGroups)
                {
                    if ((WindowsSecurity.EffectiveRights(full, WindowsSecurity.StringToSid(sid)) & windowsRights) != 0)
                    {
                        return (name, null, null);
                    }
                }

                return null;
            }

            FileStatus? status = RegularFile.StatNoFollow(full);
            if (status == null)
            {
                return null;
            }

            if (status.Value.Uid != 0 && status.Value.Uid != Libc.geteuid())
            {
                return (null, status.Value.Uid, null);
            }

            return (status.Value.Permissions & unixPermissions) != 0 ? (null, null, status.Value.Permissions) : ((string?, uint?, int?)?)null;
        }

        private static string Octal(int mode) => Convert.ToString(mode, 8).PadLeft(4, '0');

        /// <summary>
        /// Removes a repository that was just made and holds no restore point and no chunk, folders only (never
        /// recursively, so nothing it does not know is deleted); the repository folder itself only when
        /// <paramref name="removeFolder"/>. False when something unexpected is inside.
        /// </summary>
        public static bool RemoveEmpty(string full, bool removeFolder, IEnumerable<string> fanOutNames, IFolderHandles? tags)
        {
            string chunks = Path.Combine(full, ChunkStore.FolderName);
            try
            {
                File.Delete(Path.Combine(full, BackupRepository.MarkerName));
                foreach (string fanOut in fanOutNames)
                {
                    RemoveFolderIfThere(Path.Combine(chunks, fanOut), tags);
                }

                foreach (string folder in Folders)
                {
                    RemoveFolderIfThere(Path.Combine(full, folder), tags);
                }

                if (removeFolder)
                {
                    Directory.Delete(full, recursive: false);
                }

                return true;
            }
            catch (IOException)
            {
                // Not empty: a backup that started meanwhile, or files someone put there. They stay.
                return false;
            }
        }

        private static void RemoveFolderIfThere(string folder, IFolderHandles? tags)
        {
            if (Directory.Exists(folder) && DescribeIfNotAFolder(folder, tags) == null)
            {
                Directory.Delete(folder, recursive: false);
            }
        }

        /// <summary>
        /// What <paramref name="folder"/> is when it is no real folder: a file, a link; null when it is one, or nothing is there.
        /// Linux: as lstat says. With <paramref name="tags"/> (Windows) a link is a reparse point that redirects the name, read from
        /// its own handle (<see cref="ReparsePoints.RedirectionByPath"/>); macOS: any symbolic link.
        /// </summary>
        private static string? DescribeIfNotAFolder(string folder, IFolderHandles? tags)
        {
            if (tags == null && HostPlatform.IsLinux)
            {
                FileStatus? status = RegularFile.StatNoFollow(folder);
                return status == null || status.Value.IsDirectory ? null : status.Value.KindName;
            }

            if (!Directory.Exists(folder))
            {
                return File.Exists(folder) ? "a file" : null;
            }

            return ReparsePoints.RedirectionByPath(folder, tags);
        }

        private static bool IsEmptyLayoutFolder(string folder, bool isChunks, IFolderHandles? tags)
        {
            if (DescribeIfNotAFolder(folder, tags) != null || !Directory.Exists(folder))
            {
                return false;
            }

            foreach (string entry in Directory.EnumerateFileSystemEntries(folder))
            {
                string name = Path.GetFileName(entry);
                bool emptyFanOut = isChunks && name.Length == 2 && name.All(Uri.IsHexDigit) && char.ToLowerInvariant(name[0]) == name[0] && char.ToLowerInvariant(name[1]) == name[1]
                    && DescribeIfNotAFolder(entry, tags) == null && Directory.Exists(entry) && !Directory.EnumerateFileSystemEntries(entry).Any();
                if (!emptyFanOut)
                {
                    return false;
                }
            }

            return true;
        }

        private static bool IsMarkerTemp(string name) => name.StartsWith(ChunkStore.TempPrefix + BackupRepository.MarkerName, StringComparison.Ordinal);

        private static string Printable(string text) => new string(text.Select(c => char.IsControl(c) ? '?' : c).ToArray());
    }
}
