using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace VmQuiesce.Core.Native
{
    /// <summary>
    /// File names as libc takes and gives them: bytes, which are mostly UTF-8 but need not be (a guest's file system
    /// holds whatever its programs wrote). A byte that is not part of valid UTF-8 is carried in a string as the lone
    /// surrogate U+DC80-U+DCFF (Python's "surrogateescape"), so a name read from a folder is written back byte for byte.
    /// .NET's own decoding replaces such bytes with U+FFFD: the name can then not be opened, and two names read alike.
    /// </summary>
    internal static class FileNameText
    {
        private const int EscapedByteBase = 0xDC00;

        /// <summary>The text of the name <paramref name="bytes"/>: UTF-8, with every other byte escaped.</summary>
        public static string Decode(byte[] bytes)
        {
            var text = new StringBuilder(bytes.Length);
            int i = 0;
            while (i < bytes.Length)
            {
                int length = SequenceLength(bytes, i);
                if (length == 0)
                {
                    text.Append((char)(EscapedByteBase + bytes[i]));
                    i++;
                }
                else
                {
                    text.Append(Encoding.UTF8.GetString(bytes, i, length));
                    i += length;
                }
            }

            return text.ToString();
        }

        /// <summary>The bytes of <paramref name="text"/> (without a terminating NUL): UTF-8, escaped bytes as themselves.</summary>
        public static byte[] Encode(string text)
        {
            var bytes = new List<byte>(text.Length + 1);
            int start = 0;
            for (int i = 0; i < text.Length; i++)
            {
                if (IsEscapedByte(text, i))
                {
                    bytes.AddRange(Encoding.UTF8.GetBytes(text.Substring(start, i - start)));
                    bytes.Add((byte)(text[i] - EscapedByteBase));
                    start = i + 1;
                }
            }

            bytes.AddRange(Encoding.UTF8.GetBytes(text.Substring(start)));
            return bytes.ToArray();
        }

        /// <summary>
        /// <paramref name="text"/> fit to show on one line: an escaped byte as \xFF, a control character (a newline in a
        /// name could forge a line of output) or a character that reorders or breaks a line as \n, \t or \u{202E}.
        /// </summary>
        public static string Printable(string text)
        {
            var shown = new StringBuilder(text.Length);
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (IsEscapedByte(text, i))
                {
                    shown.Append("\\x").Append((c - EscapedByteBase).ToString("X2", CultureInfo.InvariantCulture));
                }
                else if (c == '\n')
                {
                    shown.Append("\\n");
                }
                else if (c == '\t')
                {
                    shown.Append("\\t");
                }
                else if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == '\u2028' || c == '\u2029' || c == '\u200E' || c == '\u200F' || (c >= '\u202A' && c <= '\u202E') || (c >= '\u2066' && c <= '\u2069'))
                {
                    shown.Append("\\u{").Append(((int)c).ToString("X", CultureInfo.InvariantCulture)).Append('}');
                }
                else
                {
                    shown.Append(c);
                }
            }

            return shown.ToString();
        }

        /// <summary>A lone U+DC80-U+DCFF (not the second half of a surrogate pair): a byte <see cref="Decode"/> escaped.</summary>
        private static bool IsEscapedByte(string text, int i) =>
            text[i] >= EscapedByteBase + 0x80 && text[i] <= EscapedByteBase + 0xFF && (i == 0 || !char.IsHighSurrogate(text[i - 1]));

        /// <summary>The length of the valid UTF-8 sequence at <paramref name="i"/> (no overlong forms, surrogates or values past U+10FFFF), or 0.</summary>
        private static int SequenceLength(byte[] bytes, int i)
        {
            byte lead = bytes[i];
            if (lead < 0x80)
            {
                return 1;
            }

            (int length, byte low, byte high) = lead switch
            {
                >= 0xC2 and <= 0xDF => (2, (byte)0x80, (byte)0xBF),
                0xE0 => (3, (byte)0xA0, (byte)0xBF),
                0xED => (3, (byte)0x80, (byte)0x9F),
                >= 0xE1 and <= 0xEF => (3, (byte)0x80, (byte)0xBF),
                0xF0 => (4, (byte)0x90, (byte)0xBF),
                >= 0xF1 and <= 0xF3 => (4, (byte)0x80, (byte)0xBF),
                0xF4 => (4, (byte)0x80, (byte)0x8F),
                _ => (0, (byte)0, (byte)0),
            };
            if (length == 0 || i + length > bytes.Length || bytes[i + 1] < low || bytes[i + 1] > high)
            {
                return 0;
            }

            for (int next = i + 2; next < i + length; next++)
            {
                if (bytes[next] < 0x80 || bytes[next] > 0xBF)
                {
                    return 0;
                }
            }

            return length;
        }
    }
}
