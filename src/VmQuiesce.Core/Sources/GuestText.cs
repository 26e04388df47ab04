using System.Globalization;
using System.Text;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// Text that a guest, its agent or a monitor controls (error descriptions, mount points, hook output),
    /// made safe to show on a terminal and to record in a manifest: every control character (C0, DEL, C1,
    /// which start terminal escape sequences), line and paragraph separator and bidirectional override
    /// is written as a visible escape, so such text can neither drive the terminal nor disguise itself.
    /// </summary>
    public static class GuestText
    {
        public static string Escape(string? text)
        {
            if (string.IsNullOrEmpty(text))
            {
                return text ?? "";
            }

            StringBuilder? escaped = null;
            for (int i = 0; i < text!.Length; i++)
            {
                char ch = text[i];
                if (char.IsHighSurrogate(ch) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    // A pair is one character (an emoji in a mount point is text); a lone half is not.
                    escaped?.Append(ch).Append(text[i + 1]);
                    i++;
                    continue;
                }

                if (!NeedsEscape(ch))
                {
                    escaped?.Append(ch);
                    continue;
                }

                escaped ??= new StringBuilder(text.Length + 16).Append(text, 0, i);
                escaped.Append(ch < 0x100 ? "\\x" + ((int)ch).ToString("x2", CultureInfo.InvariantCulture) : "\\u" + ((int)ch).ToString("x4", CultureInfo.InvariantCulture));
            }

            return escaped?.ToString() ?? text;
        }

        /// <summary>The escaped text between single quotes, for messages.</summary>
        public static string Quote(string? text) => "'" + Escape(text) + "'";

        private static bool NeedsEscape(char ch) =>
            ch < 0x20 || (ch >= 0x7F && ch <= 0x9F)
            || ch == '\u2028' || ch == '\u2029'
            || ch == '\u200E' || ch == '\u200F' || (ch >= '\u202A' && ch <= '\u202E') || (ch >= '\u2066' && ch <= '\u2069')
            || char.IsSurrogate(ch);
    }
}
