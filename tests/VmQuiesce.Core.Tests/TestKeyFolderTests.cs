using System;
using VmQuiesce.Core.Repository.Keys;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    public class TestKeyFolderTests
    {
        [Fact]
        public void TheTestsKeepHostKeyFilesInAFolderOfTheirOwnHoweverTheyAreRun()
        {
            // No static constructor here sets it: only the assembly's initializer (or build.ps1) can have.
            Assert.False(string.IsNullOrEmpty(Environment.GetEnvironmentVariable(HostKeyStore.FolderVariable)));
            Assert.NotEqual("/etc/vmquiesce/keys", HostKeyStore.Folder);
        }
    }
}
