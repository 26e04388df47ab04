using VmQuiesce.Core.Json;
using Xunit;

namespace VmQuiesce.Core.Tests.Json
{
    public class JsonTextTests
    {
        [Fact]
        public void QmpGreetingParsesWithNestedMembers()
        {
            JsonObject greeting = JsonText.ParseObject(
                "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2\"}, \"capabilities\": [\"oob\"]}}");

            JsonObject version = greeting.GetObject("QMP").GetObject("version");
            Assert.Equal(7, version.GetObject("qemu").GetInt64("major"));
            Assert.Equal("Debian 1:7.2", version.GetString("package"));
            Assert.Equal("oob", Assert.Single(greeting.GetObject("QMP").GetArray("capabilities")));
        }

        [Theory]
        [InlineData("", "\"\"")]
        [InlineData("0123456789abcdef", "\"0123456789abcdef\"")]
        [InlineData("\"quoted\"", "\"\\\"quoted\\\"\"")]
        [InlineData("a\\b\nc\rd\te\bf\fg", "\"a\\\\b\\nc\\rd\\te\\bf\\fg\"")]
        [InlineData("\u0001x\u001f\u2028y\u2029", "\"\\u0001x\\u001f\\u2028y\\u2029\"")]
        [InlineData("é ü 日本", "\"é ü 日本\"")]
        public void StringsAreWrittenWithEveryEscapeInPlaceAndTheRestAsItIs(string value, string expected)
        {
            Assert.Equal(expected, JsonText.Serialize(value, indented: false));
        }

        [Fact]
        public void WrittenTextParsesBackToTheSameValues()
        {
            var original = new JsonObject()
                .With("name", "quote \" backslash \\ newline \n tab \t nul \u0001 é")
                .With("size", 8_589_934_592L)
                .With("ms", 12.5)
                .With("ok", true)
                .With("none", null)
                .With("list", new JsonArray { 1L, "two", new JsonObject().With("three", 3L) });

            foreach (bool indented in new[] { true, false })
            {
                JsonObject copy = JsonText.ParseObject(JsonText.Serialize(original, indented));
                Assert.Equal(JsonText.Serialize(original, false), JsonText.Serialize(copy, false));
                Assert.Equal(original.GetString("name"), copy.GetString("name"));
                Assert.Equal(8_589_934_592L, copy.GetInt64("size"));
                Assert.Equal(12.5, copy.GetDouble("ms"));
            }
        }

        [Fact]
        public void TheUtf8OfWrittenTextIsTheTextEncodedWhateverItsCharactersAndLength()
        {
            // Pairs of surrogates at every offset, so that some straddle the pieces the text is written in; mostly ASCII, as a manifest is.
            var list = new JsonArray();
            for (int i = 0; i < 3000; i++)
            {
                list.Add(new string('a', i % 7) + (i % 3 == 0 ? "😀" : i % 3 == 1 ? "é€" : "0123456789abcdef"));
            }

            // One string written whole fills its piece exactly, so its closing quote starts a piece of its own, which the
            // encoded text, a byte longer than the text for the "é", reaches with no room left.
            var asciiList = new JsonArray();
            for (int i = 0; i < 3000; i++)
            {
                asciiList.Add(i.ToString("x64", System.Globalization.CultureInfo.InvariantCulture));
            }

            foreach (object? value in new object?[] { new JsonObject().With("chunks", list), new JsonObject().With("chunks", asciiList), "é" + new string('a', 40), "ASCII only", string.Empty, new JsonArray() })
            {
                foreach (bool indented in new[] { true, false })
                {
                    Assert.Equal(new System.Text.UTF8Encoding(false).GetBytes(JsonText.Serialize(value, indented)), JsonText.SerializeUtf8(value, indented));
                }
            }
        }

        [Theory]
        [InlineData("{\"a\": 1,}")]
        [InlineData("{\"a\" 1}")]
        [InlineData("[1, 2")]
        [InlineData("\"unterminated")]
        [InlineData("{\"a\": tru}")]
        [InlineData("{} extra")]
        [InlineData("{\"a\": \"\\x\"}")]
        public void MalformedTextIsRejectedWithItsOffset(string text)
        {
            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse(text));
            Assert.Contains("offset", error.Message);
        }

        [Theory]
        [InlineData("01", "must not start with 0")]
        [InlineData("-01", "must not start with 0")]
        [InlineData("1.", "after the decimal point")]
        [InlineData("1.e5", "after the decimal point")]
        [InlineData(".5", "unexpected character")]
        [InlineData("-", "expected a digit")]
        [InlineData("1e", "in the exponent")]
        [InlineData("1e+", "in the exponent")]
        [InlineData("+1", "unexpected character")]
        [InlineData("1E400", "too large")]
        [InlineData("-1e309", "too large")]
        public void NumbersOutsideRfc8259AreRejectedWithTheReason(string text, string reason)
        {
            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse("[" + text + "]"));
            Assert.Contains("offset 1", error.Message);
            Assert.Contains(reason, error.Message);
        }

        [Theory]
        [InlineData("0", 0L)]
        [InlineData("-0", 0L)]
        [InlineData("10", 10L)]
        [InlineData("9223372036854775807", long.MaxValue)]
        public void WholeNumbersInTheGrammarReadAsLongs(string text, long expected) =>
            Assert.Equal(expected, JsonText.Parse(text));

        [Theory]
        [InlineData("0.5", 0.5)]
        [InlineData("-1.25e2", -125.0)]
        [InlineData("1E+2", 100.0)]
        [InlineData("2e-1", 0.2)]
        [InlineData("9223372036854775808", 9223372036854775808.0)]
        [InlineData("1e308", 1e308)]
        public void OtherNumbersInTheGrammarReadAsDoubles(string text, double expected) =>
            Assert.Equal(expected, JsonText.Parse(text));

        [Fact]
        public void ADuplicateMemberNameIsRejectedNotSilentlyOverwritten()
        {
            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse("{\"path\": \"/a\", \"path\": \"/etc/cron.d/x\"}"));
            Assert.Contains("'path' appears twice", error.Message);
            Assert.Contains("offset 15", error.Message);
            // The same name in different objects is not a duplicate.
            Assert.Equal(2, JsonText.ParseObject("{\"a\": {\"a\": 1}, \"b\": {\"a\": 2}}").Count);
        }

        [Theory]
        [InlineData("\"\\ud800\"", "high surrogate U+D800 without")]
        [InlineData("\"\\ud800x\"", "high surrogate U+D800 without")]
        [InlineData("\"\\ud800\\u0041\"", "high surrogate U+D800 without")]
        [InlineData("\"\\udc00\"", "lone low surrogate U+DC00")]
        [InlineData("\"\\udbff\\udbff\"", "high surrogate U+DBFF without")]
        public void ALoneEscapedSurrogateIsRejected(string text, string reason)
        {
            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse(text));
            Assert.Contains(reason, error.Message);
        }

        [Theory]
        [InlineData("\"plain run\\nthen escaped\"", "plain run\nthen escaped")]
        [InlineData("\"run \\u00e9\\\" and run\"", "run \u00e9\" and run")]
        [InlineData("\"a run before a pair \U0001F600 and after\"", "a run before a pair \U0001F600 and after")]
        [InlineData("\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
        public void AStringReadsTheSameWhereverItsFirstEscapeOrPairIs(string text, string expected) =>
            Assert.Equal(expected, JsonText.Parse(text));

        [Theory]
        [InlineData("\"plain run\u0001\"", 11, "control character")]
        [InlineData("[\"plain run", 11, "unterminated string")]
        [InlineData("[\"plain \\q\"]", 10, "unknown escape")]
        public void AStringsErrorNamesTheOffsetAfterAPlainRun(string text, int offset, string what)
        {
            string message = Assert.Throws<JsonFormatException>(() => JsonText.Parse(text)).Message;
            Assert.Contains($"offset {offset}: {what}", message);
        }

        [Fact]
        public void ALoneRawSurrogateIsRejected()
        {
            // Built at run time: attribute arguments are stored as UTF-8, which cannot hold half a pair.
            string high = "\"" + (char)0xD800 + "\"";
            string low = "\"" + (char)0xDC00 + "x\"";
            Assert.Contains("high surrogate U+D800 without", Assert.Throws<JsonFormatException>(() => JsonText.Parse(high)).Message);
            Assert.Contains("lone low surrogate U+DC00", Assert.Throws<JsonFormatException>(() => JsonText.Parse(low)).Message);
        }

        [Fact]
        public void SurrogatePairsReadAsOneCharacterEscapedOrNot()
        {
            Assert.Equal("\U0001F600", JsonText.Parse("\"\\ud83d\\ude00\""));
            Assert.Equal("a\U0001F600b", JsonText.Parse("\"a\U0001F600b\""));
        }

        [Fact]
        public void ManyValuesBeyondTheBudgetAreRefusedNamingTheLimit()
        {
            string bomb = "[" + string.Join(",", System.Linq.Enumerable.Repeat("{}", 1001)) + "]";

            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse(bomb, new JsonLimits(8, 1000)));

            Assert.Contains("more than 1000 values", error.Message);
            Assert.Equal(1001, Assert.IsType<JsonArray>(JsonText.Parse(bomb, new JsonLimits(8, 1002))).Count);
        }

        [Fact]
        public void NestingBeyondTheBudgetIsRefusedNamingTheLimit()
        {
            string deep = new string('[', 17) + new string(']', 17);

            var error = Assert.Throws<JsonFormatException>(() => JsonText.Parse(deep, new JsonLimits(15, 1000)));

            Assert.Contains("nesting deeper than 15", error.Message);
            Assert.IsType<JsonArray>(JsonText.Parse(deep, new JsonLimits(16, 1000)));
        }

        [Fact]
        public void WrongMemberTypeNamesTheMemberAndTheExpectation()
        {
            JsonObject obj = JsonText.ParseObject("{\"size\": \"big\"}");

            var error = Assert.Throws<JsonFormatException>(() => obj.GetInt64("size"));
            Assert.Contains("'size'", error.Message);
            Assert.Contains("whole number", error.Message);
            Assert.Contains("missing", Assert.Throws<JsonFormatException>(() => obj.GetString("absent")).Message);
        }
    }
}
