using System.Text;

namespace VmQuiesce.Core
{
    /// <summary>Text the core writes as PowerShell source (schedule jobs, repair commands it suggests).</summary>
    public static class PowerShellText
    {
        /// <summary>
        /// A PowerShell single-quoted string: every character that ends one (the ASCII quote and U+2018 to U+201B,
        /// which PowerShell treats as quotes too) is doubled, so a path cannot end the string and run code.
        /// </summary>
        public static string SingleQuoted(string text)
        {
            var quoted = new StringBuilder(text.Length + 2).Append('\'');
            foreach (char c in text)
            {
                quoted.Append(c);
                if (c == '\'' || (c >= '\u2018' && c <= '\u201B'))
                {
                    quoted.Append(c);
                }
            }

            return quoted.Append('\'').ToString();
        }
    }
}
