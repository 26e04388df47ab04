using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Platform;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// A folder repository as on Windows, its reparse tags told by the in-memory handle layer on real files (runs on any OS):
    /// on a volume with Data Deduplication every optimised chunk becomes a reparse point, and in OneDrive every file and folder
    /// may be a placeholder. Those are read, listed and verified as any other; a link is still refused.
    /// </summary>
    public sealed class ReparsePointRepositoryTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void ARepositoryWhoseFilesAndFoldersAreKeptByAFilterIsOpenedListedReadAndVerified(uint tag)
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(3 * Chunk, 1);
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", content));
            var tags = new FolderHandlesInMemory();
            foreach (string entry in Directory.EnumerateFileSystemEntries(fixture.RepositoryPath, "*", SearchOption.AllDirectories))
            {
                tags.ReparsePoint(entry, tag);
            }

            BackupRepository repository = BackupRepository.Open(fixture.RepositoryPath, new WindowsTaggedFileOps(tags));
            RestorePoint listed = Assert.Single(repository.ListRestorePoints());
            Assert.Equal(point.Id, listed.Id);
            RestorePointVerification verified = repository.Verify(listed, CancellationToken.None);
            Assert.True(verified.IsValid, string.Join("; ", verified.Problems));
            Assert.Equal(content, RepositoryFixture.ReadFirstFile(repository, listed));

            Assert.Contains(Path.Combine(repository.PointsFolder, point.Id + ".json"), tags.Read);
            Assert.All(fixture.ChunkFiles(), chunk => Assert.Contains(chunk, tags.Read));
            Assert.Empty(tags.OpenNow);
        }

        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void AChunkOrManifestThatRedirectsTheNameIsNotRead(uint tag)
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(2 * Chunk, 1)));
            string chunk = fixture.Repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            var tags = new FolderHandlesInMemory();
            tags.ReparsePoint(chunk, tag);
            BackupRepository repository = BackupRepository.Open(fixture.RepositoryPath, new WindowsTaggedFileOps(tags));

            ChunkProblem problem = Assert.Single(repository.Verify(repository.GetRestorePoint(point.Id), CancellationToken.None).Problems);
            Assert.Equal(ChunkProblemKind.Damaged, problem.ProblemValue);
            Assert.Contains($"(reparse tag 0x{tag:X8})", problem.Detail, StringComparison.Ordinal);
            Assert.DoesNotContain(chunk, tags.Read);

            string manifest = Path.Combine(repository.PointsFolder, point.Id + ".json");
            tags.ReparsePoint(manifest, tag);
            tags.Read.Clear();
            VmQuiesceException unreadable = Assert.Throws<VmQuiesceException>(() => repository.ListRestorePoints());
            Assert.Equal("RestorePointUnreadable", unreadable.ErrorId);
            Assert.Contains($"(reparse tag 0x{tag:X8})", unreadable.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(manifest, tags.Read);
        }

        [Theory]
        [InlineData(0xA0000003u, "points")] // IO_REPARSE_TAG_MOUNT_POINT: a junction
        [InlineData(0xA000000Cu, "chunks")] // IO_REPARSE_TAG_SYMLINK
        [InlineData(0xA0000003u, "chunks/3f")]
        public void AFolderOfTheLayoutThatRedirectsTheNameIsRefused(uint tag, string folder)
        {
            using var fixture = new RepositoryFixture();
            string refusedFolder = Path.Combine(fixture.RepositoryPath, folder.Replace('/', Path.DirectorySeparatorChar));
            var tags = new FolderHandlesInMemory();
            tags.ReparsePoint(refusedFolder, tag);

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(fixture.RepositoryPath, new WindowsTaggedFileOps(tags)));
            Assert.Equal("RepositoryLayoutUnsafe", refused.ErrorId);
            Assert.Contains($"'{refusedFolder}' in the repository '{fixture.RepositoryPath}' is {ReparsePoints.Describe(tag)}", refused.Message, StringComparison.Ordinal);
        }
    }
}
