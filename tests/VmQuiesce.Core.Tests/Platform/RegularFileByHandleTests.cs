using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Logon;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>
    /// Files read as on Windows: opened once without following a reparse point and checked on that handle, their reparse
    /// tags told by the in-memory handle layer on real files (runs on any OS); the real layer in the GitHub Actions Windows job.
    /// </summary>
    public sealed class RegularFileByHandleTests : IDisposable
    {
        private readonly string _root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-regularfile-" + Guid.NewGuid().ToString("N"))).FullName;
        private readonly FolderHandlesInMemory _tags = new FolderHandlesInMemory();

        public void Dispose() => Directory.Delete(_root, recursive: true);

        private string Written(string name, string text)
        {
            string path = Path.Combine(_root, name);
            File.WriteAllText(path, text);
            return path;
        }

        /// <summary>Deduplicated chunks, OneDrive and other cloud placeholders, WOF-compressed and HSM files are read in full.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void AFileKeptByAFilterIsReadThroughItsOwnCheckedHandle(uint tag)
        {
            string chunk = Written("chunk", "the chunk's bytes");
            _tags.ReparsePoint(chunk, tag);

            Assert.Equal("the chunk's bytes", RegularFile.ReadAllText(chunk, 1024, _tags));
            Assert.Equal(Encoding.ASCII.GetBytes("the chunk's bytes"), RegularFile.ReadAllBytes(chunk, 1024, _tags).ToArray());
            using (FileStream? stream = RegularFile.TryOpenRead(chunk, 1024, _tags))
            {
                Assert.Equal("the chunk's bytes".Length, Assert.IsType<FileStream>(stream).Length);
            }

            Assert.Equal(new[] { chunk, chunk, chunk }, _tags.Read);
            Assert.Empty(_tags.OpenNow);
        }

        /// <summary>Symbolic links, junctions and mount points, WSL and container links, and a third party's name surrogate.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void AFileThatRedirectsTheNameIsRefusedUnread(uint tag)
        {
            string chunk = Written("chunk", "what the link leads to");
            _tags.ReparsePoint(chunk, tag);

            UnexpectedFileException refused = Assert.Throws<UnexpectedFileException>(() => RegularFile.OpenRead(chunk, 1024, _tags));
            Assert.Equal(ReparsePoints.Describe(tag), refused.Found);
            Assert.Throws<UnexpectedFileException>(() => RegularFile.TryOpenRead(chunk, 1024, _tags));
            Assert.Empty(_tags.Read);
            Assert.Empty(_tags.OpenNow);
        }

        [Fact]
        public void AFolderNothingAndAFileTooLargeAreNoFileToRead()
        {
            string folder = Directory.CreateDirectory(Path.Combine(_root, "folder")).FullName;
            string missing = Path.Combine(_root, "missing");
            _tags.Missing(missing);
            string large = Written("large", new string('x', 2048));
            _tags.ReparsePoint(large, 0x80000013u);

            Assert.Equal("a folder", Assert.Throws<UnexpectedFileException>(() => RegularFile.OpenRead(folder, 1024, _tags)).Found);
            Assert.Throws<FileNotFoundException>(() => RegularFile.OpenRead(missing, 1024, _tags));
            Assert.Null(RegularFile.TryOpenRead(missing, 1024, _tags));
            Assert.Equal($"{2048:N0} bytes long", Assert.Throws<UnexpectedFileException>(() => RegularFile.OpenRead(large, 1024, _tags)).Found);
            Assert.Empty(_tags.OpenNow);
        }

        /// <summary>Runs in the GitHub Actions Windows job: the real handle layer reads a junction's tag and refuses it unread.</summary>
        [WindowsFact]
        public void OnWindowsAJunctionIsRefusedAsAFileToRead()
        {
            string target = Directory.CreateDirectory(Path.Combine(_root, "target")).FullName;
            string junction = Path.Combine(_root, "junction");
            VmFolderLinkTests.MakeJunction(junction, target);

            UnexpectedFileException refused = Assert.Throws<UnexpectedFileException>(() => RegularFile.OpenRead(junction, 1024));
            Assert.Contains("(reparse tag 0xA0000003)", refused.Found, StringComparison.Ordinal);
            Directory.Delete(junction);
        }

        /// <summary>
        /// Runs in the GitHub Actions Windows job: a file compressed by the Windows Overlay Filter (compact /EXE) is a reparse
        /// point that keeps its name, as a deduplicated chunk is; it is read in full, through its filter, not as the empty stub
        /// a handle opened on the reparse point itself reads.
        /// </summary>
        [WindowsFact]
        public void OnWindowsAFileCompressedByTheOverlayFilterIsReadInFull()
        {
            string text = string.Concat(Enumerable.Repeat("a chunk of a repository on a compressed volume\n", 20_000));
            string file = Written("compressed", text);
            CompressWithTheOverlayFilter(file);

            Assert.Equal(text, RegularFile.ReadAllText(file, 4L * 1024 * 1024));
        }

        /// <summary>Windows: compresses <paramref name="file"/> as CompactOS does (compact /EXE), which makes it a WOF reparse point.</summary>
        internal static void CompressWithTheOverlayFilter(string file)
        {
            var compact = new ProcessStartInfo(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.System), "compact.exe"), $"/C /EXE:XPRESS4K \"{file}\"")
            {
                UseShellExecute = false,
            };
            using (Process process = Process.Start(compact)!)
            {
                process.WaitForExit();
                Assert.Equal(0, process.ExitCode);
            }

            using IFolderHandle? entry = ReparsePoints.ThisHostsTags!.Open(file, ReparsePoints.ReadAttributes);
            Assert.Equal(0x80000017u, Assert.IsAssignableFrom<IFolderHandle>(entry).ReparseTag); // IO_REPARSE_TAG_WOF: compact made a reparse point
        }
    }
}
