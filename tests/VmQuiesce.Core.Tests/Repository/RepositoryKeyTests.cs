using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Security;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using Xunit;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>
    /// Encrypted repositories, tampered with for real: every test backs up into a repository on disk, changes its
    /// files as someone who can write the folder (but has no key) would, and reads it back through the product.
    /// </summary>
    public sealed class RepositoryKeyTests : IDisposable
    {
        private const string VmName = "secret-vm-name";

        static RepositoryKeyTests()
        {
            // A cheap KDF keeps tests quick (host key files go to the test run's folder: see TestKeyFolder).
            PassphraseKeys.DefaultCost = new KdfCost(1024, 1, 1);
        }

        private readonly RepositoryFixture _fixture = new RepositoryFixture();

        public void Dispose() => _fixture.Dispose();

        private static string ManifestPath(BackupRepository repository, string id) => Path.Combine(repository.Path, "points", id + ".json");

        private static string MarkerPath(BackupRepository repository) => Path.Combine(repository.Path, "vmquiesce-repository.json");

        private BackupRepository NewChaCha20(string name) =>
            BackupRepository.OpenOrCreate(Path.Combine(_fixture.Root, name), RepositoryFixture.ChunkSize, RepositoryKey.Generate(), RepositoryCipher.ChaCha20Poly1305);

        private static bool RecordsRepository(string keyFile, string repository)
        {
            try
            {
                HostKeyStore.ReadKeyFile(keyFile, null, out string? recorded);
                return recorded != null && HostKeyStore.SamePlace(recorded, repository);
            }
            catch (VmQuiesceException)
            {
                return false;
            }
        }

        private static SecureString Secure(string text) => new NetworkCredential(string.Empty, text).SecurePassword;

        [Fact]
        public void TheLoserOfACreationRaceOpensTheWinnersRepositoryAndKeepsNoKeyFileOfItsOwn()
        {
            string path = Path.Combine(_fixture.Root, "raced");
            Directory.CreateDirectory(HostKeyStore.Folder);
            var before = Directory.GetFiles(HostKeyStore.Folder).ToHashSet();
            BackupRepository? winner = null;
            // The other creator publishes its marker, under a key of its own, just before this one does.
            var ops = new RepositoryCreationTests.MarkerFirstOps(() => winner = BackupRepository.OpenOrCreate(path, RepositoryFixture.ChunkSize, RepositoryKey.Generate()));

            BackupRepository loser = BackupRepository.OpenOrCreate(path, RepositoryFixture.ChunkSize, ops, RepositoryKey.Generate());

            Assert.Equal(winner!.Encryption.RepositoryId, loser.Encryption.RepositoryId);
            // Other tests write key files into the same folder meanwhile: only those recording this repository count.
            Assert.Equal(new[] { HostKeyStore.PathOf(winner.Encryption.RepositoryId!) }, Directory.GetFiles(HostKeyStore.Folder).Where(file => !before.Contains(file) && RecordsRepository(file, path)));
        }

        [Fact]
        public void EncryptedBackupRestoresAndShowsNothingOfTheGuest()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 1);
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, disk);

            Assert.True(repository.Encryption.IsEncrypted);
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(BackupRepository.Open(repository.Path), BackupRepository.Open(repository.Path).GetRestorePoint(point.Id)));
            Assert.True(repository.Verify(point, CancellationToken.None).IsValid);
            foreach (string file in Directory.EnumerateFiles(repository.Path, "*", SearchOption.AllDirectories))
            {
                string text = Encoding.ASCII.GetString(File.ReadAllBytes(file));
                Assert.DoesNotContain("MARKER-PLAINTEXT", text);
                Assert.DoesNotContain(VmName, text);
                Assert.DoesNotContain(_fixture.Root, text);
                Assert.DoesNotContain("disk.img", text);
            }
        }

        [Fact]
        public void AFailedFirstBackupIntoANewFolderLeavesNeitherTheFolderNorItsHostKeyFileButAnExistingRepositoryKeepsBoth()
        {
            string missingDisk = Path.Combine(_fixture.Root, "no-such-disk.img");
            string fresh = Path.Combine(_fixture.Root, "fresh");
            BackupRepository made = _fixture.NewEncrypted("fresh");
            string madeKey = HostKeyStore.PathOf(made.Encryption.RepositoryId!);
            Assert.True(File.Exists(madeKey));
            Assert.Equal("SourceFileNotFound", Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(made, VmName, missingDisk)).ErrorId);

            Assert.True(made.RemoveIfUnused());

            Assert.False(Directory.Exists(fresh));
            Assert.False(File.Exists(madeKey));

            // Made earlier (New-VmBackupRepository) and still empty, or holding a point: a failed backup into it is not its first.
            BackupRepository empty = _fixture.NewEncrypted("empty");
            BackupRepository used = _fixture.NewEncrypted("used");
            RepositoryFixture.BackUp(used, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 2));
            foreach (BackupRepository existing in new[] { empty, used })
            {
                BackupRepository reopened = BackupRepository.OpenOrCreate(existing.Path, RepositoryFixture.ChunkSize, RepositoryKey.Generate());
                Assert.Throws<VmQuiesceException>(() => RepositoryFixture.BackUp(reopened, VmName, missingDisk));

                Assert.False(reopened.RemoveIfUnused());

                Assert.True(File.Exists(HostKeyStore.PathOf(existing.Encryption.RepositoryId!)));
                Assert.True(File.Exists(MarkerPath(existing)));
            }
        }

        [Fact]
        public void LockOfARunningBackupNamesNoVm()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            var source = new LockWatchingSource(repository.Path, new PlainImageSource(VmName, new[] { _fixture.WriteTextAndRandomDisk("disk.img", 9) }));
            new BackupEngine(repository, workers: 2).Run(source, new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None);

            string held = Assert.Single(source.LocksSeen);
            Assert.Contains("Invoke-VmQuiescedBackup", held);
            Assert.DoesNotContain(VmName, held);
        }

        [Fact]
        public void ChunkIdsAreKeyedSoEqualContentHasOtherNamesInAnotherRepository()
        {
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 2);
            RestorePoint first = RepositoryFixture.BackUp(_fixture.NewEncrypted("one"), VmName, disk);
            RestorePoint second = RepositoryFixture.BackUp(_fixture.NewEncrypted("two"), VmName, disk);
            RestorePoint plain = _fixture.BackUp(VmName, disk);

            var firstIds = first.Files[0].Chunks.Where(id => id != null).ToList();
            Assert.Equal(6, firstIds.Count);
            Assert.Empty(firstIds.Intersect(second.Files[0].Chunks));
            Assert.Empty(firstIds.Intersect(plain.Files[0].Chunks));
            byte[] firstChunk = File.ReadAllBytes(disk).Take(RepositoryFixture.ChunkSize).ToArray();
            Assert.Equal(ChunkStore.ToHex(SHA256.HashData(firstChunk)), plain.Files[0].Chunks[0]);
        }

        [Fact]
        public void FlippedByteInAChunkIsNotAuthentic()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 3));
            string chunk = repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            byte[] bytes = File.ReadAllBytes(chunk);
            bytes[bytes.Length / 2] ^= 0x01;
            File.WriteAllBytes(chunk, bytes);

            var e = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.ReadFirstFile(repository, point));
            Assert.Equal("RestoreChunkNotAuthentic", e.ErrorId);
            Assert.Equal(FailureKind.SecurityError, e.Kind);
            ChunkProblem problem = Assert.Single(repository.Verify(point, CancellationToken.None).Problems);
            Assert.Equal(ChunkProblemKind.NotAuthentic, problem.ProblemValue);
        }

        [Fact]
        public void SwappedChunksAreNotAuthentic()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 4));
            string first = repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            string second = repository.Chunks.PathOf(point.Files[0].Chunks[2]!);
            byte[] firstBytes = File.ReadAllBytes(first);
            File.WriteAllBytes(first, File.ReadAllBytes(second));
            File.WriteAllBytes(second, firstBytes);

            Assert.Equal("RestoreChunkNotAuthentic", Assert.Throws<VmQuiesceException>(() => RepositoryFixture.ReadFirstFile(repository, point)).ErrorId);
            Assert.Equal(2, repository.Verify(point, CancellationToken.None).Problems.Count(problem => problem.ProblemValue == ChunkProblemKind.NotAuthentic));
        }

        [Fact]
        public void PlaintextChunkPlantedUnderAnIdIsNotAuthentic()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 5));
            string chunk = repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            File.WriteAllBytes(chunk, RepositoryFixture.Concat(Encoding.ASCII.GetBytes("VQCR"), new byte[RepositoryFixture.ChunkSize]));

            var e = Assert.Throws<VmQuiesceException>(() => RepositoryFixture.ReadFirstFile(repository, point));
            Assert.Equal("RestoreChunkNotAuthentic", e.ErrorId);
            Assert.Contains("not sealed", e.Message);
        }

        [Fact]
        public void PlantedPlaintextManifestIsRefusedAndNeverListed()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 6));
            // A plaintext point from a repository without keys, its target rewritten, planted under a fresh id.
            RestorePoint planted = _fixture.BackUp("planted", _fixture.WriteFile("small.img", RepositoryFixture.Random(1000, 7)));
            string text = File.ReadAllText(ManifestPath(_fixture.Repository, planted.Id)).Replace(planted.Files[0].OriginalPath.Replace("\\", "\\\\"), "/etc/cron.d/x");
            File.WriteAllText(ManifestPath(repository, planted.Id), text);

            var e = Assert.Throws<VmQuiesceException>(() => repository.GetRestorePoint(planted.Id));
            Assert.Equal("RestorePointNotAuthentic", e.ErrorId);
            Assert.Contains("is not sealed", e.Message, StringComparison.Ordinal);
            var reported = new List<VmQuiesceException>();
            IReadOnlyList<RestorePoint> listed = repository.ListRestorePoints(reported.Add);
            Assert.DoesNotContain(listed, point => point.Id == planted.Id);
            Assert.Equal("RestorePointNotAuthentic", Assert.Single(reported).ErrorId);
        }

        [Fact]
        public void ManifestFromAnotherRepositoryIsRefused()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            BackupRepository other = _fixture.NewEncrypted("other");
            RestorePoint foreign = RepositoryFixture.BackUp(other, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 8));
            File.Copy(ManifestPath(other, foreign.Id), ManifestPath(repository, foreign.Id));

            var e = Assert.Throws<VmQuiesceException>(() => repository.GetRestorePoint(foreign.Id));
            Assert.Equal("RestorePointNotAuthentic", e.ErrorId);
            Assert.Contains("another repository", e.Message);
        }

        [Fact]
        public void ChangedOrRenamedManifestIsRefused()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 9));
            string manifest = ManifestPath(repository, point.Id);
            string renamedId = "20200101T000000Z-00000000";
            File.Copy(manifest, ManifestPath(repository, renamedId));
            JsonObject envelope = JsonText.ParseObject(File.ReadAllText(manifest));
            byte[] sealedBytes = Convert.FromBase64String(envelope.GetString("sealed"));
            sealedBytes[sealedBytes.Length / 2] ^= 0x80;
            File.WriteAllText(manifest, JsonText.Serialize(envelope.With("sealed", Convert.ToBase64String(sealedBytes)), indented: true));

            Assert.Equal("RestorePointNotAuthentic", Assert.Throws<VmQuiesceException>(() => repository.GetRestorePoint(point.Id)).ErrorId);
            // A renamed copy opens as the point it was sealed as, so it is never taken for the point its name claims.
            Assert.NotEqual(renamedId, Record.Exception(() => repository.GetRestorePoint(renamedId)) == null ? repository.GetRestorePoint(renamedId).Id : null);
        }

        [Fact]
        public void ANewRepositoryTakesAesGcmWhereTheCpuHasAesInstructionsElseChaCha20()
        {
#if NETFRAMEWORK
            // Windows PowerShell 5.1 cannot ask the CPU: it keeps AES-256-GCM.
            const bool aesInstructions = true;
#else
            bool aesInstructions = System.Runtime.Intrinsics.X86.Aes.IsSupported || System.Runtime.Intrinsics.Arm.Aes.IsSupported;
#endif

            Assert.Equal(aesInstructions ? "AES-256-GCM" : "ChaCha20-Poly1305", _fixture.NewEncrypted("enc").Encryption.Algorithm);
        }

        [Fact]
        public void AChaCha20RepositoryRoundTripsAndRecordsItsCipher()
        {
            BackupRepository repository = NewChaCha20("chacha");
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 30);
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, disk);

            BackupRepository reopened = BackupRepository.Open(repository.Path);
            Assert.Equal("ChaCha20-Poly1305", reopened.Encryption.Algorithm);
            Assert.Equal("ChaCha20-Poly1305", JsonText.ParseObject(File.ReadAllText(MarkerPath(repository))).GetObject("encryption").GetString("algorithm"));
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(reopened, reopened.GetRestorePoint(point.Id)));
            Assert.True(reopened.Verify(reopened.GetRestorePoint(point.Id), CancellationToken.None).Problems.Count == 0);
            Assert.DoesNotContain(Directory.EnumerateFiles(Path.Combine(repository.Path, "chunks"), "*", SearchOption.AllDirectories), file => Encoding.ASCII.GetString(File.ReadAllBytes(file)).Contains("MARKER-PLAINTEXT"));
        }

        [Fact]
        public void AChangedChaCha20ChunkOrManifestIsNotAuthentic()
        {
            BackupRepository repository = NewChaCha20("chacha");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 31));
            string chunk = repository.Chunks.PathOf(point.Files[0].Chunks[1]!);
            byte[] bytes = File.ReadAllBytes(chunk);
            bytes[bytes.Length / 2] ^= 0x01;
            File.WriteAllBytes(chunk, bytes);

            Assert.Equal("RestoreChunkNotAuthentic", Assert.Throws<VmQuiesceException>(() => RepositoryFixture.ReadFirstFile(repository, point)).ErrorId);

            string manifest = ManifestPath(repository, point.Id);
            JsonObject envelope = JsonText.ParseObject(File.ReadAllText(manifest));
            byte[] sealedBytes = Convert.FromBase64String(envelope.GetString("sealed"));
            sealedBytes[sealedBytes.Length / 2] ^= 0x01;
            File.WriteAllText(manifest, JsonText.Serialize(envelope.With("sealed", Convert.ToBase64String(sealedBytes)), indented: true));
            Assert.Equal("RestorePointNotAuthentic", Assert.Throws<VmQuiesceException>(() => repository.GetRestorePoint(point.Id)).ErrorId);
        }

        [Fact]
        public void ARepositoryFileWhoseCipherWasChangedIsNotAuthentic()
        {
            BackupRepository repository = NewChaCha20("chacha");
            RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 32));
            string marker = MarkerPath(repository);
            File.WriteAllText(marker, File.ReadAllText(marker).Replace("\"ChaCha20-Poly1305\"", "\"AES-256-GCM\""));

            var e = Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(repository.Path));

            Assert.Equal("RepositoryNotAuthentic", e.ErrorId);
        }

        [Fact]
        public void ChangedRepositoryFileIsNotAuthentic()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            string marker = Path.Combine(repository.Path, "vmquiesce-repository.json");
            File.WriteAllText(marker, File.ReadAllText(marker).Replace($"\"chunkSize\": {RepositoryFixture.ChunkSize}", $"\"chunkSize\": {2 * RepositoryFixture.ChunkSize}"));

            Assert.Equal("RepositoryNotAuthentic", Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(repository.Path)).ErrorId);
        }

        [Fact]
        public void RepositoryFileSwappedForAnUnencryptedOneIsNotAuthentic()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint planted = _fixture.BackUp("planted", _fixture.WriteFile("small.img", RepositoryFixture.Random(1000, 13)));
            // The attacker replaces the marker by a plaintext repository's and plants a plaintext point.
            File.Copy(Path.Combine(_fixture.RepositoryPath, "vmquiesce-repository.json"), Path.Combine(repository.Path, "vmquiesce-repository.json"), overwrite: true);
            File.Copy(ManifestPath(_fixture.Repository, planted.Id), ManifestPath(repository, planted.Id));

            var e = Assert.Throws<VmQuiesceException>(() => BackupRepository.Open(repository.Path));
            Assert.Equal("RepositoryNotAuthentic", e.ErrorId);
            Assert.Contains("says it is not encrypted", e.Message);
        }

        [Fact]
        public void LegacyRepositoryStaysReadableAndSaysItIsNotEncrypted()
        {
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 10);
            RestorePoint point = _fixture.BackUp(VmName, disk);
            BackupRepository reopened = BackupRepository.Open(_fixture.RepositoryPath);

            Assert.False(reopened.Encryption.IsEncrypted);
            Assert.Equal("None", RepositorySummary.Of(reopened, e => throw e).Encryption);
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(reopened, reopened.GetRestorePoint(point.Id)));
            Assert.Equal("RestoreChunkDamaged", Assert.Throws<VmQuiesceException>(() =>
            {
                File.WriteAllBytes(reopened.Chunks.PathOf(point.Files[0].Chunks[1]!), Encoding.ASCII.GetBytes("VQCRshort"));
                RepositoryFixture.ReadFirstFile(reopened, point);
            }).ErrorId);
        }

        [Fact]
        public void NewHostRecoversTheKeyFromThePassphraseAlone()
        {
            BackupRepository repository = RepositoryKeys.CreateRepository(Path.Combine(_fixture.Root, "enc"), RepositoryFixture.ChunkSize, Secure("correct horse battery"));
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 11);
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, disk);
            Assert.True(new RepositoryKeys(repository).RemoveHostKey(force: false));

            BackupRepository onNewHost = BackupRepository.Open(repository.Path);
            Assert.False(onNewHost.Encryption.HasKey);
            Assert.Equal("RepositoryKeyNotFound", Assert.Throws<VmQuiesceException>(() => onNewHost.GetRestorePoint(point.Id)).ErrorId);
            Assert.Null(RepositorySummary.Of(onNewHost, e => throw e).RestorePoints);
            Assert.Equal("RepositoryPassphraseWrong", Assert.Throws<VmQuiesceException>(() => new RepositoryKeys(onNewHost).ImportFromPassphrase(Secure("wrong horse battery"))).ErrorId);

            string keyFile = new RepositoryKeys(onNewHost).ImportFromPassphrase(Secure("correct horse battery")).Path!;
            Assert.Equal(HostKeyStore.PathOf(onNewHost.Encryption.RepositoryId!), keyFile);
            Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(onNewHost, onNewHost.GetRestorePoint(point.Id)));
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
            }
        }

        [Fact]
        public void UnusableHostKeyFileIsNamedAndReplacedByAnImport()
        {
            BackupRepository repository = RepositoryKeys.CreateRepository(Path.Combine(_fixture.Root, "enc"), RepositoryFixture.ChunkSize, Secure("correct horse battery"));
            string disk = _fixture.WriteTextAndRandomDisk("disk.img", 13);
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, disk);
            string keyFile = HostKeyStore.PathOf(repository.Encryption.RepositoryId!);
            var broken = new Dictionary<string, Action>
            {
                ["RepositoryKeyFileInvalid"] = () => File.WriteAllText(keyFile, "{\"format\": \"VmQuiesceRepositoryKey\", \"key\": \"trunc"),
                ["RepositoryKeyMismatch"] = () => HostKeyStore.WriteKeyFile(HostKeyStore.Folder, keyFile, repository.Encryption.RepositoryId!, RepositoryKey.Generate(), repository.Path),
            };

            foreach ((string errorId, Action breakKeyFile) in broken)
            {
                breakKeyFile();

                // The repository still opens: it is described, and reading says what is wrong with the key file.
                BackupRepository opened = BackupRepository.Open(repository.Path);
                Assert.False(RepositorySummary.Of(opened, e => throw e).KeyAvailable);
                var e = Assert.Throws<VmQuiesceException>(() => opened.GetRestorePoint(point.Id));
                Assert.Equal(errorId, e.ErrorId);
                Assert.Contains(keyFile, e.Message);
                Assert.Contains("Import-VmBackupRepositoryKey", e.Remedy);

                Assert.Equal(keyFile, new RepositoryKeys(opened).ImportFromPassphrase(Secure("correct horse battery")).Path);
                BackupRepository repaired = BackupRepository.Open(repository.Path);
                Assert.Equal(File.ReadAllBytes(disk), RepositoryFixture.ReadFirstFile(repaired, repaired.GetRestorePoint(point.Id)));
            }
        }

        [Fact]
        public void ExportedKeyFileImportsAndTheLastCopyIsKept()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 12));
            var keys = new RepositoryKeys(repository);
            string exported = Path.Combine(_fixture.Root, "exported", "repo.key");
            keys.Export(exported);
            Assert.Equal("KeyFileExists", Assert.Throws<VmQuiesceException>(() => keys.Export(exported)).ErrorId);
            Assert.Equal("RepositoryKeyLastCopy", Assert.Throws<VmQuiesceException>(() => keys.RemoveHostKey(force: false)).ErrorId);
            Assert.True(keys.RemoveHostKey(force: true));

            var onNewHost = new RepositoryKeys(BackupRepository.Open(repository.Path));
            onNewHost.ImportFromKeyFile(exported);
            Assert.Equal(point.Id, BackupRepository.Open(repository.Path).GetRestorePoint(point.Id).Id);

            // Another repository's key file is refused by its repository id.
            BackupRepository other = _fixture.NewEncrypted("other");
            Assert.Equal("RepositoryKeyFileInvalid", Assert.Throws<VmQuiesceException>(() => new RepositoryKeys(other).ImportFromKeyFile(exported)).ErrorId);
        }

        /// <summary>
        /// A repository made under <paramref name="name"/> with its own key and passphrase, whose repository file
        /// claims the repository id of <paramref name="victim"/> (ids are not secret), with a check that holds under
        /// its own key: what someone who can write a folder can make. The victim's key file is set aside meanwhile.
        /// </summary>
        private BackupRepository ForgeWithIdOf(BackupRepository victim, string name, string passphrase)
        {
            string victimId = victim.Encryption.RepositoryId!;
            string victimKeyFile = HostKeyStore.PathOf(victimId);
            byte[] victimKeyFileBytes = File.ReadAllBytes(victimKeyFile);

            var forgerKey = RepositoryKey.Generate();
            BackupRepository forged = BackupRepository.OpenOrCreate(Path.Combine(_fixture.Root, name), RepositoryFixture.ChunkSize, forgerKey);
            string ownId = forged.Encryption.RepositoryId!;
            string CheckFor(string id) => Convert.ToBase64String(RepositoryKey.Mac(forgerKey.MarkerKey, $"{id}\n{forgerKey.KeyId}\n{RepositoryFixture.ChunkSize}\n{forged.Encryption.Algorithm}\nHMAC-SHA256"));
            string marker = File.ReadAllText(MarkerPath(forged));
            Assert.Contains(CheckFor(ownId), marker);
            File.WriteAllText(MarkerPath(forged), marker.Replace(ownId, victimId).Replace(CheckFor(ownId), CheckFor(victimId)));
            HostKeyStore.Remove(ownId);

            HostKeyStore.Write(victimId, forgerKey, forged.Path);
            new RepositoryKeys(BackupRepository.Open(forged.Path)).AddPassphrase(Secure(passphrase));
            File.WriteAllBytes(victimKeyFile, victimKeyFileBytes);
            return BackupRepository.Open(forged.Path);
        }

        [Fact]
        public void RemovingTheHostKeyFileOfARepositoryClaimingAnotherRepositorysIdIsRefusedEvenWithForce()
        {
            BackupRepository victim = _fixture.NewEncrypted("victim");   // its host key file is its only copy
            RestorePoint point = RepositoryFixture.BackUp(victim, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 21));
            BackupRepository forged = ForgeWithIdOf(victim, "forged", "forger's passphrase");
            Assert.False(forged.Encryption.HasKey);
            string keyFile = HostKeyStore.PathOf(victim.Encryption.RepositoryId!);

            // No -Force is needed for the forged repository (it has a passphrase copy), and -Force does not help either.
            foreach (bool force in new[] { false, true })
            {
                var e = Assert.Throws<VmQuiesceException>(() => new RepositoryKeys(forged).RemoveHostKey(force));
                Assert.Equal("RepositoryIdInUse", e.ErrorId);
                Assert.Contains(keyFile, e.Message);
                Assert.Contains(victim.Path, e.Message);
                Assert.NotNull(e.Remedy);
            }

            Assert.True(File.Exists(keyFile), "the victim's only key copy was deleted");
            Assert.Equal(point.Id, BackupRepository.Open(victim.Path).GetRestorePoint(point.Id).Id);
        }

        [Fact]
        public void ImportingTheKeyOfARepositoryClaimingAnotherRepositorysIdIsRefusedAndLeavesThatRepositorysKeyFile()
        {
            BackupRepository victim = _fixture.NewEncrypted("victim");
            RestorePoint point = RepositoryFixture.BackUp(victim, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 22));
            BackupRepository forged = ForgeWithIdOf(victim, "forged", "forger's passphrase");
            string keyFile = HostKeyStore.PathOf(victim.Encryption.RepositoryId!);
            byte[] keyFileBytes = File.ReadAllBytes(keyFile);

            // Root imports the key of the repository it was handed, with the passphrase it was given.
            var e = Assert.Throws<VmQuiesceException>(() => new RepositoryKeys(forged).ImportFromPassphrase(Secure("forger's passphrase")));
            Assert.Equal("RepositoryIdInUse", e.ErrorId);
            Assert.Contains(keyFile, e.Message);
            Assert.Contains(victim.Path, e.Message);

            Assert.Equal(keyFileBytes, File.ReadAllBytes(keyFile));
            BackupRepository reopened = BackupRepository.Open(victim.Path);
            Assert.True(reopened.Encryption.HasKey);
            Assert.Equal(point.Id, reopened.GetRestorePoint(point.Id).Id);
        }

        [Fact]
        public void ImportingAKeyWhereTheRepositoryFileWasReplacedInPlaceKeepsTheKeyFileItFoundAside()
        {
            BackupRepository victim = _fixture.NewEncrypted("victim");   // its host key file is its only copy
            RestorePoint point = RepositoryFixture.BackUp(victim, VmName, _fixture.WriteTextAndRandomDisk("disk.img", 23));
            BackupRepository forged = ForgeWithIdOf(victim, "forged", "forger's passphrase");
            string keyFile = HostKeyStore.PathOf(victim.Encryption.RepositoryId!);
            byte[] keyFileBytes = File.ReadAllBytes(keyFile);

            // Someone who can write the victim's folder puts the forged repository file and passphrase copy there;
            // root then imports the key of the repository at that path, with the passphrase it was given.
            File.Copy(MarkerPath(forged), MarkerPath(victim), overwrite: true);
            string keys = Path.Combine(victim.Path, "keys");
            Directory.CreateDirectory(keys);
            foreach (string copy in Directory.GetFiles(Path.Combine(forged.Path, "keys")))
            {
                File.Copy(copy, Path.Combine(keys, Path.GetFileName(copy)), overwrite: true);
            }

            RepositoryKeyCopy imported = new RepositoryKeys(BackupRepository.Open(victim.Path)).ImportFromPassphrase(Secure("forger's passphrase"));

            Assert.Equal(keyFile, imported.Path);
            Assert.NotNull(imported.ReplacedKeyFile);
            Assert.Equal(Path.GetDirectoryName(keyFile), Path.GetDirectoryName(imported.ReplacedKeyFile));
            Assert.Equal(keyFileBytes, File.ReadAllBytes(imported.ReplacedKeyFile!));
            Assert.NotEqual(keyFileBytes, File.ReadAllBytes(keyFile));
        }

        [Fact]
        public void KeyIsNeverExportedIntoItsRepository()
        {
            BackupRepository repository = _fixture.NewEncrypted("enc");
            var keys = new RepositoryKeys(repository);
            var destinations = new List<string> { Path.Combine(repository.Path, "repo.key"), Path.Combine(repository.Path, "keys", "new", "repo.key") };
            if (!OperatingSystem.IsWindows())
            {
                string linkToRepository = Path.Combine(_fixture.Root, "link-to-repo");
                File.CreateSymbolicLink(linkToRepository, repository.Path);
                destinations.Add(Path.Combine(linkToRepository, "sub", "repo.key"));
            }

            foreach (string destination in destinations)
            {
                var e = Assert.Throws<VmQuiesceException>(() => keys.Export(destination));
                Assert.Equal("KeyFileInRepository", e.ErrorId);
                Assert.Equal(FailureKind.InvalidArgument, e.Kind);
                Assert.False(File.Exists(destination), destination);
            }

            Assert.Empty(Directory.EnumerateFiles(repository.Path, "*.key", SearchOption.AllDirectories));
            Assert.NotNull(keys.Export(Path.Combine(_fixture.Root, "enc-beside", "repo.key")).Path);
        }
    }

    /// <summary>A source that, as it opens its view (the backup's lock held), reads the repository's lock files.</summary>
    internal sealed class LockWatchingSource : IBackupSource
    {
        private readonly string _repositoryPath;
        private readonly IBackupSource _inner;

        public LockWatchingSource(string repositoryPath, IBackupSource inner)
        {
            _repositoryPath = repositoryPath;
            _inner = inner;
        }

        public List<string> LocksSeen { get; } = new List<string>();

        public string Kind => _inner.Kind;

        public string VmName => _inner.VmName;

        public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => _inner.FindLeftovers(cancel);

        public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
        {
            LocksSeen.AddRange(Directory.EnumerateFiles(Path.Combine(_repositoryPath, "locks"), "*.lock").Select(File.ReadAllText));
            return _inner.OpenConsistentView(options, cancel);
        }
    }
}
