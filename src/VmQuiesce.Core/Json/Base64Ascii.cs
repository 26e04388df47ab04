using System;

namespace VmQuiesce.Core.Json
{
    /// <summary>
    /// Base64 (RFC 4648, padded, no line breaks) written as ASCII bytes straight into a buffer, as
    /// <see cref="Convert.ToBase64String(byte[])"/> writes it as text. A sealed manifest's megabyte goes into its file's bytes
    /// with no string in between, and through code compiled ahead of time: the framework's vectorised encoder is generic
    /// code that the runtime compiles, unoptimised at first, in the middle of the backup that needs it.
    /// </summary>
    internal static class Base64Ascii
    {
        private static readonly byte[] Alphabet = System.Text.Encoding.ASCII.GetBytes("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

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
    }
}
