using System;
using System.Collections.Generic;
using System.IO;
using VmQuiesce.Core.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// A lock file of a folder repository that cannot be read because the disk or file system fails says nothing about
    /// its holder, who may be alive: -RemoveStaleLock must not remove it, and the operation fails. Only what is there
    /// and is not a lock (text that does not parse, a link or FIFO: see RepositoryLockTests and
    /// HostileRepositoryFileTests) counts as stale.
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

            Assert.Contains("Input/output error", Assert.Throws<IOException>(acquire).Message);
            Assert.True(File.Exists(held));
            Assert.Empty(warnings);
        }

        /// <summary>A disk that fails every read of a lock file.</summary>
        private sealed class FailingDisk : RepositoryFileOps
        {
            public override string ReadSmallText(string path) => throw new IOException($"Input/output error reading '{path}'");
        }
    }
}
