using System;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Platform;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// Files in a repository that someone else may have written: links, FIFOs and devices where regular files
    /// belong, and files far larger than any real one. Each is refused by name; none is followed or waited on.
    /// </summary>
    public class HostileRepositoryFileTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        /// <summary>Long enough for any real verify here; a read blocked on a FIFO never ends.</summary>
        private static readonly TimeSpan Hang = TimeSpan.FromSeconds(60);

        [LinuxFact]
        public void AFifoInPlaceOfAChunkIsReportedDamagedInsteadOfHangingTheVerify()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(2 * Chunk, 1)));
            string chunk = fixture.Repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            File.Delete(chunk);
            HostCommand.RunChecked("mkfifo", new[] { chunk });
            try
            {
                Task<RestorePointVerification> verify = Task.Run(() => fixture.Repository.Verify(point, CancellationToken.None));

                Assert.True(verify.Wait(Hang), "the verify is still waiting on the FIFO");
                ChunkProblem problem = verify.Result.Problems.Single();
                Assert.Equal(ChunkProblemKind.Damaged, problem.ProblemValue);
                Assert.Contains("a FIFO", problem.Detail);
            }
            finally
            {
                Fifo.Release(chunk);
            }
        }

        [LinuxFact]
        public void AChunkThatIsALinkIsNotFollowedEvenToTheRightContent()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1)));
            string chunk = fixture.Repository.Chunks.PathOf(point.Files[0].Chunks[0]!);
            string elsewhere = Path.Combine(fixture.Root, "elsewhere");
            File.Move(chunk, elsewhere);
            File.CreateSymbolicLink(chunk, elsewhere);

            RestorePointVerification result = fixture.Repository.Verify(point, CancellationToken.None);

            Assert.Contains("a symbolic link", result.Problems.Single().Detail);
        }

        [LinuxFact]
        public void AManifestThatIsALinkIsUnreadableAndItsTargetIsNotQuoted()
        {
            using var fixture = new RepositoryFixture();
            string secret = fixture.WriteFile("secret.txt", System.Text.Encoding.ASCII.GetBytes("{\"schema\": \"root-password-hunter2\""));
            File.CreateSymbolicLink(Path.Combine(fixture.RepositoryPath, "points", "20260101T000000Z-00000001.json"), secret);

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.ListRestorePoints());

            Assert.Equal("RestorePointUnreadable", e.ErrorId);
            Assert.Contains("a symbolic link", e.Message);
            Assert.DoesNotContain("hunter2", e.Message);
        }

        [LinuxFact]
        public void AManifestLargerThanAnyRealOneIsNotRead()
        {
            using var fixture = new RepositoryFixture();
            string huge = Path.Combine(fixture.RepositoryPath, "points", "20260101T000000Z-00000002.json");
            using (var file = new FileStream(huge, FileMode.CreateNew))
            {
                file.SetLength(BackupRepository.MaxManifestBytes + 1); // sparse: no disk used
            }

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => fixture.Repository.ListRestorePoints());

            Assert.Equal("RestorePointUnreadable", e.ErrorId);
            Assert.Contains($"at most {BackupRepository.MaxManifestBytes:N0} bytes", e.Message);
        }

        [LinuxFact]
        public void ALockThatIsADeviceOrAFifoIsReportedWithoutWaitingOnIt()
        {
            using var fixture = new RepositoryFixture();
            string exclusive = Path.Combine(fixture.RepositoryPath, "locks", "exclusive.lock");
            File.CreateSymbolicLink(exclusive, "/dev/zero");
            Task<VmQuiesceException> link = Task.Run(() => Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup")));
            Assert.True(link.Wait(Hang), "reading /dev/zero as a lock never ends");
            Assert.Equal("RepositoryLockStale", link.Result.ErrorId);

            File.Delete(exclusive);
            HostCommand.RunChecked("mkfifo", new[] { exclusive });
            try
            {
                Task<VmQuiesceException> fifo = Task.Run(() => Assert.Throws<VmQuiesceException>(() => fixture.Repository.LockShared("backup")));
                Assert.True(fifo.Wait(Hang), "the lock read is still waiting on the FIFO");
                Assert.Equal("RepositoryLockStale", fifo.Result.ErrorId);
            }
            finally
            {
                Fifo.Release(exclusive);
            }
        }
    }
}
