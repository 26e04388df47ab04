namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// The numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md; QEMU's include/block/nbd.h
    /// names them the same way). Everything on the wire is big-endian.
    /// </summary>
    internal static class NbdProtocol
    {
        public const ulong InitMagic = 0x4e42444d41474943;          // "NBDMAGIC"
        public const ulong OptionMagic = 0x49484156454F5054;        // "IHAVEOPT"
        public const ulong OldstyleMagic = 0x00420281861253;        // cliserv_magic of the withdrawn oldstyle handshake
        public const ulong OptionReplyMagic = 0x3e889045565a9;
        public const uint RequestMagic = 0x25609513;
        public const uint SimpleReplyMagic = 0x67446698;
        public const uint StructuredReplyMagic = 0x668e33ef;

        // Handshake flags (server) and client flags.
        public const ushort FlagFixedNewstyle = 1 << 0;
        public const ushort FlagNoZeroes = 1 << 1;
        public const uint ClientFlagFixedNewstyle = 1 << 0;
        public const uint ClientFlagNoZeroes = 1 << 1;

        // Options.
        public const uint OptExportName = 1;
        public const uint OptAbort = 2;
        public const uint OptList = 3;
        public const uint OptStartTls = 5;
        public const uint OptInfo = 6;
        public const uint OptGo = 7;
        public const uint OptStructuredReply = 8;
        public const uint OptListMetaContext = 9;
        public const uint OptSetMetaContext = 10;

        // Option replies; errors have bit 31 set.
        public const uint RepAck = 1;
        public const uint RepServer = 2;
        public const uint RepInfo = 3;
        public const uint RepMetaContext = 4;
        public const uint RepErrorBit = 1u << 31;
        public const uint RepErrUnsupported = RepErrorBit | 1;
        public const uint RepErrPolicy = RepErrorBit | 2;
        public const uint RepErrInvalid = RepErrorBit | 3;
        public const uint RepErrPlatform = RepErrorBit | 4;
        public const uint RepErrTlsRequired = RepErrorBit | 5;
        public const uint RepErrUnknown = RepErrorBit | 6;
        public const uint RepErrShutdown = RepErrorBit | 7;
        public const uint RepErrBlockSizeRequired = RepErrorBit | 8;
        public const uint RepErrTooBig = RepErrorBit | 9;

        // Information types of NBD_OPT_INFO / NBD_OPT_GO.
        public const ushort InfoExport = 0;
        public const ushort InfoName = 1;
        public const ushort InfoDescription = 2;
        public const ushort InfoBlockSize = 3;

        // Commands.
        public const ushort CmdRead = 0;
        public const ushort CmdWrite = 1;
        public const ushort CmdDisconnect = 2;
        public const ushort CmdFlush = 3;
        public const ushort CmdTrim = 4;
        public const ushort CmdCache = 5;
        public const ushort CmdWriteZeroes = 6;
        public const ushort CmdBlockStatus = 7;

        // Command flags.
        public const ushort CmdFlagFua = 1 << 0;
        public const ushort CmdFlagDontFragment = 1 << 2;
        public const ushort CmdFlagRequestOne = 1 << 3;

        // Structured replies.
        public const ushort ReplyFlagDone = 1 << 0;
        public const ushort ReplyTypeNone = 0;
        public const ushort ReplyTypeOffsetData = 1;
        public const ushort ReplyTypeOffsetHole = 2;
        public const ushort ReplyTypeBlockStatus = 5;
        public const ushort ReplyTypeErrorBit = 1 << 15;
        public const ushort ReplyTypeError = ReplyTypeErrorBit | 1;
        public const ushort ReplyTypeErrorOffset = ReplyTypeErrorBit | 2;

        // Error values (errno numbers the protocol fixes).
        public const uint ErrPermission = 1;
        public const uint ErrIo = 5;
        public const uint ErrNoMemory = 12;
        public const uint ErrInvalid = 22;
        public const uint ErrNoSpace = 28;
        public const uint ErrOverflow = 75;
        public const uint ErrNotSupported = 95;
        public const uint ErrShutdown = 108;

        public const string BaseAllocation = "base:allocation";

        /// <summary>Strings (export names, context names, messages) must be at most 4096 bytes.</summary>
        public const int MaxStringBytes = 4096;

        /// <summary>
        /// The largest read either side sends or serves. QEMU's server and client use the same 32 MiB
        /// (NBD_MAX_BUFFER_SIZE); the protocol lets a server advertise less.
        /// </summary>
        public const int MaxReadLength = 32 * 1024 * 1024;

        public const int RequestHeaderLength = 28;
        public const int SimpleReplyHeaderLength = 16;
        public const int StructuredReplyHeaderLength = 20;
        public const int OptionHeaderLength = 16;
        public const int OptionReplyHeaderLength = 20;

        public static string ErrorName(uint error) => error switch
        {
            ErrPermission => "EPERM (operation not permitted)",
            ErrIo => "EIO (input/output error)",
            ErrNoMemory => "ENOMEM (out of memory)",
            ErrInvalid => "EINVAL (invalid argument)",
            ErrNoSpace => "ENOSPC (no space left)",
            ErrOverflow => "EOVERFLOW (value too large)",
            ErrNotSupported => "ENOTSUP (not supported)",
            ErrShutdown => "ESHUTDOWN (server shutting down)",
            _ => "error " + error,
        };

        public static string CommandName(ushort command) => command switch
        {
            CmdRead => "NBD_CMD_READ",
            CmdWrite => "NBD_CMD_WRITE",
            CmdDisconnect => "NBD_CMD_DISC",
            CmdFlush => "NBD_CMD_FLUSH",
            CmdTrim => "NBD_CMD_TRIM",
            CmdCache => "NBD_CMD_CACHE",
            CmdWriteZeroes => "NBD_CMD_WRITE_ZEROES",
            CmdBlockStatus => "NBD_CMD_BLOCK_STATUS",
            _ => "command " + command,
        };

        public static string OptionName(uint option) => option switch
        {
            OptExportName => "NBD_OPT_EXPORT_NAME",
            OptAbort => "NBD_OPT_ABORT",
            OptList => "NBD_OPT_LIST",
            OptStartTls => "NBD_OPT_STARTTLS",
            OptInfo => "NBD_OPT_INFO",
            OptGo => "NBD_OPT_GO",
            OptStructuredReply => "NBD_OPT_STRUCTURED_REPLY",
            OptListMetaContext => "NBD_OPT_LIST_META_CONTEXT",
            OptSetMetaContext => "NBD_OPT_SET_META_CONTEXT",
            _ => "option " + option,
        };

        public static string OptionErrorName(uint reply) => reply switch
        {
            RepErrUnsupported => "NBD_REP_ERR_UNSUP (not supported)",
            RepErrPolicy => "NBD_REP_ERR_POLICY (refused by policy)",
            RepErrInvalid => "NBD_REP_ERR_INVALID (invalid)",
            RepErrPlatform => "NBD_REP_ERR_PLATFORM (not on this platform)",
            RepErrTlsRequired => "NBD_REP_ERR_TLS_REQD (TLS required)",
            RepErrUnknown => "NBD_REP_ERR_UNKNOWN (no such export)",
            RepErrShutdown => "NBD_REP_ERR_SHUTDOWN (server shutting down)",
            RepErrBlockSizeRequired => "NBD_REP_ERR_BLOCK_SIZE_REQD (block sizes required)",
            RepErrTooBig => "NBD_REP_ERR_TOO_BIG (request too big)",
            _ => "reply type " + reply,
        };

        public static bool IsPowerOfTwo(uint value) => value != 0 && (value & (value - 1)) == 0;
    }
}
