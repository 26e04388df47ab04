using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace VmQuiesce.Core.Config
{
    /// <summary>
    /// A VMware <c>key = "value"</c> file (.vmx, vmvsswriter.cfg) held line by line so that writing it
    /// back reproduces every byte that was not deliberately changed: comments, blank lines, order,
    /// unknown keys, spacing, each line's own line ending and a UTF-8 byte order mark. Keys compare
    /// case-insensitively and the last duplicate wins, as in VMware.
    /// </summary>
    public sealed class VmwareConfigDocument
    {
        /// <summary>New files use CRLF: the program that reads them (VMware Server's VSS writer) runs on Windows.</summary>
        public const string DefaultNewLine = "\r\n";

        private static readonly byte[] Utf8Bom = { 0xEF, 0xBB, 0xBF };
        private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);
        private static readonly char[] LineBreaks = { '\r', '\n' };

        private readonly List<Line> _lines;

        private VmwareConfigDocument(List<Line> lines, bool hasByteOrderMark)
        {
            _lines = lines;
            HasByteOrderMark = hasByteOrderMark;
        }

        /// <summary>An empty document, for a file that does not exist yet.</summary>
        public VmwareConfigDocument()
            : this(new List<Line>(), false)
        {
        }

        public bool HasByteOrderMark { get; }

        /// <summary>True once a Set or Remove changed the text; an unchanged document need not be written.</summary>
        public bool IsModified { get; private set; }

        /// <summary>The line ending that new lines get: the file's first one, else <see cref="DefaultNewLine"/>.</summary>
        public string NewLine => _lines.Select(l => l.Terminator).FirstOrDefault(t => t.Length > 0) ?? DefaultNewLine;

        /// <summary>The effective settings, in the order of their effective lines.</summary>
        public IReadOnlyList<VmwareConfigSetting> Settings
        {
            get
            {
                var effective = new List<VmwareConfigSetting>();
                var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
                for (int i = _lines.Count - 1; i >= 0; i--)
                {
                    if (_lines[i] is EntryLine entry && seen.Add(entry.Key))
                    {
                        effective.Add(new VmwareConfigSetting(entry.Key, entry.Value, i + 1));
                    }
                }

                effective.Reverse();
                return effective;
            }
        }

        /// <summary>Parses file bytes; <paramref name="sourceName"/> (the path) names the file in errors.</summary>
        public static VmwareConfigDocument Parse(byte[] content, string sourceName)
        {
            bool hasBom = content.Length >= 3 && content[0] == Utf8Bom[0] && content[1] == Utf8Bom[1] && content[2] == Utf8Bom[2];
            int start = hasBom ? 3 : 0;
            string text;
            try
            {
                text = StrictUtf8.GetString(content, start, content.Length - start);
            }
            catch (DecoderFallbackException e)
            {
                int badByte = start + Math.Max(0, e.Index);
                int lineNumber = 1 + content.Take(Math.Min(badByte, content.Length)).Count(b => b == (byte)'\n');
                throw new VmQuiesceException("InvalidConfigEncoding", FailureKind.InvalidData,
                    $"{sourceName}, line {lineNumber}: the file is not valid UTF-8. Expected a UTF-8 (or ASCII) text file.", sourceName, e);
            }

            return Parse(text, hasBom, sourceName);
        }

        /// <summary>Parses text that has no byte order mark in it.</summary>
        public static VmwareConfigDocument Parse(string text, bool hasByteOrderMark, string sourceName)
        {
            var lines = new List<Line>();
            int position = 0;
            while (position < text.Length)
            {
                int end = text.IndexOfAny(LineBreaks, position);
                string content;
                string terminator;
                if (end < 0)
                {
                    content = text.Substring(position);
                    terminator = string.Empty;
                    position = text.Length;
                }
                else
                {
                    content = text.Substring(position, end - position);
                    terminator = text[end] == '\r' && end + 1 < text.Length && text[end + 1] == '\n' ? "\r\n" : text[end].ToString();
                    position = end + terminator.Length;
                }

                lines.Add(ParseLine(content, terminator, lines.Count + 1, sourceName));
            }

            return new VmwareConfigDocument(lines, hasByteOrderMark);
        }

        public bool TryGetValue(string name, out string value)
        {
            EntryLine? entry = LastEntry(name);
            value = entry?.Value ?? string.Empty;
            return entry != null;
        }

        /// <summary>The effective value, or null when no line names the key.</summary>
        public string? GetValue(string name) => LastEntry(name)?.Value;

        /// <summary>
        /// Sets a value: edits the effective (last) line in place, keeping its spacing and any trailing
        /// comment, or appends <c>name = "value"</c>. Returns false when the value was already that.
        /// </summary>
        public bool SetValue(string name, string value)
        {
            VmwareConfigSyntax.ValidateName(name, name);
            VmwareConfigSyntax.ValidateValue(name, value, name);
            EntryLine? entry = LastEntry(name);
            if (entry != null)
            {
                if (string.Equals(entry.Value, value, StringComparison.Ordinal))
                {
                    return false;
                }

                entry.ReplaceValue(value);
            }
            else
            {
                if (_lines.Count > 0 && _lines[_lines.Count - 1].Terminator.Length == 0)
                {
                    _lines[_lines.Count - 1].Terminator = NewLine;
                }

                _lines.Add(EntryLine.Create(name, value, NewLine));
            }

            IsModified = true;
            return true;
        }

        /// <summary>Deletes every line that names the key. Returns false when there was none.</summary>
        public bool Remove(string name)
        {
            VmwareConfigSyntax.ValidateName(name, name);
            int removed = _lines.RemoveAll(l => l is EntryLine entry && Same(entry.Key, name));
            IsModified |= removed > 0;
            return removed > 0;
        }

        public string ToText()
        {
            var builder = new StringBuilder();
            foreach (Line line in _lines)
            {
                builder.Append(line.Content).Append(line.Terminator);
            }

            return builder.ToString();
        }

        public byte[] ToBytes()
        {
            byte[] body = StrictUtf8.GetBytes(ToText());
            return HasByteOrderMark ? Utf8Bom.Concat(body).ToArray() : body;
        }

        private static bool Same(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

        private EntryLine? LastEntry(string name)
        {
            for (int i = _lines.Count - 1; i >= 0; i--)
            {
                if (_lines[i] is EntryLine entry && Same(entry.Key, name))
                {
                    return entry;
                }
            }

            return null;
        }

        private static Line ParseLine(string content, string terminator, int lineNumber, string sourceName)
        {
            int i = SkipBlanks(content, 0);
            if (i == content.Length || content[i] == '#')
            {
                return new Line(content, terminator);
            }

            int keyStart = i;
            while (i < content.Length && !IsBlank(content[i]) && content[i] != '=')
            {
                i++;
            }

            string key = content.Substring(keyStart, i - keyStart);
            string? keyProblem = VmwareConfigSyntax.NameProblem(key);
            if (keyProblem != null)
            {
                throw Malformed(sourceName, lineNumber, content, keyProblem);
            }

            i = SkipBlanks(content, i);
            if (i == content.Length || content[i] != '=')
            {
                throw Malformed(sourceName, lineNumber, content, $"'=' is missing after '{key}'");
            }

            i = SkipBlanks(content, i + 1);
            int valueStart = i;
            bool quoted = i < content.Length && content[i] == '"';
            string rawValue;
            if (quoted)
            {
                int close = content.IndexOf('"', i + 1);
                if (close < 0)
                {
                    throw Malformed(sourceName, lineNumber, content, "the quoted value has no closing quote");
                }

                rawValue = content.Substring(i + 1, close - i - 1);
                i = close + 1;
            }
            else
            {
                while (i < content.Length && !IsBlank(content[i]) && content[i] != '#' && content[i] != '"')
                {
                    i++;
                }

                rawValue = content.Substring(valueStart, i - valueStart);
                if (rawValue.Length == 0)
                {
                    throw Malformed(sourceName, lineNumber, content, $"the value of '{key}' is missing");
                }
            }

            int rest = SkipBlanks(content, i);
            if (rest < content.Length && content[rest] != '#')
            {
                throw Malformed(sourceName, lineNumber, content, "there is text after the value (a second value or a stray quote)");
            }

            return new EntryLine(content.Substring(0, valueStart), key, rawValue, quoted, content.Substring(i), terminator);
        }

        private static VmQuiesceException Malformed(string sourceName, int lineNumber, string content, string problem) =>
            new VmQuiesceException("MalformedConfigLine", FailureKind.InvalidData,
                $"{sourceName}, line {lineNumber}: {problem}. Expected 'name = \"value\"', a comment starting with '#', or a blank line; found '{VmwareConfigSyntax.Printable(content)}'.",
                sourceName)
            {
                Remedy = $"Correct or remove line {lineNumber} of {sourceName}; nothing was changed.",
            };

        private static bool IsBlank(char c) => c == ' ' || c == '\t';

        private static int SkipBlanks(string content, int i)
        {
            while (i < content.Length && IsBlank(content[i]))
            {
                i++;
            }

            return i;
        }

        /// <summary>A comment or blank line, kept as it was.</summary>
        private class Line
        {
            public Line(string content, string terminator)
            {
                Content = content;
                Terminator = terminator;
            }

            public virtual string Content { get; }

            /// <summary>"\r\n", "\n", "\r", or empty on a last line that has none.</summary>
            public string Terminator { get; set; }
        }

        /// <summary>A setting line split into the parts an edit must keep (prefix, suffix) and the value it changes.</summary>
        private sealed class EntryLine : Line
        {
            private readonly string _prefix;
            private readonly string _suffix;
            private string _rawValue;

            public EntryLine(string prefix, string key, string rawValue, bool quoted, string suffix, string terminator)
                : base(string.Empty, terminator)
            {
                _prefix = prefix;
                Key = key;
                _rawValue = rawValue;
                Quoted = quoted;
                _suffix = suffix;
                Value = VmwareConfigSyntax.DecodeValue(rawValue);
            }

            public string Key { get; }

            public string Value { get; private set; }

            public bool Quoted { get; private set; }

            public override string Content => _prefix + (Quoted ? "\"" + _rawValue + "\"" : _rawValue) + _suffix;

            public static EntryLine Create(string key, string value, string terminator) =>
                new EntryLine(key + " = ", key, VmwareConfigSyntax.EncodeValue(value), true, string.Empty, terminator);

            public void ReplaceValue(string value)
            {
                _rawValue = VmwareConfigSyntax.EncodeValue(value);
                Value = value;
                Quoted = true;
            }
        }
    }
}
