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
