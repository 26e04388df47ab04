using System;

namespace VmQuiesce.Core.Json
{
    /// <summary>
    /// Base64 (RFC 4648, padded, no line breaks) written as ASCII bytes straight into a buffer, as
    /// <see cref="Convert.ToBase64String(byte[])"/> writes it as text, and read back from one. A sealed manifest's megabyte
    /// goes into its file's bytes and back with no string in between, and through code compiled ahead of time: the
    /// framework's vectorised coders are generic code that the runtime compiles, unoptimised at first, in the middle of
    /// the backup that needs them.
    /// </summary>
    internal static class Base64Ascii
    {
        private const byte NotInAlphabet = 0xFF;

        private static readonly byte[] Alphabet = System.Text.Encoding.ASCII.GetBytes("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

        /// <summary>Each byte's place in <see cref="Alphabet"/>; <see cref="NotInAlphabet"/> for a byte that is not in it.</summary>
        private static readonly byte[] Values = ValuesOf(Alphabet);

        /// <summary>How many bytes <paramref name="count"/> bytes take encoded.</summary>
        public static int EncodedLength(int count) => checked(((count + 2) / 3) * 4);

        /// <summary>Encodes <paramref name="source"/>[0..<paramref name="count"/>) into <paramref name="destination"/> from <paramref name="offset"/>; returns the bytes written.</summary>
        public static int Encode(byte[] source, int count, byte[] destination, int offset)
        {
            if (count < 0 || count > source.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(count));
            }

            if (offset < 0 || destination.Length - offset < EncodedLength(count))
            {
                throw new ArgumentException($"The destination holds {destination.Length - offset} bytes from offset {offset}; {EncodedLength(count)} are needed.", nameof(destination));
            }

            byte[] alphabet = Alphabet;
            int at = offset;
            int whole = count - (count % 3);
            for (int i = 0; i < whole; i += 3)
            {
                int triple = (source[i] << 16) | (source[i + 1] << 8) | source[i + 2];
                destination[at] = alphabet[triple >> 18];
                destination[at + 1] = alphabet[(triple >> 12) & 63];
                destination[at + 2] = alphabet[(triple >> 6) & 63];
                destination[at + 3] = alphabet[triple & 63];
                at += 4;
            }

            if (whole < count)
            {
                int rest = source[whole] << 16;
                bool two = count - whole == 2;
                if (two)
                {
                    rest |= source[whole + 1] << 8;
                }

                destination[at] = alphabet[rest >> 18];
                destination[at + 1] = alphabet[(rest >> 12) & 63];
                destination[at + 2] = two ? alphabet[(rest >> 6) & 63] : (byte)'=';
                destination[at + 3] = (byte)'=';
                at += 4;
            }

            return at - offset;
        }

        /// <summary>
        /// Decodes the Base64 in <paramref name="buffer"/>[<paramref name="start"/>..+<paramref name="length"/>) to
        /// <paramref name="buffer"/> from <paramref name="destination"/> (at most <paramref name="start"/>: the bytes are
        /// written behind the ones still to be read). Only what <see cref="Encode"/> writes is taken: whole groups of four,
        /// '=' only as padding, no unused bits set. For anything else it returns false having changed nothing, so the
        /// caller can read the text another way.
        /// </summary>
        public static bool TryDecodeInPlace(byte[] buffer, int start, int length, int destination, out int written)
        {
            if (start < 0 || length < 0 || buffer.Length - start < length || destination < 0 || destination > start)
            {
                throw new ArgumentOutOfRangeException(nameof(start), $"Expected a range of the buffer and a destination at or before it; got {start}+{length} of {buffer.Length}, to {destination}.");
            }

            written = 0;
            byte[] values = Values;
            int padding = length >= 4 && buffer[start + length - 1] == '=' ? (buffer[start + length - 2] == '=' ? 2 : 1) : 0;
            int data = length - padding;
            if (length % 4 != 0)
            {
                return false;
            }

            for (int i = start; i < start + data; i++)
            {
                if (values[buffer[i]] == NotInAlphabet)
                {
                    return false;
                }
            }

            // The last group's unused low bits are zero in what Encode writes.
            if ((padding == 1 && (values[buffer[start + data - 1]] & 3) != 0) || (padding == 2 && (values[buffer[start + data - 1]] & 15) != 0))
            {
                return false;
            }

            int at = destination;
            int whole = start + length - (padding > 0 ? 4 : 0);
            for (int i = start; i < whole; i += 4)
            {
                int quad = (values[buffer[i]] << 18) | (values[buffer[i + 1]] << 12) | (values[buffer[i + 2]] << 6) | values[buffer[i + 3]];
                buffer[at] = (byte)(quad >> 16);
                buffer[at + 1] = (byte)(quad >> 8);
                buffer[at + 2] = (byte)quad;
                at += 3;
            }

            if (padding > 0)
            {
                int quad = (values[buffer[whole]] << 18) | (values[buffer[whole + 1]] << 12) | (padding == 1 ? values[buffer[whole + 2]] << 6 : 0);
                buffer[at++] = (byte)(quad >> 16);
                if (padding == 1)
                {
                    buffer[at++] = (byte)(quad >> 8);
                }
            }

            written = at - destination;
            return true;
        }

        private static byte[] ValuesOf(byte[] alphabet)
        {
            var values = new byte[256];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = NotInAlphabet;
            }

            for (int i = 0; i < alphabet.Length; i++)
            {
                values[alphabet[i]] = (byte)i;
            }

            return values;
        }
    }
}
