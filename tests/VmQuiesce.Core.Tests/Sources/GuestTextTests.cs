using VmQuiesce.Core.Sources;
using Xunit;

namespace VmQuiesce.Core.Tests.Sources
{
    public sealed class GuestTextTests
    {
        [Theory]
        [InlineData("/mnt/data", "/mnt/data")]
        [InlineData("\u001b]0;owned\u0007/", "\\x1b]0;owned\\x07/")]
        [InlineData("a\u009b31mb", "a\\x9b31mb")]
        [InlineData("line1\r\nline2\t", "line1\\x0d\\x0aline2\\x09")]
        [InlineData("del\u007f", "del\\x7f")]
        [InlineData("evil\u202egnp.exe", "evil\\u202egnp.exe")]
        [InlineData("sep\u2028x", "sep\\u2028x")]
        [InlineData("C:\\Data \U0001F600 é", "C:\\Data \U0001F600 é")]
        public void Control_characters_become_visible_escapes_and_everything_else_stays(string text, string expected)
        {
            Assert.Equal(expected, GuestText.Escape(text));
        }

        [Fact]
        public void Null_is_empty_and_quoting_escapes_too()
        {
            Assert.Equal("", GuestText.Escape(null));
            Assert.Equal("'\\x1b[2J'", GuestText.Quote("\u001b[2J"));
            // Built here: a lone surrogate does not survive xunit's serialisation of inline data.
            Assert.Equal("lone\\ud800half", GuestText.Escape("lone" + (char)0xD800 + "half"));
        }
    }
}
