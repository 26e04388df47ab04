using System;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class RegularFileTextTests
    {
        [Fact]
        public void AMegabyteOfTextWithAByteOrderMarkReadsBackWholeWithoutIt()
        {
            // Multi-byte characters across every buffer boundary a reader might use.
            string text = string.Concat(Enumerable.Range(0, 40_000).Select(i => $"chunk {i:x8} é€😀\n"));

            WithFile(new UTF8Encoding(encoderShouldEmitUTF8Identifier: true).GetPreamble().Concat(Encoding.UTF8.GetBytes(text)).ToArray(), path =>
                Assert.Equal(text, RegularFile.ReadAllText(path, 4 * 1024 * 1024)));
        }

        [Theory]
        [InlineData("utf-8")]
        [InlineData("utf-16LE")]
        [InlineData("utf-16BE")]
        [InlineData("utf-32LE")]
        [InlineData("utf-32BE")]
        public void EachByteOrderMarkDecodesAsStreamReaderDecodesIt(string encodingName)
        {
            Encoding encoding = encodingName switch
            {
                "utf-16LE" => new UnicodeEncoding(bigEndian: false, byteOrderMark: true),
                "utf-16BE" => new UnicodeEncoding(bigEndian: true, byteOrderMark: true),
                "utf-32LE" => new UTF32Encoding(bigEndian: false, byteOrderMark: true),
                "utf-32BE" => new UTF32Encoding(bigEndian: true, byteOrderMark: true),
                _ => new UTF8Encoding(encoderShouldEmitUTF8Identifier: true),
            };
            // A NUL first makes UTF-16 LE's mark and text begin as UTF-32 LE's mark does.
            byte[] bytes = encoding.GetPreamble().Concat(encoding.GetBytes("\0{\"name\": \"é€😀\"}\n")).ToArray();
            using var reader = new StreamReader(new MemoryStream(bytes), new UTF8Encoding(false), detectEncodingFromByteOrderMarks: true);

            Assert.Equal(reader.ReadToEnd(), RegularFile.DecodeText(new ArraySegment<byte>(bytes)));
        }

        [Fact]
        public void AnEmptyFileIsEmptyText()
        {
            WithFile(Array.Empty<byte>(), path => Assert.Equal(string.Empty, RegularFile.ReadAllText(path, 1024)));
        }

        [Fact]
        public void ALimitOfTwoGibibytesOrMoreIsRefused()
        {
            WithFile(Encoding.UTF8.GetBytes("{}"), path => Assert.Throws<ArgumentOutOfRangeException>(() => RegularFile.ReadAllText(path, int.MaxValue)));
        }

        private static void WithFile(byte[] content, Action<string> test)
        {
            using var folder = new TempFolder();
            string path = folder.File("text");
            File.WriteAllBytes(path, content);
            test(path);
        }
    }
}
