using System;
using System.IO;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// The host key folder is the whole test run's (<see cref="TestKeyFolder"/>): a FIFO or device planted in it, beside
    /// no other test, so none that counts the folder's files sees it.
    /// </summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class HostKeyFolderCollection
    {
        public const string Name = "host key folder";
    }

    /// <summary>Special files in the host key folder: each is refused by name, none waited on or read for ever.</summary>
    [Collection(HostKeyFolderCollection.Name)]
    public sealed class HostKeyFolderSpecialFileTests : IDisposable
    {
        private readonly RepositoryFixture _fixture = new RepositoryFixture();

        public void Dispose() => _fixture.Dispose();

        [LinuxFact]
        public void AHostKeyFileThatIsAFifoOrADeviceIsNamedUnreadInsteadOfHangingTheOpen()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", _fixture.WriteTextAndRandomDisk("disk.img", 13));
            string keyFile = HostKeyStore.PathOf(repository.Encryption.RepositoryId!);
            File.Delete(keyFile);
            Fifo.Make(keyFile);
            try
            {
                BackupRepository opened = Fifo.Within(keyFile, () => BackupRepository.Open(repository.Path));
                var e = Assert.Throws<VmQuiesceException>(() => opened.GetRestorePoint(point.Id));
                Assert.Equal("RepositoryKeyFileInvalid", e.ErrorId);
                Assert.Contains($"'{keyFile}' is a FIFO", e.Message);

                // A link to a device reads for ever.
                File.Delete(keyFile);
                File.CreateSymbolicLink(keyFile, "/dev/zero");
                opened = Fifo.Within(keyFile, () => BackupRepository.Open(repository.Path));
                e = Assert.Throws<VmQuiesceException>(() => opened.GetRestorePoint(point.Id));
                Assert.Contains($"'{keyFile}' is a character device", e.Message);
            }
            finally
            {
                File.Delete(keyFile);
            }
        }

        [LinuxFact]
        public void AFifoAmongTheHostKeyFilesDoesNotHangTheOpenOfAnUnencryptedRepository()
        {
            // The downgrade check reads every key file of the folder for the repository it records.
            string planted = Path.Combine(HostKeyStore.Folder, "planted-" + Guid.NewGuid().ToString("N") + ".key");
            Directory.CreateDirectory(HostKeyStore.Folder);
            Fifo.Make(planted);
            try
            {
                Assert.Equal(_fixture.RepositoryPath, Fifo.Within(planted, () => BackupRepository.Open(_fixture.RepositoryPath).Path));
            }
            finally
            {
                File.Delete(planted);
            }
        }
    }
}
