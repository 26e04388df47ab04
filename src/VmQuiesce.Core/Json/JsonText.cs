using System;
using System.Collections;
using System.Globalization;
using System.Text;

namespace VmQuiesce.Core.Json
{
    /// <summary>
    /// How much one parse may build: a peer that sends "[[[[..." or "[{},{},...]" costs the host at most
    /// this much, whatever the length of its text.
    /// </summary>
    public sealed class JsonLimits
    {
        public JsonLimits(int maxDepth, int maxValues)
        {
            MaxDepth = maxDepth;
            MaxValues = maxValues;
        }

        /// <summary>For trusted or size-checked text (the project's own files): deep enough for any of them, no value count.</summary>
        public static JsonLimits Default { get; } = new JsonLimits(64, int.MaxValue);

        /// <summary>Containers inside containers, the outermost being depth 0.</summary>
        public int MaxDepth { get; }

        /// <summary>Values of every kind (each member value and array element, plus the outermost value).</summary>
        public int MaxValues { get; }
    }

    /// <summary>Parses and writes JSON text (RFC 8259) to and from <see cref="JsonObject"/> and friends.</summary>
    public static class JsonText
    {
        public static object? Parse(string text) => Parse(text, JsonLimits.Default);

        /// <summary>Parses within <paramref name="limits"/>; text beyond them is a <see cref="JsonFormatException"/> naming the limit.</summary>
        public static object? Parse(string text, JsonLimits limits)
        {
            var parser = new Parser(text, limits);
            parser.SkipWhitespace();
            object? value = parser.ReadValue(0);
            parser.SkipWhitespace();
            if (!parser.AtEnd)
            {
                throw parser.Error("unexpected text after the JSON value");
            }

            return value;
        }

        public static JsonObject ParseObject(string text) => ParseObject(text, JsonLimits.Default);

        public static JsonObject ParseObject(string text, JsonLimits limits) =>
            Parse(text, limits) as JsonObject ?? throw new JsonFormatException("Expected a JSON object.");

        public static string Serialize(object? value, bool indented)
        {
            var builder = new StringBuilder();
            Write(builder, value, indented, 0);
            return builder.ToString();
        }

        /// <summary>
        /// As <see cref="Serialize"/>, as UTF-8 without a byte order mark. Text all ASCII, as a manifest nearly always is
        /// (chunk names, numbers, paths), is encoded from the pieces it was written in, a byte a character: a manifest is
        /// a megabyte of text, and a string of it only to encode it is memory touched for nothing. Other text goes through
        /// a string, so that a pair of surrogates split between two pieces stays whole.
        /// </summary>
        internal static byte[] SerializeUtf8(object? value, bool indented)
        {
            var builder = new StringBuilder();
            Write(builder, value, indented, 0);
            var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
#if !NETFRAMEWORK
            if (IsAscii(builder))
            {
                var bytes = new byte[builder.Length];
                int at = 0;
                foreach (ReadOnlyMemory<char> piece in builder.GetChunks())
                {
                    at += utf8.GetBytes(piece.Span, bytes.AsSpan(at));
                }

                return bytes;
            }
#endif
            return utf8.GetBytes(builder.ToString());
        }

#if !NETFRAMEWORK
        private static bool IsAscii(StringBuilder builder)
        {
            foreach (ReadOnlyMemory<char> piece in builder.GetChunks())
            {
                if (!Ascii.IsValid(piece.Span))
                {
                    return false;
                }
            }

            return true;
        }
#endif

        internal static string Describe(object? value) => value switch
        {
            null => "null",
            string _ => "a string",
            bool _ => "a boolean",
            long _ or double _ => "a number",
            JsonObject _ => "an object",
            JsonArray _ => "an array",
            _ => value.GetType().Name,
        };

        private static void Write(StringBuilder builder, object? value, bool indented, int depth)
        {
            switch (value)
            {
                case null:
                    builder.Append("null");
                    break;
                case string s:
                    WriteString(builder, s);
                    break;
                case bool b:
                    builder.Append(b ? "true" : "false");
                    break;
                case int or long or uint or short or byte:
                    builder.Append(Convert.ToInt64(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                    break;
                case ulong u:
                    builder.Append(u.ToString(CultureInfo.InvariantCulture));
                    break;
                case double or float or decimal:
                    double d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                    if (double.IsNaN(d) || double.IsInfinity(d))
                    {
                        throw new JsonFormatException("JSON cannot hold NaN or infinity.");
                    }

                    builder.Append(d.ToString("R", CultureInfo.InvariantCulture));
                    break;
                case JsonObject obj:
                    WriteContainer(builder, '{', '}', obj.Count, indented, depth, obj, (b, item, ind, dep) =>
                    {
                        var member = (System.Collections.Generic.KeyValuePair<string, object?>)item!;
                        WriteString(b, member.Key);
                        b.Append(ind ? ": " : ":");
                        Write(b, member.Value, ind, dep);
                    });
                    break;
                case IEnumerable list:
                    int count = list is ICollection c ? c.Count : 1;
                    WriteContainer(builder, '[', ']', count, indented, depth, list, (b, item, ind, dep) => Write(b, item, ind, dep));
                    break;
                default:
                    throw new JsonFormatException($"A value of type {value.GetType().Name} cannot be written as JSON.");
            }
        }

        private static void WriteContainer(StringBuilder builder, char open, char close, int count, bool indented, int depth,
            IEnumerable items, Action<StringBuilder, object?, bool, int> writeItem)
        {
            builder.Append(open);
            if (count == 0)
            {
                builder.Append(close);
                return;
            }

            bool first = true;
            foreach (object? item in items)
            {
                if (!first)
                {
                    builder.Append(',');
                }

                first = false;
                if (indented)
                {
                    builder.Append('\n').Append(' ', (depth + 1) * 2);
                }

                writeItem(builder, item, indented, depth + 1);
            }

            if (indented)
            {
                builder.Append('\n').Append(' ', depth * 2);
            }

            builder.Append(close);
        }

        private static void WriteString(StringBuilder builder, string s)
        {
            builder.Append('"');
            // Characters that need no escape go in runs, one append each: a manifest's chunk names are most of its text.
            int run = 0;
            for (int i = 0; i < s.Length; i++)
            {
                if (Escape(s[i]) is string escaped)
                {
                    builder.Append(s, run, i - run).Append(escaped);
                    run = i + 1;
                }
            }

            builder.Append(s, run, s.Length - run).Append('"');
        }

        /// <summary>How <paramref name="ch"/> is written inside a string; null when as itself.</summary>
        private static string? Escape(char ch) => ch switch
        {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\b' => "\\b",
            '\f' => "\\f",
            _ when ch < 0x20 || ch == '\u2028' || ch == '\u2029' => "\\u" + ((int)ch).ToString("x4", CultureInfo.InvariantCulture),
            _ => null,
        };

        private sealed class Parser
        {
            private readonly string _text;
            private readonly JsonLimits _limits;
            private int _pos;
            private int _values;

            public Parser(string text, JsonLimits limits)
            {
                _text = text;
                _limits = limits;
            }

            public bool AtEnd => _pos >= _text.Length;

            public JsonFormatException Error(string what) =>
                new JsonFormatException($"Invalid JSON at offset {_pos}: {what}.");

            public void SkipWhitespace()
            {
                while (_pos < _text.Length && (_text[_pos] == ' ' || _text[_pos] == '\t' || _text[_pos] == '\n' || _text[_pos] == '\r'))
                {
                    _pos++;
                }
            }

            public object? ReadValue(int depth)
            {
                if (depth > _limits.MaxDepth)
                {
                    throw Error($"nesting deeper than {_limits.MaxDepth}");
                }

                if (++_values > _limits.MaxValues)
                {
                    throw Error($"more than {_limits.MaxValues} values");
                }

                if (AtEnd)
                {
                    throw Error("unexpected end of text");
                }

                char ch = _text[_pos];
                switch (ch)
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return ReadString();
                    case 't': ReadLiteral("true"); return true;
                    case 'f': ReadLiteral("false"); return false;
                    case 'n': ReadLiteral("null"); return null;
                    default:
                        if (ch == '-' || (ch >= '0' && ch <= '9'))
                        {
                            return ReadNumber();
                        }

                        throw Error($"unexpected character '{ch}'");
                }
            }

            private JsonObject ReadObject(int depth)
            {
                var obj = new JsonObject();
                _pos++;
                SkipWhitespace();
                if (Peek() == '}')
                {
                    _pos++;
                    return obj;
                }

                while (true)
                {
                    SkipWhitespace();
                    if (Peek() != '"')
                    {
                        throw Error("expected a member name");
                    }

                    int nameOffset = _pos;
                    string name = ReadString();
                    if (obj.Contains(name))
                    {
                        // RFC 8259 leaves duplicates to the reader; keeping either one would let two readers of one document disagree.
                        _pos = nameOffset;
                        throw Error($"the member name '{name}' appears twice in one object");
                    }

                    SkipWhitespace();
                    Expect(':');
                    SkipWhitespace();
                    obj[name] = ReadValue(depth + 1);
                    SkipWhitespace();
                    if (Peek() == ',')
                    {
                        _pos++;
                        continue;
                    }

                    Expect('}');
                    return obj;
                }
            }

            private JsonArray ReadArray(int depth)
            {
                var array = new JsonArray();
                _pos++;
                SkipWhitespace();
                if (Peek() == ']')
                {
                    _pos++;
                    return array;
                }

                while (true)
                {
                    SkipWhitespace();
                    array.Add(ReadValue(depth + 1));
                    SkipWhitespace();
                    if (Peek() == ',')
                    {
                        _pos++;
                        continue;
                    }

                    Expect(']');
                    return array;
                }
            }

            private string ReadString()
            {
                _pos++;
                // Most strings (a manifest's chunk names, a sealed manifest's base64) have nothing to unescape or check
                // as a pair: one scan and one copy. The loop below takes over at the first character that needs it.
                int start = _pos;
                while (_pos < _text.Length && _text[_pos] != '"' && _text[_pos] != '\\' && _text[_pos] >= 0x20 && !char.IsSurrogate(_text[_pos]))
                {
                    _pos++;
                }

                if (_pos < _text.Length && _text[_pos] == '"')
                {
                    _pos++;
                    return _text.Substring(start, _pos - 1 - start);
                }

                var builder = new StringBuilder().Append(_text, start, _pos - start);
                while (true)
                {
                    if (AtEnd)
                    {
                        throw Error("unterminated string");
                    }

                    char ch = _text[_pos++];
                    if (ch == '"')
                    {
                        return builder.ToString();
                    }

                    if (ch < 0x20)
                    {
                        throw Error("control character in a string");
                    }

                    if (ch != '\\')
                    {
                        if (char.IsSurrogate(ch))
                        {
                            AppendSurrogatePair(builder, ch, escaped: false);
                        }
                        else
                        {
                            builder.Append(ch);
                        }

                        continue;
                    }

                    if (AtEnd)
                    {
                        throw Error("unterminated escape");
                    }

                    char escape = _text[_pos++];
                    switch (escape)
                    {
                        case '"': builder.Append('"'); break;
                        case '\\': builder.Append('\\'); break;
                        case '/': builder.Append('/'); break;
                        case 'b': builder.Append('\b'); break;
                        case 'f': builder.Append('\f'); break;
                        case 'n': builder.Append('\n'); break;
                        case 'r': builder.Append('\r'); break;
                        case 't': builder.Append('\t'); break;
                        case 'u':
                            char unit = ReadHexEscape();
                            if (char.IsSurrogate(unit))
                            {
                                AppendSurrogatePair(builder, unit, escaped: true);
                            }
                            else
                            {
                                builder.Append(unit);
                            }

                            break;
                        default:
                            throw Error($"unknown escape '\\{escape}'");
                    }
                }
            }

            /// <summary>
            /// RFC 8259's number grammar exactly: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. A whole number that
            /// fits is a long, anything else a double; a number too large for a double is an error, not infinity.
            /// </summary>
            private object ReadNumber()
            {
                int start = _pos;
                if (Peek() == '-')
                {
                    _pos++;
                }

                if (Peek() == '0')
                {
                    _pos++;
                    if (IsDigit(Peek()))
                    {
                        throw NumberError(start, "a number must not start with 0 unless it is 0");
                    }
                }
                else if (!SkipDigits())
                {
                    throw NumberError(start, "expected a digit");
                }

                bool isInteger = true;
                if (Peek() == '.')
                {
                    isInteger = false;
                    _pos++;
                    if (!SkipDigits())
                    {
                        throw NumberError(start, "expected a digit after the decimal point");
                    }
                }

                if (Peek() == 'e' || Peek() == 'E')
                {
                    isInteger = false;
                    _pos++;
                    if (Peek() == '+' || Peek() == '-')
                    {
                        _pos++;
                    }

                    if (!SkipDigits())
                    {
                        throw NumberError(start, "expected a digit in the exponent");
                    }
                }

                string token = _text.Substring(start, _pos - start);
                if (isInteger && long.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long whole))
                {
                    return whole;
                }

                // .NET Framework fails the parse on overflow where .NET returns infinity: both are out of range.
                if (!double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out double real) || double.IsInfinity(real))
                {
                    throw NumberError(start, "the number is too large for a double");
                }

                return real;
            }

            private JsonFormatException NumberError(int start, string what)
            {
                int end = _pos;
                while (end < _text.Length && (IsDigit(_text[end]) || "+-.eE".IndexOf(_text[end]) >= 0))
                {
                    end++;
                }

                string token = _text.Substring(start, end - start);
                _pos = start;
                return Error($"bad number '{token}': {what}");
            }

            private bool SkipDigits()
            {
                int start = _pos;
                while (IsDigit(Peek()))
                {
                    _pos++;
                }

                return _pos > start;
            }

            private static bool IsDigit(char ch) => ch >= '0' && ch <= '9';

            /// <summary>
            /// Appends a surrogate pair whose high half was just read, its low half following in the same form
            /// (escaped or not): a string holding half a pair is not Unicode text, and readers disagree on what it means.
            /// </summary>
            private void AppendSurrogatePair(StringBuilder builder, char high, bool escaped)
            {
                if (!char.IsHighSurrogate(high))
                {
                    throw Error($"lone low surrogate U+{(int)high:X4} in a string");
                }

                if (escaped ? !IsLowSurrogateEscapeNext() : _pos >= _text.Length || !char.IsLowSurrogate(_text[_pos]))
                {
                    throw Error($"high surrogate U+{(int)high:X4} without its low surrogate in a string");
                }

                builder.Append(high).Append(escaped ? ReadEscapedLowSurrogate() : _text[_pos++]);
            }

            /// <summary>The four hex digits after \u (the \u already read).</summary>
            private char ReadHexEscape()
            {
                if (_pos + 4 > _text.Length ||
                    !int.TryParse(_text.Substring(_pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
                {
                    throw Error("bad \\u escape");
                }

                _pos += 4;
                return (char)code;
            }

            private bool IsLowSurrogateEscapeNext() =>
                _pos + 6 <= _text.Length && _text[_pos] == '\\' && _text[_pos + 1] == 'u' &&
                int.TryParse(_text.Substring(_pos + 2, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code) &&
                char.IsLowSurrogate((char)code);

            private char ReadEscapedLowSurrogate()
            {
                _pos += 2;
                return ReadHexEscape();
            }

            private void ReadLiteral(string literal)
            {
                if (string.CompareOrdinal(_text, _pos, literal, 0, literal.Length) != 0)
                {
                    throw Error($"expected '{literal}'");
                }

                _pos += literal.Length;
            }

            private char Peek() => AtEnd ? '\0' : _text[_pos];

            private void Expect(char ch)
            {
                if (Peek() != ch)
                {
                    throw Error(AtEnd ? $"expected '{ch}' but the text ended" : $"expected '{ch}' but found '{_text[_pos]}'");
                }

                _pos++;
            }
        }
    }
}
