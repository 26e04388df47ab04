using System;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Restore
{
    public class ResultCompositionTests
    {
        private static readonly BootCheckResult FailedBoot =
            new BootCheckResult(false, TimeSpan.FromSeconds(90), Array.Empty<GuestFileSystem>(), Array.Empty<DiskCheck>(), "the guest agent did not answer");

        [Fact]
        public void ABootCheckMakesANewVerificationAndLeavesTheDataCheckAsItWas()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm", fixture.WriteFile("disk.img", RepositoryFixture.Random(100, 1)));
            RestorePointVerification data = fixture.Repository.Verify(point, CancellationToken.None);

            RestorePointVerification booted = data.WithBoot(FailedBoot);

            Assert.Null(data.Boot);
            Assert.Equal(VerificationStatus.Ok, data.StatusValue);
            Assert.Same(FailedBoot, booted.Boot);
            Assert.Equal(VerificationStatus.BootFailed, booted.StatusValue);
            Assert.Equal(data.ChunksChecked, booted.ChunksChecked);
            Assert.Same(data.RestorePoint, booted.RestorePoint);
        }

        [Fact]
        public void ABootCheckMakesANewRestoreResultAndLeavesTheRestoreAsItWas()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm", fixture.WriteFile("disk.img", RepositoryFixture.Random(100, 2)));
            var engine = new RestoreEngine(fixture.Repository);
            RestoreResult restored = engine.Run(engine.Plan(new RestoreRequest(point) { Destination = System.IO.Path.Combine(fixture.Root, "restored") }, CancellationToken.None), null, CancellationToken.None);

            RestoreResult verified = restored.WithVerification(FailedBoot);

            Assert.Null(restored.Verification);
            Assert.Same(FailedBoot, verified.Verification);
            Assert.Equal(restored.Files, verified.Files);
            Assert.Equal(restored.Revert, verified.Revert);
            Assert.Equal(restored.Destination, verified.Destination);
        }

        [Fact]
        public void TheCmdletsSeeOnlyThePublicCoreSoTheyCannotWriteIntoItsResults()
        {
            var friends = typeof(BackupRepository).Assembly.GetCustomAttributes<InternalsVisibleToAttribute>().Select(attribute => attribute.AssemblyName);

            Assert.DoesNotContain("VmQuiesce", friends);
        }
    }
}
