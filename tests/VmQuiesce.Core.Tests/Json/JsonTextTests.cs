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
