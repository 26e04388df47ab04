using System;
using System.IO;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Which Windows reparse points lead elsewhere: one rule for every entry VmQuiesce checks before it acts on it or goes
    /// through it (a VM folder it grants access to, a folder it writes new files into, a repository's folders and files),
    /// read from the entry's own handle.
    /// </summary>
    internal static class ReparsePoints
    {
        /// <summary>FILE_ATTRIBUTE_DIRECTORY.</summary>
        public const uint DirectoryAttribute = 0x10;

        /// <summary>FILE_ATTRIBUTE_REPARSE_POINT.</summary>
        public const uint ReparsePointAttribute = 0x400;

        /// <summary>FILE_READ_ATTRIBUTES: enough to read an entry's reparse tag, and an open no share mode binds.</summary>
        public const uint ReadAttributes = 0x0080;

        /// <summary>The name surrogate bit of a reparse tag (IsReparseTagNameSurrogate).</summary>
        private const uint NameSurrogateBit = 0x20000000;

        /// <summary>The handle layer that reads reparse tags on this host: Windows has one; Linux and macOS have no tags.</summary>
        public static readonly IFolderHandles? ThisHostsTags = HostPlatform.IsWindows ? new WindowsFolderHandles() : null;

        /// <summary>
        /// Whether an entry with these attributes and reparse tag stands for another named entity, so that a path through it
        /// leads elsewhere: junctions and volume mount points (IO_REPARSE_TAG_MOUNT_POINT), symbolic links, WSL and container
        /// links. Other tags keep the entry where it is, its contents stored or fetched otherwise: OneDrive and other cloud
        /// placeholders (IO_REPARSE_TAG_CLOUD_*), deduplication, WOF compression, projected file systems. Those files and
        /// folders count as any other.
        /// </summary>
        public static bool RedirectsName(uint attributes, uint reparseTag) => (attributes & ReparsePointAttribute) != 0 && (reparseTag & NameSurrogateBit) != 0;

        /// <summary>IO_REPARSE_TAG_MOUNT_POINT: a junction, or a volume mounted on a folder.</summary>
        private const uint MountPointTag = 0xA0000003;

        /// <summary>IO_REPARSE_TAG_SYMLINK.</summary>
        private const uint SymbolicLinkTag = 0xA000000C;

        /// <summary>IO_REPARSE_TAG_LX_SYMLINK: a symbolic link made in WSL.</summary>
        private const uint WslSymbolicLinkTag = 0xA000001D;

        /// <summary>What such an entry is, for messages: its kind where the tag is a common one, and the tag.</summary>
        public static string Describe(uint reparseTag)
        {
            string kind = reparseTag switch
            {
                MountPointTag => "a junction or volume mount point",
                SymbolicLinkTag => "a symbolic link",
                WslSymbolicLinkTag => "a WSL symbolic link",
                _ => "a link of another kind (a name surrogate)",
            };
            return $"{kind} (reparse tag 0x{reparseTag:X8})";
        }

        /// <summary>
        /// What the entry at <paramref name="path"/> is when a path through it leads elsewhere; null when it does not, or
        /// nothing is there. On Windows (<paramref name="tags"/>, its handle layer) its own handle's reparse tag decides
        /// (<see cref="RedirectsName"/>); Linux and macOS (null) have no tags: every symbolic link leads elsewhere.
        /// </summary>
        public static string? RedirectionByPath(string path, IFolderHandles? tags)
        {
            if (tags == null)
            {
                return HasReparsePointAttribute(path) ? "a symbolic link" : null;
            }

            using IFolderHandle? entry = tags.Open(path, ReadAttributes);
            return entry != null && RedirectsName(entry.Attributes, entry.ReparseTag) ? Describe(entry.ReparseTag) : null;
        }

        /// <summary><see cref="RedirectionByPath(string, IFolderHandles?)"/> as this host reads it (<see cref="ThisHostsTags"/>).</summary>
        public static string? RedirectionByPath(string path) => RedirectionByPath(path, ThisHostsTags);

        /// <summary>Whether something is at <paramref name="path"/> that .NET calls a reparse point: on Unix a symbolic link, on Windows any reparse point.</summary>
        public static bool HasReparsePointAttribute(string path)
        {
            try
            {
                return (File.GetAttributes(path) & FileAttributes.ReparsePoint) != 0;
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                return false;
            }
        }
    }
}
