using System;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Faults;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>Making a repository: private to root, resumable after any interruption, safe beside another creator.</summary>
    public class RepositoryCreationTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void AChunkSizeOutOfRangeIsNamedInKiBAndMiBAndNothingIsMade()
        {
            string path = Path.Combine(Path.GetTempPath(), "vmquiesce-chunksize-" + Guid.NewGuid().ToString("N"));

            var error = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(path, 100_000));

            Assert.Equal("InvalidChunkSize", error.ErrorId);
            Assert.Contains("100000 bytes (97.7 KiB)", error.Message, StringComparison.Ordinal);
            Assert.Contains("4 KiB blocks from 64 KiB to 64 MiB", error.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(path));
        }

        [LinuxFact]
        public void ANewRepositoryIsPrivateToItsOwnerFoldersAndFiles()
        {
            using var fixture = new RepositoryFixture();
            fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1)));
            using var held = fixture.Repository.LockShared("test");

            Assert.Equal(0x1C0, Mode(fixture.RepositoryPath));
            foreach (string folder in Directory.EnumerateDirectories(fixture.RepositoryPath, "*", SearchOption.AllDirectories))
            {
                Assert.True(Mode(folder) == 0x1C0, $"{folder} is {Convert.ToString(Mode(folder), 8)}");
            }

            var files = Directory.EnumerateFiles(fixture.RepositoryPath, "*", SearchOption.AllDirectories).ToList();
            Assert.Contains(files, file => file.Contains("chunks", StringComparison.Ordinal));
            Assert.Contains(files, file => file.Contains("points", StringComparison.Ordinal));
            Assert.Contains(files, file => file.Contains("locks", StringComparison.Ordinal));
            foreach (string file in files)
            {
                Assert.True(Mode(file) == 0x180, $"{file} is {Convert.ToString(Mode(file), 8)}");
            }

            Assert.Null(RepositoryLayout.DescribeWideAccess(fixture.RepositoryPath));
        }

        [ThrowawayUserFact]
        public void AnotherLocalUserCannotReadAGuestsDataFromTheChunks()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1)));
            string chunk = fixture.Repository.Chunks.PathOf(point.Files[0].Chunks[0]!);
            // The temp root is open to everyone: only the repository's own modes stand in the way.
            Assert.Equal(0, user.Run("test", "-x", fixture.Root).ExitCode);

            Assert.NotEqual(0, user.Run("cat", chunk).ExitCode);
            Assert.NotEqual(0, user.Run("ls", fixture.RepositoryPath).ExitCode);

            // A repository someone opened up is reported, with what it exposes.
            File.SetUnixFileMode(fixture.RepositoryPath, (UnixFileMode)0x1ED); // 0755
            Assert.Contains("mode 0755", RepositoryLayout.DescribeWideAccess(fixture.RepositoryPath));
            user.Own(fixture.RepositoryPath);
            Assert.Contains($"user id {user.Uid}", RepositoryLayout.DescribeWideAccess(fixture.RepositoryPath));
        }

        [Fact]
        public void AnInterruptedCreationIsCompletedByTheNextOneInsteadOfBeingRefusedForever()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "interrupted");
            // What a creation killed before its marker leaves: some of the folders, a temp marker.
            Directory.CreateDirectory(Path.Combine(path, "chunks", "00"));
            Directory.CreateDirectory(Path.Combine(path, "chunks", "01"));
            File.WriteAllText(Path.Combine(path, ".tmp-vmquiesce-repository.json.0123"), "{ \"format\": \"VmQu");

            var readOnly = Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(path));
            BackupRepository completed = BackupRepository.OpenOrCreate(path, Chunk);
            RestorePoint point = RepositoryFixture.BackUp(completed, "vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 2)));

            Assert.Equal("RepositoryCreationInterrupted", readOnly.ErrorId);
            Assert.True(BackupRepository.Open(path).Verify(point, CancellationToken.None).IsValid);
            Assert.Equal(256, Directory.GetDirectories(Path.Combine(path, "chunks")).Length);
        }

        [Fact]
        public void AFolderWithOtherFilesIsStillNotTakenOver()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "other");
            Directory.CreateDirectory(Path.Combine(path, "chunks"));
            File.WriteAllText(Path.Combine(path, "chunks", "notes.txt"), "user data");

            Assert.Equal("RepositoryNotRecognized", Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(path, Chunk)).ErrorId);
            Assert.True(File.Exists(Path.Combine(path, "chunks", "notes.txt")));
        }

        [Fact]
        public void TheLoserOfACreationRaceUsesTheWinnersRepository()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "raced");
            // The other creator publishes its marker (a different chunk size) just before this one does.
            var ops = new MarkerFirstOps(() => BackupRepository.OpenOrCreate(path, 2 * Chunk));

            BackupRepository loser = BackupRepository.OpenOrCreate(path, Chunk, ops);

            Assert.Equal(2 * Chunk, loser.ChunkSize);
            Assert.Equal(2 * Chunk, BackupRepository.Open(path).ChunkSize);
            Assert.Empty(Directory.EnumerateFiles(path, ".tmp-*"));
        }

        [Fact]
        public async Task ConcurrentFirstBackupsAllSucceedIntoOneRepository()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 3));
            for (int round = 0; round < 10; round++)
            {
                string path = Path.Combine(fixture.Root, "race" + round);
                using var start = new Barrier(4);
                var creators = Enumerable.Range(0, 4).Select(i => Task.Run(() =>
                {
                    start.SignalAndWait();
                    return RepositoryFixture.BackUp(BackupRepository.OpenOrCreate(path, Chunk), "vm" + i, disk);
                })).ToArray();

                await Task.WhenAll(creators);

                Assert.Equal(4, BackupRepository.Open(path).ListRestorePoints().Count);
            }
        }

        [LinuxRootFact]
        public void RunningOutOfInodesIsATypedErrorAndTheNextCreationCompletesTheRepository()
        {
            using var fs = new ScratchFileSystem("size=16m,nr_inodes=100");
            string path = Path.Combine(fs.Path, "repo");

            var full = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(path, Chunk));
            Assert.Equal("RepositoryDiskFull", full.ErrorId);
            Assert.Contains("inodes", full.Remedy);
            Assert.Equal("RepositoryCreationInterrupted", Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(path)).ErrorId);

            fs.Remount("nr_inodes=2000");
            BackupRepository repository = BackupRepository.OpenOrCreate(path, Chunk);

            Assert.Equal(Chunk, BackupRepository.Open(repository.Path).ChunkSize);
        }

        [LinuxRootFact]
        public void ABackupIntoAFullFileSystemIsATypedErrorAndLeavesNoPoint()
        {
            using var fixture = new RepositoryFixture();
            using var fs = new ScratchFileSystem("size=1m");
            BackupRepository repository = BackupRepository.OpenOrCreate(Path.Combine(fs.Path, "repo"), Chunk);
            string disk = fixture.WriteFile("big.img", RepositoryFixture.Random(40 * Chunk, 7));

            var e = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(repository, "vm1", disk));

            Assert.Equal("RepositoryDiskFull", e.ErrorId);
            Assert.Contains(repository.Path, e.Message);
            Assert.Empty(BackupRepository.Open(repository.Path).ListRestorePoints());
        }

        [Fact]
        public void AFailedFirstBackupLeavesNoRepositoryBehindButAnEarlierOneStays()
        {
            using var fixture = new RepositoryFixture();
            string fresh = Path.Combine(fixture.Root, "fresh");
            BackupRepository made = BackupRepository.OpenOrCreate(fresh, Chunk);
            Assert.True(made.RemoveIfUnused());
            Assert.False(Directory.Exists(fresh));

            string empty = Path.Combine(fixture.Root, "given");
            Directory.CreateDirectory(empty);
            Assert.True(BackupRepository.OpenOrCreate(empty, Chunk).RemoveIfUnused());
            Assert.Empty(Directory.EnumerateFileSystemEntries(empty));

            Assert.False(BackupRepository.OpenOrCreate(fixture.RepositoryPath, Chunk).RemoveIfUnused());
            BackupRepository used = BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "used"), Chunk);
            RepositoryFixture.BackUp(used, "vm1", fixture.WriteFile("b.img", RepositoryFixture.Random(Chunk, 4)));
            Assert.False(used.RemoveIfUnused());
            Assert.Single(BackupRepository.Open(used.Path).ListRestorePoints());
        }

        [Fact]
        public void PathsThatAreFilesOrWildcardsAreRefusedByName()
        {
            using var fixture = new RepositoryFixture();
            string file = fixture.WriteFile("plain.txt", new byte[] { 1 });

            var isFile = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(file, Chunk));
            var underFile = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(Path.Combine(file, "repo"), Chunk));
            var wildcard = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(Path.Combine(fixture.Root, "*"), Chunk));

            Assert.Equal("RepositoryPathIsFile", isFile.ErrorId);
            Assert.Equal("RepositoryPathIsFile", underFile.ErrorId);
            Assert.Contains($"'{file}' is a file", underFile.Message);
            Assert.Equal("InvalidRepositoryPath", wildcard.ErrorId);
            Assert.Contains("'*'", wildcard.Message);
            Assert.False(Directory.Exists(Path.Combine(fixture.Root, "*")));
        }

        [LinuxFact]
        public void AChunkFolderThatIsALinkIsRefusedBeforeABackupOrPruneGoesThroughIt()
        {
            using var fixture = new RepositoryFixture();
            string outside = Path.Combine(fixture.Root, "outside");
            Directory.CreateDirectory(outside);
            string victim = Path.Combine(outside, new string('a', 64));
            File.WriteAllText(victim, "not a chunk of this repository");
            string fanOut = Path.Combine(fixture.RepositoryPath, "chunks", "aa");
            Directory.Delete(fanOut);
            File.CreateSymbolicLink(fanOut, outside);

            var e = Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(fixture.RepositoryPath));

            Assert.Equal("RepositoryLayoutUnsafe", e.ErrorId);
            Assert.Contains(fanOut, e.Message);
            Assert.True(File.Exists(victim));
        }

        [ThrowawayUserFact]
        public void ARepositoryIsNotMadeThroughALinkAnotherUserPutOnTheWayButInTheirOwnFolderItIs()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string shared = Path.Combine(fixture.Root, "shared");
            Directory.CreateDirectory(shared);
            File.SetUnixFileMode(shared, (UnixFileMode)0x3FF); // 1777, as /tmp
            string secret = Path.Combine(fixture.Root, "root-only");
            Directory.CreateDirectory(secret);
            File.SetUnixFileMode(secret, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string planted = Path.Combine(shared, "backups");
            Assert.Equal(0, user.Run("/bin/ln", "-s", secret, planted).ExitCode);
            string theirs = Path.Combine(shared, "theirs");
            Assert.Equal(0, user.Run("/bin/mkdir", theirs).ExitCode);

            var e = Assert.Throws<VmQuiesceException>(() => BackupRepository.OpenOrCreate(Path.Combine(planted, "repo"), Chunk));
            BackupRepository mine = BackupRepository.OpenOrCreate(Path.Combine(theirs, "repo"), Chunk);

            Assert.Equal("RepositoryWriteFailed", e.ErrorId);
            Assert.Contains($"made by user id {user.Uid}", e.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.EnumerateFileSystemEntries(secret));
            Assert.Equal(0x1C0, Mode(mine.Path));
            Assert.Equal(0u, RegularFile.StatNoFollow(mine.Path)!.Value.Uid);
        }

        private static int Mode(string path) => RegularFile.StatNoFollow(path)!.Value.Permissions;

        /// <summary>Another creator's marker appears right before this creator publishes its own.</summary>
        internal sealed class MarkerFirstOps : RepositoryFileOps
        {
            private readonly Action _otherCreator;
            private bool _done;

            public MarkerFirstOps(Action otherCreator) => _otherCreator = otherCreator;

            public override bool MoveNew(string from, string to)
            {
                if (!_done)
                {
                    _done = true;
                    _otherCreator();
                }

                return base.MoveNew(from, to);
            }
        }
    }
}
