namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Which Windows reparse points lead elsewhere: one rule for every folder VmQuiesce checks on the way to one it acts on
    /// (a VM folder it grants access to, a folder it writes new files into), read from the entry's own handle.
    /// </summary>
    internal static class ReparsePoints
    {
        /// <summary>FILE_ATTRIBUTE_DIRECTORY.</summary>
        public const uint DirectoryAttribute = 0x10;

        /// <summary>FILE_ATTRIBUTE_REPARSE_POINT.</summary>
        public const uint ReparsePointAttribute = 0x400;

        /// <summary>The name surrogate bit of a reparse tag (IsReparseTagNameSurrogate).</summary>
        private const uint NameSurrogateBit = 0x20000000;

        /// <summary>
        /// Whether an entry with these attributes and reparse tag stands for another named entity, so that a path through it
        /// leads elsewhere: junctions and volume mount points (IO_REPARSE_TAG_MOUNT_POINT), symbolic links, WSL and container
        /// links. Other tags keep the folder where it is, its contents stored or fetched otherwise: OneDrive and other cloud
        /// placeholders (IO_REPARSE_TAG_CLOUD_*), deduplication, projected file systems. Those folders count as any other.
        /// </summary>
        public static bool RedirectsName(uint attributes, uint reparseTag) => (attributes & ReparsePointAttribute) != 0 && (reparseTag & NameSurrogateBit) != 0;

        /// <summary>What such an entry is, for messages.</summary>
        public static string Describe(uint reparseTag) => $"a junction, symbolic link, volume mount point or other name surrogate (reparse tag 0x{reparseTag:X8})";
    }
}
