using System;
using System.IO;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public class DirectFileStreamTests
    {
        [LinuxTheory]
        [InlineData(0)]
        [InlineData(4)]
        [InlineData(5000)]
        [InlineData(DirectFileStream.StagingLength)]
        [InlineData((4 << 20) + 4)]
        public void WritesExactlyTheBytesGivenWhateverTheirAlignment(int length)
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "direct.bin");
            byte[] content = RepositoryFixture.Random(length, length);
            using (DirectFileStream stream = DirectFileStream.TryCreateNew(path) ?? throw new InvalidOperationException("the test folder's file system refuses O_DIRECT"))
            {
                // Uneven pieces: a 4-byte header, then the rest in two parts.
                int header = Math.Min(4, length);
                stream.Write(content, 0, header);
                int middle = (length - header) / 3;
                stream.Write(content, header, middle);
                stream.Write(content, header + middle, length - header - middle);
                Assert.Equal(length, stream.Length);
                stream.Flush();
            }

            Assert.Equal(content, File.ReadAllBytes(path));
        }

        [LinuxFact]
        public void SeeksForwardToBlocksLeavingHolesAndCutsThePaddingOfTheLastBlock()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "sparse.bin");
            byte[] first = RepositoryFixture.Random(5000, 1);
            byte[] second = RepositoryFixture.Random(DirectFileStream.StagingLength + 10, 2);
            byte[] expected = new byte[(3L * DirectFileStream.StagingLength) + 123];
            using (DirectFileStream stream = DirectFileStream.TryCreateNew(path)!)
            {
                stream.Write(first, 0, first.Length);
                stream.Position = 2 * DirectFileStream.Alignment * 10;
                stream.Write(second, 0, second.Length);
                Assert.Throws<ArgumentOutOfRangeException>(() => stream.Position = 4096);
                Assert.Throws<ArgumentOutOfRangeException>(() => stream.Position = stream.Position + 1);
                stream.SetLength(expected.Length);
                stream.Flush();
            }

            Array.Copy(first, 0, expected, 0, first.Length);
            Array.Copy(second, 0, expected, 2 * DirectFileStream.Alignment * 10, second.Length);
            Assert.Equal(expected, File.ReadAllBytes(path));
        }

        [LinuxFact]
        public void AnUnalignedEndBeforeAForwardSeekIsCutToTheLastByteWritten()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "short.bin");
            byte[] content = RepositoryFixture.Random(5000, 3);
            using (DirectFileStream stream = DirectFileStream.TryCreateNew(path)!)
            {
                stream.Write(content, 0, 4096);
                stream.Position = 4096; // no move: the next write continues the block
                stream.Write(content, 4096, 904);
                stream.Flush();
            }

            Assert.Equal(content, File.ReadAllBytes(path));
        }

        [LinuxFact]
        public void RefusesToReplaceAnExistingFile()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("taken.bin", new byte[] { 1, 2, 3 });

            var error = Assert.Throws<IOException>(() => DirectFileStream.TryCreateNew(path));

            Assert.Contains("taken.bin", error.Message, StringComparison.Ordinal);
            Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
        }
    }
}
