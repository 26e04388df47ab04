using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace VmQuiesce.Core.Config
{
    /// <summary>
    /// The rules of VMware's <c>key = "value"</c> lines that reading and writing share: which keys and
    /// values are allowed, and VMware's <c>|XX</c> hex escapes inside quoted values.
    /// </summary>
    public static class VmwareConfigSyntax
    {
        private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>Why <paramref name="name"/> cannot be a setting name, or null when it can.</summary>
        public static string? NameProblem(string? name)
        {
            if (string.IsNullOrEmpty(name))
            {
                return "a setting name cannot be empty";
            }

            for (int i = 0; i < name!.Length; i++)
            {
                char c = name[i];
                if (char.IsControl(c))
                {
                    return $"a setting name cannot contain control characters (found U+{(int)c:X4})";
                }

                if (char.IsWhiteSpace(c))
                {
                    return "a setting name cannot contain white space";
                }

                if (c == '=' || c == '"' || c == '#')
                {
                    return $"a setting name cannot contain '{c}'";
                }

                if (char.IsSurrogate(c) && !IsPairedSurrogate(name, i))
                {
                    return "a setting name cannot contain an unpaired surrogate";
                }
            }

            return null;
        }

        /// <summary>
        /// Why <paramref name="value"/> cannot be written, or null when it can. A quote would end the
        /// value early and let the rest inject another setting; a newline would start a new line.
        /// </summary>
        public static string? ValueProblem(string? value)
        {
            if (value == null)
            {
                return "a setting value cannot be null";
            }

            for (int i = 0; i < value.Length; i++)
            {
                char c = value[i];
                if (c == '\r' || c == '\n')
                {
                    return "a setting value cannot contain a line break";
                }

                if (char.IsControl(c))
                {
                    return $"a setting value cannot contain control characters (found U+{(int)c:X4})";
                }

                if (c == '"')
                {
                    return "a setting value cannot contain a double quote (\")";
                }

                if (char.IsSurrogate(c) && !IsPairedSurrogate(value, i))
                {
                    return "a setting value cannot contain an unpaired surrogate";
                }
            }

            return null;
        }

        public static void ValidateName(string? name, object? target)
        {
            string? problem = NameProblem(name);
            if (problem != null)
            {
                throw new VmQuiesceException("InvalidSettingName", FailureKind.InvalidArgument,
                    $"The setting name '{Printable(name)}' is not valid: {problem}. Expected a name such as 'vmwriter.overwriteSnapshots'.", target);
            }
        }

        public static void ValidateValue(string name, string? value, object? target)
        {
            string? problem = ValueProblem(value);
            if (problem != null)
            {
                throw new VmQuiesceException("InvalidSettingValue", FailureKind.InvalidArgument,
                    $"The value '{Printable(value)}' of setting '{Printable(name)}' is not valid: {problem}.", target);
            }
        }

        /// <summary>Decodes the text between the quotes: <c>|XX</c> is the byte 0xXX; escaped bytes form UTF-8.</summary>
        public static string DecodeValue(string raw)
        {
            if (raw.IndexOf('|') < 0)
            {
                return raw;
            }

            var decoded = new StringBuilder(raw.Length);
            var pendingBytes = new List<byte>();
            for (int i = 0; i < raw.Length; i++)
            {
                if (raw[i] == '|' && i + 2 < raw.Length && IsHex(raw[i + 1]) && IsHex(raw[i + 2]))
                {
                    pendingBytes.Add(byte.Parse(raw.Substring(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
                    i += 2;
                    continue;
                }

                FlushBytes(decoded, pendingBytes);
                decoded.Append(raw[i]);
            }

            FlushBytes(decoded, pendingBytes);
            return decoded.ToString();
        }

        /// <summary>Encodes a valid value for the quotes: the escape character itself becomes <c>|7C</c>.</summary>
        public static string EncodeValue(string value) => value.Replace("|", "|7C");

        /// <summary>Shows a rejected input in an error message without breaking the message's lines.</summary>
        internal static string Printable(string? text)
        {
            if (text == null)
            {
                return "(null)";
            }

            var builder = new StringBuilder(text.Length);
            foreach (char c in text)
            {
                builder.Append(char.IsControl(c) ? $"\\u{(int)c:X4}" : c.ToString());
            }

            return builder.ToString();
        }

        private static void FlushBytes(StringBuilder decoded, List<byte> pendingBytes)
        {
            if (pendingBytes.Count == 0)
            {
                return;
            }

            byte[] bytes = pendingBytes.ToArray();
            pendingBytes.Clear();
            try
            {
                decoded.Append(StrictUtf8.GetString(bytes));
            }
            catch (DecoderFallbackException)
            {
                // Not UTF-8: older files escaped single bytes of the host code page; keep each byte visible.
                foreach (byte b in bytes)
                {
                    decoded.Append((char)b);
                }
            }
        }

        private static bool IsHex(char c) => (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

        private static bool IsPairedSurrogate(string text, int index) =>
            char.IsHighSurrogate(text[index])
                ? index + 1 < text.Length && char.IsLowSurrogate(text[index + 1])
                : index > 0 && char.IsHighSurrogate(text[index - 1]);
    }
}
