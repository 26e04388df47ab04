using System;
using System.Collections.Generic;
using System.IO;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Faults;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// A lock file of a folder repository that cannot be read because the disk or file system fails says nothing about
    /// its holder, who may be alive: -RemoveStaleLock must not remove it, and the operation fails with a read error
    /// naming it (never a write error). Only what is there and is not a lock (text that does not parse, a link or FIFO:
    /// see RepositoryLockTests and HostileRepositoryFileTests) counts as stale.
    /// </summary>
    public sealed class RepositoryLockReadFailureTests
    {
        [Theory]
        [InlineData("exclusive.lock", true)]
        [InlineData("exclusive.lock", false)]
        [InlineData("shared-0123456789abcdef0123456789abcdef.lock", true)]
        public void A_lock_file_whose_read_fails_is_never_removed_as_stale(string name, bool prune)
        {
            using var fixture = new RepositoryFixture();
            string held = Path.Combine(fixture.RepositoryPath, RepositoryLock.FolderName, name);
            File.WriteAllText(held, "{\"pid\": 1, \"host\": \"some-other-host\", \"purpose\": \"backup\"}");
            var warnings = new List<string>();

            Action acquire = prune
                ? () => RepositoryLock.AcquireExclusive(fixture.RepositoryPath, "Remove-VmBackup (prune)", removeStale: true, warnings.Add, new FailingDisk()).Dispose()
                : () => RepositoryLock.AcquireShared(fixture.RepositoryPath, "backup", removeStale: true, warnings.Add, new FailingDisk()).Dispose();

            var error = Assert.Throws<VmQuiesceException>(acquire);
            Assert.Equal("RepositoryReadFailed", error.ErrorId);
            Assert.Contains("Input/output error", error.Message);
            Assert.True(File.Exists(held));
            Assert.Empty(warnings);
        }

        /// <summary>
        /// The same through the repository, with a lock file the kernel really fails to read (EIO, see
        /// <see cref="UnreadableFile"/>): for a backup, a prune with -RemoveStaleLock and a verify or restore, each of
        /// which reads the exclusive lock, and for a prune meeting a shared lock.
        /// </summary>
        [LinuxRootTheory]
        [InlineData("exclusive.lock", "backup")]
        [InlineData("exclusive.lock", "prune")]
        [InlineData("exclusive.lock", "verify")]
        [InlineData("shared-0123456789abcdef0123456789abcdef.lock", "prune")]
        public void A_lock_file_the_disk_fails_to_read_is_a_read_failure_naming_it(string name, string operation)
        {
            using var fixture = new RepositoryFixture();
            string held = Path.Combine(fixture.RepositoryPath, RepositoryLock.FolderName, name);
            var warnings = new List<string>();
            VmQuiesceException error;
            using (new UnreadableFile(held))
            {
                Func<RepositoryLock> acquire = operation switch
                {
                    "backup" => () => fixture.Repository.LockShared("backup", removeStale: true, warnings.Add),
                    "prune" => () => fixture.Repository.LockExclusive("Remove-VmBackup (prune)", removeStale: true, warnings.Add),
                    _ => () => fixture.Repository.LockForReading("Test-VmBackup", warnings.Add),
                };

                error = Assert.Throws<VmQuiesceException>(() => acquire().Dispose());
            }

            Assert.Equal("RepositoryReadFailed", error.ErrorId);
            Assert.Equal(FailureKind.ReadError, error.Kind);
            Assert.StartsWith($"Could not read the lock file '{held}' of the repository '{fixture.RepositoryPath}', so it was left as it is: ", error.Message);
            Assert.Contains("Input/output error", error.Message);
            Assert.StartsWith("Check the disk and the file system of the repository, then run the command again.", error.Remedy);
            Assert.True(File.Exists(held));
            Assert.Equal(new[] { name }, Array.ConvertAll(Directory.GetFiles(Path.GetDirectoryName(held)!), Path.GetFileName));
            Assert.Empty(warnings);
        }

        /// <summary>A disk that fails every read of a lock file.</summary>
        private sealed class FailingDisk : RepositoryFileOps
        {
            public override string ReadSmallText(string path) => throw new IOException($"Input/output error reading '{path}'");
        }
    }
}
