using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>
    /// The Windows reparse tags every check of <c>ReparsePoints.RedirectsName</c> is tried with, at each place that checks: one
    /// list of what leads elsewhere and one of what keeps its name, so every path is held to the same tags.
    /// </summary>
    public static class ReparseTags
    {
        /// <summary>Junctions and volume mount points, symbolic links, WSL and container links, tombstones, and a third party's name surrogate.</summary>
        public static TheoryData<uint> RedirectingTheName => new TheoryData<uint>
        {
            0xA0000003u, // IO_REPARSE_TAG_MOUNT_POINT
            0xA000000Cu, // IO_REPARSE_TAG_SYMLINK
            0xA0000010u, // IO_REPARSE_TAG_IIS_CACHE
            0xA0000019u, // IO_REPARSE_TAG_GLOBAL_REPARSE
            0xA000001Du, // IO_REPARSE_TAG_LX_SYMLINK
            0xA000001Fu, // IO_REPARSE_TAG_WCI_TOMBSTONE
            0xA0000022u, // IO_REPARSE_TAG_PROJFS_TOMBSTONE
            0xA0000027u, // IO_REPARSE_TAG_WCI_LINK
            0xA0001027u, // IO_REPARSE_TAG_WCI_LINK_1
            0x2000ABCDu, // not Microsoft's, name surrogate bit set
        };

        /// <summary>Cloud placeholders (OneDrive and the like), deduplication, WOF compression, container layers, projected, synced and DFS folders, HSM.</summary>
        public static TheoryData<uint> KeepingTheName => new TheoryData<uint>
        {
            0x9000001Au, // IO_REPARSE_TAG_CLOUD
            0x9000101Au, // IO_REPARSE_TAG_CLOUD_1 .. _F
            0x9000201Au,
            0x9000301Au,
            0x9000401Au,
            0x9000501Au,
            0x9000601Au,
            0x9000701Au,
            0x9000801Au,
            0x9000901Au,
            0x9000A01Au,
            0x9000B01Au,
            0x9000C01Au,
            0x9000D01Au,
            0x9000E01Au,
            0x9000F01Au,
            0x80000021u, // IO_REPARSE_TAG_ONEDRIVE
            0x80000013u, // IO_REPARSE_TAG_DEDUP
            0x80000017u, // IO_REPARSE_TAG_WOF
            0x80000018u, // IO_REPARSE_TAG_WCI
            0x90001018u, // IO_REPARSE_TAG_WCI_1
            0x9000001Cu, // IO_REPARSE_TAG_PROJFS
            0x90000027u, // IO_REPARSE_TAG_STORAGE_SYNC_FOLDER
            0x8000000Au, // IO_REPARSE_TAG_DFS
            0xC0000004u, // IO_REPARSE_TAG_HSM
        };
    }
}
