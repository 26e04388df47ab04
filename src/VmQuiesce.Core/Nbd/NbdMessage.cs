using System;
using System.IO;
using System.Text;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>Builds one big-endian message (an option, an option reply, a reply chunk's payload).</summary>
    internal sealed class NbdMessageWriter
    {
        private readonly MemoryStream _buffer = new MemoryStream();
        private readonly byte[] _scratch = new byte[8];

        public int Length => (int)_buffer.Length;

        public NbdMessageWriter UInt16(ushort value)
        {
            BigEndianBytes.Write(_scratch, 0, value);
            _buffer.Write(_scratch, 0, 2);
            return this;
        }

        public NbdMessageWriter UInt32(uint value)
        {
            BigEndianBytes.Write(_scratch, 0, value);
            _buffer.Write(_scratch, 0, 4);
            return this;
        }

        public NbdMessageWriter UInt64(ulong value)
        {
            BigEndianBytes.Write(_scratch, 0, value);
            _buffer.Write(_scratch, 0, 8);
            return this;
        }

        public NbdMessageWriter Bytes(byte[] value)
        {
            _buffer.Write(value, 0, value.Length);
            return this;
        }

        /// <summary>A string preceded by its 32-bit byte length.</summary>
        public NbdMessageWriter LengthPrefixed(string value)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(value);
            return UInt32((uint)bytes.Length).Bytes(bytes);
        }

        public byte[] ToArray() => _buffer.ToArray();
    }

    /// <summary>
    /// Reads fields from one received message, never past its end: a field that does not fit is a
    /// <see cref="FormatException"/> naming the field, which the caller turns into a protocol error.
    /// </summary>
    internal sealed class NbdMessageReader
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        private readonly byte[] _data;
        private readonly int _end;
        private int _position;

        public NbdMessageReader(byte[] data, int offset = 0, int? count = null)
        {
            _data = data;
            _position = offset;
            _end = offset + (count ?? data.Length - offset);
        }

        public int Remaining => _end - _position;

        public ushort UInt16(string field)
        {
            Need(2, field);
            ushort value = BigEndianBytes.ReadUInt16(_data, _position);
            _position += 2;
            return value;
        }

        public uint UInt32(string field)
        {
            Need(4, field);
            uint value = BigEndianBytes.ReadUInt32(_data, _position);
            _position += 4;
            return value;
        }

        public ulong UInt64(string field)
        {
            Need(8, field);
            ulong value = BigEndianBytes.ReadUInt64(_data, _position);
            _position += 8;
            return value;
        }

        /// <summary>A UTF-8 string of <paramref name="length"/> bytes, at most the protocol's 4096, without NUL.</summary>
        public string String(long length, string field)
        {
            if (length > NbdProtocol.MaxStringBytes)
            {
                throw new FormatException($"the {field} is {length} bytes; the protocol allows at most {NbdProtocol.MaxStringBytes}");
            }

            Need(length, field);
            string value;
            try
            {
                value = StrictUtf8.GetString(_data, _position, (int)length);
            }
            catch (ArgumentException)
            {
                throw new FormatException($"the {field} is not valid UTF-8");
            }

            if (value.IndexOf('\0') >= 0)
            {
                throw new FormatException($"the {field} contains a NUL character");
            }

            _position += (int)length;
            return value;
        }

        public string LengthPrefixedString(string field) => String(UInt32(field + " length"), field);

        /// <summary>The rest of the message as a string (the name in NBD_REP_META_CONTEXT, an error message).</summary>
        public string RestAsString(string field) => String(Remaining, field);

        public void ExpectEnd(string what)
        {
            if (_position != _end)
            {
                throw new FormatException($"{what} has {_end - _position} byte(s) more than its fields");
            }
        }

        private void Need(long count, string field)
        {
            if (count > _end - _position)
            {
                throw new FormatException($"the {field} does not fit in the message ({_end - _position} byte(s) left, {count} needed)");
            }
        }
    }
}
