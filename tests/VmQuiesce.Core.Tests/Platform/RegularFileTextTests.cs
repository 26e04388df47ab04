using System;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class RegularFileTextTests
    {
        [Fact]
        public void AMegabyteOfTextWithAByteOrderMarkReadsBackWholeWithoutIt()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmq-text-" + Guid.NewGuid().ToString("N"));
            try
            {
                // Multi-byte characters across every buffer boundary a reader might use.
                string text = string.Concat(Enumerable.Range(0, 40_000).Select(i => $"chunk {i:x8} é€😀\n"));
                File.WriteAllText(path, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true));

                Assert.Equal(text, RegularFile.ReadAllText(path, 4 * 1024 * 1024));
            }
            finally
            {
                File.Delete(path);
            }
        }

        [Fact]
        public void AnEmptyFileIsEmptyText()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmq-text-" + Guid.NewGuid().ToString("N"));
            try
            {
                File.WriteAllBytes(path, Array.Empty<byte>());

                Assert.Equal(string.Empty, RegularFile.ReadAllText(path, 1024));
            }
            finally
            {
                File.Delete(path);
            }
        }

        [Fact]
        public void ALimitOfTwoGibibytesOrMoreIsRefused()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmq-text-" + Guid.NewGuid().ToString("N"));
            try
            {
                File.WriteAllText(path, "{}");

                Assert.Throws<ArgumentOutOfRangeException>(() => RegularFile.ReadAllText(path, int.MaxValue));
            }
            finally
            {
                File.Delete(path);
            }
        }
    }
}
