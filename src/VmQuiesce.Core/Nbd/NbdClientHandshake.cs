using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>What the handshake settled: the export, its size and flags, and the selected metadata contexts.</summary>
    internal sealed class NbdNegotiated
    {
        public NbdNegotiated(string exportName, long size, NbdExportFlags flags, NbdBlockSizes blockSizes, bool structuredReplies, IReadOnlyList<NbdSelectedContext> contexts)
        {
            ExportName = exportName;
            Size = size;
            Flags = flags;
            BlockSizes = blockSizes;
            StructuredReplies = structuredReplies;
            Contexts = contexts;
        }

        public string ExportName { get; }

        public long Size { get; }

        public NbdExportFlags Flags { get; }

        public NbdBlockSizes BlockSizes { get; }

        public bool StructuredReplies { get; }

        /// <summary>Context id (as the server numbered it) to name.</summary>
        public IReadOnlyList<NbdSelectedContext> Contexts { get; }
    }

    /// <summary>
    /// The client side of fixed newstyle negotiation: NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT,
    /// NBD_OPT_GO (or NBD_OPT_LIST_META_CONTEXT then NBD_OPT_ABORT). Every length the server sends is
    /// bounded before anything is allocated for it; any violation is a <see cref="NbdProtocolViolation"/>.
    /// </summary>
    /// <summary>A metadata context the server selected: the id its block status chunks carry, and its name.</summary>
    internal sealed class NbdSelectedContext
    {
        public NbdSelectedContext(uint id, string name)
        {
            Id = id;
            Name = name;
        }

        public uint Id { get; }

        public string Name { get; }
    }

    internal sealed class NbdClientHandshake
    {
        /// <summary>Longest option reply accepted: a context or export name and a description fit in 4096 bytes each.</summary>
        private const int MaxOptionReplyLength = 3 * NbdProtocol.MaxStringBytes;

        /// <summary>Most replies to one option (one per context, or per piece of export information); more is not an honest answer.</summary>
        private const int MaxRepliesPerOption = 1024;

        private readonly NbdStream _stream;
        private readonly string _server;
        private readonly byte[] _header = new byte[NbdProtocol.OptionReplyHeaderLength];
        private bool _noZeroes;

        public NbdClientHandshake(NbdStream stream, string server)
        {
            _stream = stream;
            _server = server;
        }

        public NbdNegotiated Negotiate(string exportName, IList<string> metaContexts)
        {
            Greet();
            bool structured = NegotiateStructuredReplies();
            var contexts = new List<NbdSelectedContext>();
            if (metaContexts.Count > 0)
            {
                if (!structured)
                {
                    throw new VmQuiesceException("NbdMetaContextUnavailable", FailureKind.NotSupported,
                        $"The NBD server at {_server} does not support structured replies, so it cannot report block status ({string.Join(", ", metaContexts)}).", _server);
                }

                foreach (NbdSelectedContext context in SelectContexts(NbdProtocol.OptSetMetaContext, exportName, metaContexts))
                {
                    if (!metaContexts.Contains(context.Name))
                    {
                        throw new NbdProtocolViolation($"it selected the metadata context '{context.Name}', which was not asked for");
                    }

                    if (contexts.Any(c => c.Id == context.Id || c.Name == context.Name))
                    {
                        throw new NbdProtocolViolation($"it selected metadata context id {context.Id} ('{context.Name}') twice");
                    }

                    contexts.Add(context);
                }

                string[] missing = metaContexts.Where(name => !contexts.Any(c => c.Name == name)).ToArray();
                if (missing.Length > 0)
                {
                    throw new VmQuiesceException("NbdMetaContextUnavailable", FailureKind.ObjectNotFound,
                        $"The NBD export '{exportName}' at {_server} does not offer the metadata context(s) {string.Join(", ", missing.Select(m => "'" + m + "'"))}" +
                        (contexts.Count > 0 ? $"; it selected {string.Join(", ", contexts.Select(c => c.Name))}." : "."), exportName)
                    {
                        Remedy = "For a QEMU dirty bitmap, export it with the export (block-export-add bitmaps, qemu-nbd -B).",
                    };
                }
            }

            (long size, NbdExportFlags flags, NbdBlockSizes blockSizes) = Go(exportName);
            return new NbdNegotiated(exportName, size, flags, blockSizes, structured, contexts);
        }

        /// <summary>Lists the contexts matching <paramref name="queries"/> (all, when empty), then ends the session politely.</summary>
        public IReadOnlyList<string> ListContexts(string exportName, IList<string> queries)
        {
            Greet();
            if (!NegotiateStructuredReplies())
            {
                return Array.Empty<string>();
            }

            var names = SelectContexts(NbdProtocol.OptListMetaContext, exportName, queries).Select(c => c.Name).ToList();
            SendOption(NbdProtocol.OptAbort, Array.Empty<byte>());
            return names;
        }

        private void Greet()
        {
            var greeting = new byte[18];
            _stream.ReadExact(greeting, 0, 16);
            if (BigEndianBytes.ReadUInt64(greeting, 0) != NbdProtocol.InitMagic)
            {
                throw new NbdProtocolViolation("it does not greet as an NBD server (no NBDMAGIC)");
            }

            ulong style = BigEndianBytes.ReadUInt64(greeting, 8);
            if (style == NbdProtocol.OldstyleMagic)
            {
                throw new NbdProtocolViolation("it uses the oldstyle handshake, which has no export names or options (withdrawn from the protocol)");
            }

            if (style != NbdProtocol.OptionMagic)
            {
                throw new NbdProtocolViolation(string.Format(CultureInfo.InvariantCulture, "its greeting has the unknown magic 0x{0:x16}", style));
            }

            _stream.ReadExact(greeting, 16, 2);
            ushort flags = BigEndianBytes.ReadUInt16(greeting, 16);
            if ((flags & NbdProtocol.FlagFixedNewstyle) == 0)
            {
                throw new NbdProtocolViolation("it does not offer fixed newstyle negotiation, which NBD_OPT_GO needs");
            }

            _noZeroes = (flags & NbdProtocol.FlagNoZeroes) != 0;
            var clientFlags = new byte[4];
            BigEndianBytes.Write(clientFlags, 0, NbdProtocol.ClientFlagFixedNewstyle | (_noZeroes ? NbdProtocol.ClientFlagNoZeroes : 0u));
            _stream.Write(clientFlags, 0, 4);
        }

        private bool NegotiateStructuredReplies()
        {
            SendOption(NbdProtocol.OptStructuredReply, Array.Empty<byte>());
            (uint type, byte[] data) = ReadOptionReply(NbdProtocol.OptStructuredReply);
            if (type == NbdProtocol.RepAck)
            {
                return true;
            }

            if (type == NbdProtocol.RepErrUnsupported)
            {
                return false;
            }

            throw RefusedOption(NbdProtocol.OptStructuredReply, type, data, string.Empty);
        }

        private List<NbdSelectedContext> SelectContexts(uint option, string exportName, IList<string> queries)
        {
            var message = new NbdMessageWriter().LengthPrefixed(exportName).UInt32((uint)queries.Count);
            foreach (string query in queries)
            {
                message.LengthPrefixed(query);
            }

            SendOption(option, message.ToArray());
            var contexts = new List<NbdSelectedContext>();
            while (true)
            {
                (uint type, byte[] data) = ReadOptionReply(option);
                if (type == NbdProtocol.RepAck)
                {
                    return contexts;
                }

                if (type != NbdProtocol.RepMetaContext)
                {
                    throw RefusedOption(option, type, data, exportName);
                }

                if (contexts.Count >= MaxRepliesPerOption)
                {
                    throw new NbdProtocolViolation($"it sent more than {MaxRepliesPerOption} metadata contexts");
                }

                var reader = new NbdMessageReader(data);
                uint id = reader.UInt32("metadata context id");
                contexts.Add(new NbdSelectedContext(id, reader.RestAsString("metadata context name")));
            }
        }

        private (long Size, NbdExportFlags Flags, NbdBlockSizes BlockSizes) Go(string exportName)
        {
            byte[] message = new NbdMessageWriter().LengthPrefixed(exportName).UInt16(1).UInt16(NbdProtocol.InfoBlockSize).ToArray();
            SendOption(NbdProtocol.OptGo, message);
            long? size = null;
            var flags = NbdExportFlags.None;
            var blockSizes = new NbdBlockSizes(1, 4096, NbdProtocol.MaxReadLength);
            for (int replies = 0; ; replies++)
            {
                (uint type, byte[] data) = ReadOptionReply(NbdProtocol.OptGo);
                if (type == NbdProtocol.RepAck)
                {
                    break;
                }

                if (type != NbdProtocol.RepInfo)
                {
                    throw RefusedOption(NbdProtocol.OptGo, type, data, exportName);
                }

                if (replies >= MaxRepliesPerOption)
                {
                    throw new NbdProtocolViolation($"it sent more than {MaxRepliesPerOption} NBD_REP_INFO replies");
                }

                var reader = new NbdMessageReader(data);
                ushort info = reader.UInt16("information type");
                if (info == NbdProtocol.InfoExport)
                {
                    ulong exportSize = reader.UInt64("export size");
                    flags = (NbdExportFlags)reader.UInt16("transmission flags");
                    reader.ExpectEnd("NBD_INFO_EXPORT");
                    if (exportSize > long.MaxValue)
                    {
                        throw new NbdProtocolViolation($"it announced an export size of {exportSize} bytes, more than 2^63 - 1");
                    }

                    size = (long)exportSize;
                }
                else if (info == NbdProtocol.InfoBlockSize)
                {
                    blockSizes = new NbdBlockSizes(reader.UInt32("minimum block size"), reader.UInt32("preferred block size"), reader.UInt32("maximum block size"));
                    reader.ExpectEnd("NBD_INFO_BLOCK_SIZE");
                    CheckBlockSizes(blockSizes);
                }

                // Other information (name, description) is not needed; unknown types must be ignored.
            }

            if (size == null)
            {
                throw new NbdProtocolViolation("it accepted NBD_OPT_GO without sending NBD_INFO_EXPORT (the export's size and flags)");
            }

            return (size.Value, flags, blockSizes);
        }

        private static void CheckBlockSizes(NbdBlockSizes sizes)
        {
            if (!NbdProtocol.IsPowerOfTwo(sizes.Minimum) || sizes.Minimum > 64 * 1024)
            {
                throw new NbdProtocolViolation($"its minimum block size {sizes.Minimum} is not a power of 2 up to 64 KiB");
            }

            if (!NbdProtocol.IsPowerOfTwo(sizes.Preferred) || sizes.Preferred < sizes.Minimum)
            {
                throw new NbdProtocolViolation($"its preferred block size {sizes.Preferred} is not a power of 2 at least the minimum {sizes.Minimum}");
            }

            if (sizes.Maximum < sizes.Minimum || (sizes.Maximum != uint.MaxValue && sizes.Maximum % sizes.Minimum != 0))
            {
                throw new NbdProtocolViolation($"its maximum block size {sizes.Maximum} is not a multiple of the minimum {sizes.Minimum}");
            }
        }

        private void SendOption(uint option, byte[] data)
        {
            var message = new byte[NbdProtocol.OptionHeaderLength + data.Length];
            BigEndianBytes.Write(message, 0, NbdProtocol.OptionMagic);
            BigEndianBytes.Write(message, 8, option);
            BigEndianBytes.Write(message, 12, (uint)data.Length);
            Buffer.BlockCopy(data, 0, message, NbdProtocol.OptionHeaderLength, data.Length);
            _stream.Write(message, 0, message.Length);
        }

        private (uint Type, byte[] Data) ReadOptionReply(uint option)
        {
            _stream.ReadExact(_header, 0, _header.Length);
            if (BigEndianBytes.ReadUInt64(_header, 0) != NbdProtocol.OptionReplyMagic)
            {
                throw new NbdProtocolViolation($"its reply to {NbdProtocol.OptionName(option)} does not start with the option reply magic");
            }

            uint repliedTo = BigEndianBytes.ReadUInt32(_header, 8);
            if (repliedTo != option)
            {
                throw new NbdProtocolViolation($"it answered {NbdProtocol.OptionName(repliedTo)} when {NbdProtocol.OptionName(option)} was asked");
            }

            uint type = BigEndianBytes.ReadUInt32(_header, 12);
            uint length = BigEndianBytes.ReadUInt32(_header, 16);
            if (length > MaxOptionReplyLength)
            {
                throw new NbdProtocolViolation($"its reply to {NbdProtocol.OptionName(option)} claims {length} bytes; at most {MaxOptionReplyLength} are expected");
            }

            var data = new byte[length];
            _stream.ReadExact(data, 0, data.Length);
            return (type, data);
        }

        private Exception RefusedOption(uint option, uint type, byte[] data, string exportName)
        {
            if ((type & NbdProtocol.RepErrorBit) == 0)
            {
                return new NbdProtocolViolation($"it answered {NbdProtocol.OptionName(option)} with the unexpected reply type {type}");
            }

            string detail = string.Empty;
            try
            {
                detail = new NbdMessageReader(data).RestAsString("error message");
            }
            catch (FormatException)
            {
                // A message that is not valid text is left out; the error code says enough.
            }

            string said = detail.Length > 0 ? $": \"{detail}\"" : string.Empty;
            if (type == NbdProtocol.RepErrUnknown)
            {
                return new VmQuiesceException("NbdExportNotFound", FailureKind.ObjectNotFound,
                    $"The NBD server at {_server} has no export named '{exportName}'{said}.", exportName);
            }

            return new VmQuiesceException("NbdNegotiationFailed", FailureKind.ConnectionError,
                $"The NBD server at {_server} refused {NbdProtocol.OptionName(option)} with {NbdProtocol.OptionErrorName(type)}{said}.", _server);
        }
    }

    /// <summary>A peer broke the protocol; the message says how ("it sent ..."). The caller names the peer.</summary>
    internal sealed class NbdProtocolViolation : Exception
    {
        public NbdProtocolViolation(string message)
            : base(message)
        {
        }
    }
}
