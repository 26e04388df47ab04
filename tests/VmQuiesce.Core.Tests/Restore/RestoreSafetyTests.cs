using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Backup;
using VmQuiesce.Core.Tests.Faults;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Restore
{
    /// <summary>
    /// A restore writes as root: never through a link someone else made, never into a folder someone else owns,
    /// never outside -Destination; it gives files back their owner and mode; it leaves a file at every target
    /// whenever it dies, and the next restore cleans what a dead one left.
    /// </summary>
    public class RestoreSafetyTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        private static readonly RestoreEnvironment Quiet = new RestoreEnvironment
        {
            Usage = new NoUser(),
            FreeSpace = _ => ("volume", long.MaxValue),
        };

        [ThrowawayUserFact]
        public void AVmFolderSwappedForAUsersLinkIsNotWrittenThrough()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string vms = Path.Combine(fixture.Root, "vms");
            string folder = Path.Combine(vms, "vm1");
            Directory.CreateDirectory(folder);
            user.Own(vms);
            user.Own(folder);
            string disk = Path.Combine(folder, "disk.img");
            File.WriteAllBytes(disk, RepositoryFixture.Random(Chunk, 1));
            user.Own(disk);
            RestorePoint point = fixture.BackUp("vm1", disk);
            string secret = Path.Combine(fixture.Root, "root-only");
            Directory.CreateDirectory(secret);
            File.SetUnixFileMode(secret, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

            // The VM's owner replaces its folder by a link to a folder only root may write.
            Assert.Equal(0, user.Run("mv", folder, folder + ".old").ExitCode);
            Assert.Equal(0, user.Run("ln", "-s", secret, folder).ExitCode);

            var e = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None));

            Assert.Equal("RestoreTargetFolderUnsafe", e.ErrorId);
            Assert.Contains($"user id {user.Uid}", e.Message);
            Assert.Empty(Directory.EnumerateFileSystemEntries(secret));
        }

        [ThrowawayUserFact]
        public void AFolderOwnedByAnotherUserIsRefusedAndARootMadeLinkIsFollowed()
        {
            using var fixture = new RepositoryFixture();
            using var stranger = ThrowawayUser.Create();
            string real = Path.Combine(fixture.Root, "real");
            Directory.CreateDirectory(real);
            string disk = Path.Combine(real, "disk.img");
            File.WriteAllBytes(disk, RepositoryFixture.Random(Chunk, 2));
            RestorePoint point = fixture.BackUp("vm1", disk);

            stranger.Own(real);
            var e = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None));
            Assert.Equal("RestoreTargetFolderUnsafe", e.ErrorId);
            Assert.Contains("neither root nor the owner", e.Message);

            // The same folder reached through a link root made (as /var/lib/libvirt/images often is) is fine.
            HostCommandRun("chown", "root:root", real);
            File.Delete(disk);
            string viaLink = Path.Combine(fixture.Root, "via-link");
            File.CreateSymbolicLink(viaLink, real);
            RestorePoint linked = fixture.BackUp("vm1", WriteAt(Path.Combine(viaLink, "disk2.img"), RepositoryFixture.Random(Chunk, 3)));
            File.Delete(Path.Combine(real, "disk2.img"));
            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(linked), CancellationToken.None), null, CancellationToken.None);
            Assert.True(File.Exists(Path.Combine(real, "disk2.img")));
        }

        [ThrowawayUserFact]
        public void RestoredFilesGetTheirOwnerAndModeBeforeTheyAreRenamedIntoPlace()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 4));
            user.Own(disk);
            File.SetUnixFileMode(disk, (UnixFileMode)Convert.ToInt32("640", 8));
            RestorePoint point = RepositoryFixtureWithSnapshot(fixture, disk);
            File.Delete(disk);
            var seen = new List<FileStatus>();
            var engine = new RestoreEngine(fixture.Repository, new RestoreEnvironment
            {
                Usage = new NoUser(),
                FreeSpace = _ => null,
                Reverters = new SnapshotReverters(new[] { new RecordingReverter(seen) }),
            });

            engine.Run(engine.Plan(new RestoreRequest(point), CancellationToken.None), null, CancellationToken.None);

            FileStatus restored = RegularFile.StatNoFollow(disk)!.Value;
            Assert.Equal(user.Uid, restored.Uid);
            Assert.Equal(user.Gid, restored.Gid);
            Assert.Equal(Convert.ToInt32("640", 8), restored.Permissions);
            // The reverter runs on the temp file, before the rename: it already had them.
            Assert.Equal(user.Uid, seen.Single().Uid);
            Assert.Equal(Convert.ToInt32("640", 8), seen.Single().Permissions);
        }

        [ThrowawayUserFact]
        public void TheTidyUpAfterAFailedRestoreEntersNoFolderItsOwnerSwappedForALink()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string vm = Path.Combine(fixture.Root, "vm");
            Directory.CreateDirectory(Path.Combine(vm, "sub"));
            string first = WriteAt(Path.Combine(vm, "a.img"), RepositoryFixture.Random(Chunk, 1));
            string second = WriteAt(Path.Combine(vm, "sub", "b.img"), RepositoryFixture.Random(Chunk, 2));
            user.Own(vm);
            RestorePoint point = fixture.BackUp("vm1", first, second);
            File.Delete(fixture.ChunkFiles().Single(file => Path.GetFileName(file) == point.Files[1].Chunks[0]));
            // b.img is restored below -Destination in a folder of its own, which the restore makes (and gives to its owner).
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"path\": \"b.img\"", "\"path\": \"sub/b.img\"", StringComparison.Ordinal));
            point = fixture.Repository.GetRestorePoint(point.Id);
            Assert.Equal("sub/b.img", point.Files[1].Path);
            string victim = Path.Combine(fixture.Root, "run-sshd");
            Directory.CreateDirectory(Path.Combine(victim, "empty"));
            string destination = Path.Combine(fixture.Root, "out");
            string made = Path.Combine(destination, "sub");
            var environment = new RestoreEnvironment
            {
                Usage = new NoUser(),
                FreeSpace = _ => ("volume", long.MaxValue),
                BeforeEnteringMadeFolder = entry =>
                {
                    if (entry == made)
                    {
                        // The restored files' owner, whose folder it is, swaps it for a link to a root folder.
                        Assert.Equal(0, user.Run("/bin/mv", made, made + ".old").ExitCode);
                        Assert.Equal(0, user.Run("/bin/ln", "-s", victim, made).ExitCode);
                    }
                },
            };
            var engine = new RestoreEngine(fixture.Repository, environment);

            var e = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None), null, CancellationToken.None));

            Assert.Equal("RestoreChunkMissing", e.ErrorId);
            Assert.Equal(user.Uid, RegularFile.StatNoFollow(made + ".old")!.Value.Uid);
            Assert.True(Directory.Exists(Path.Combine(victim, "empty")), "root removed an empty folder through the link");

            // Left alone, the folders it made go again, the nested one too.
            string untouched = Path.Combine(fixture.Root, "out2");
            Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Destination = untouched }, CancellationToken.None), null, CancellationToken.None));
            Assert.False(Directory.Exists(untouched));
        }

        [LinuxFact]
        public void AFileWhoseOwnerIsUnknownComesBack0600()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 5));
            File.SetUnixFileMode(disk, (UnixFileMode)Convert.ToInt32("644", 8));
            RestorePoint point = fixture.BackUp("vm1", disk);
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            File.WriteAllText(manifest, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(manifest), "\"owner\": \\{[^}]*\\}", "\"owner\": null"));
            string destination = Path.Combine(fixture.Root, "out");

            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(fixture.Repository.GetRestorePoint(point.Id)) { Destination = destination }, CancellationToken.None), null, CancellationToken.None);

            Assert.Equal(Convert.ToInt32("600", 8), RegularFile.StatNoFollow(Path.Combine(destination, "a.img"))!.Value.Permissions);
        }

        [LinuxFact]
        public void ALinkInsideTheDestinationIsNotFollowedOutOfIt()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 6));
            RestorePoint point = BackUpUnder(fixture, "sub/a.img", disk);
            string destination = Path.Combine(fixture.Root, "dest");
            string outside = Path.Combine(fixture.Root, "outside");
            Directory.CreateDirectory(destination);
            Directory.CreateDirectory(outside);
            File.CreateSymbolicLink(Path.Combine(destination, "sub"), outside);

            var e = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None));

            Assert.Equal("RestoreTargetFolderUnsafe", e.ErrorId);
            Assert.Contains("inside", e.Message);
            Assert.Empty(Directory.EnumerateFileSystemEntries(outside));
        }

        [ThrowawayUserFact]
        public void ADestinationThatIsAUsersLinkIsRefusedAndARootMadeOneIsFollowed()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 14)));
            string shared = Path.Combine(fixture.Root, "shared");
            Directory.CreateDirectory(shared);
            File.SetUnixFileMode(shared, (UnixFileMode)Convert.ToInt32("1777", 8)); // as /tmp
            string rootOnly = Path.Combine(fixture.Root, "root-only");
            Directory.CreateDirectory(rootOnly);
            File.SetUnixFileMode(rootOnly, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string userLink = Path.Combine(shared, "restore-here");
            Assert.Equal(0, user.Run("ln", "-s", rootOnly, userLink).ExitCode);

            var e = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Destination = userLink }, CancellationToken.None));

            Assert.Equal("RestoreTargetFolderUnsafe", e.ErrorId);
            Assert.Contains($"user id {user.Uid}", e.Message);
            Assert.Empty(Directory.EnumerateFileSystemEntries(rootOnly));

            string rootLink = Path.Combine(shared, "root-made");
            File.CreateSymbolicLink(rootLink, rootOnly);
            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(point) { Destination = rootLink }, CancellationToken.None), null, CancellationToken.None);
            Assert.True(File.Exists(Path.Combine(rootOnly, "a.img")));
        }

        [LinuxFact]
        public void ATargetThatIsALinkOrRunsUnderAFileOrADestinationThatIsAFileIsRefused()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 7));
            RestorePoint point = fixture.BackUp("vm1", disk);
            string elsewhere = fixture.WriteFile("elsewhere.img", new byte[] { 9 });
            File.Delete(disk);
            File.CreateSymbolicLink(disk, elsewhere);

            Assert.Equal("RestoreTargetNotAFile", Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None)).ErrorId);
            Assert.Equal(new byte[] { 9 }, File.ReadAllBytes(elsewhere));

            var underFile = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Destination = Path.Combine(elsewhere, "x") }, CancellationToken.None));
            Assert.Equal("RestoreDestinationIsFile", underFile.ErrorId);
            Assert.Equal("RestoreDestinationIsFile", Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Destination = elsewhere }, CancellationToken.None)).ErrorId);
            Assert.Equal("InvalidDestinationPath", Assert.Throws<VmQuiesceException>(() => Engine(fixture).Plan(new RestoreRequest(point) { Destination = Path.Combine(fixture.Root, "*") }, CancellationToken.None)).ErrorId);
        }

        [LinuxFact]
        public void WhatAKilledRestoreLeftIsCleanedByTheNextOneWithAWarning()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 8);
            string disk = fixture.WriteFile("a.img", content);
            RestorePoint point = fixture.BackUp("vm1", disk);
            File.WriteAllBytes(disk, RepositoryFixture.Random(Chunk, 9));
            // A restore killed after writing its temp and linking the original aside, before its rename.
            string temp = Path.Combine(fixture.Root, RestoreEngine.TempNameFor(disk));
            File.WriteAllBytes(temp, new byte[3 * Chunk]);
            TestGuest.HostCommand.RunChecked("ln", new[] { disk, disk + RestoreEngine.ReplacedSuffix });
            var warnings = new List<string>();

            var engine = new RestoreEngine(fixture.Repository, Quiet);
            engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), new OperationHost(warn: warnings.Add), CancellationToken.None);

            Assert.Equal(content, File.ReadAllBytes(disk));
            Assert.Equal(new[] { "a.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName));
            Assert.Equal(2, warnings.Count);
            Assert.Contains(warnings, warning => warning.Contains(temp, StringComparison.Ordinal) && warning.Contains("interrupted", StringComparison.Ordinal));
        }

        [LinuxFact]
        public void ATempFileALiveRestoreIsWritingIsNotTouched()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 10));
            RestorePoint point = fixture.BackUp("vm1", disk);
            string temp = Path.Combine(fixture.Root, RestoreEngine.TempNameFor(disk));
            using var writer = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite);
            Assert.Equal(0, Libc.flock((int)writer.SafeFileHandle.DangerousGetHandle(), Libc.LockExclusive | Libc.LockNonBlocking));

            var engine = Engine(fixture);
            var e = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None));

            Assert.Equal("RestoreInProgress", e.ErrorId);
            Assert.True(File.Exists(temp));
        }

        [LinuxFact]
        public void ARestoreThatIsReplacingAFileStillHoldsItsTempAgainstASecondRestore()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 12);
            string disk = fixture.WriteFile("a.img", content);
            RestorePoint point = fixture.BackUp("vm1", disk);
            File.WriteAllBytes(disk, RepositoryFixture.Random(Chunk, 13));
            VmQuiesceException? second = null;
            // Just before the first restore replaces the file, a second restore of the same point starts.
            var first = new RestoreEngine(fixture.Repository, new RestoreEnvironment
            {
                Usage = new NoUser(),
                FreeSpace = _ => ("volume", long.MaxValue),
                Files = new BeforeFirstLink(() => second = Assert.Throws<VmQuiesceException>(() =>
                    Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None))),
            });

            first.Run(first.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None);

            Assert.Equal("RestoreInProgress", second?.ErrorId);
            Assert.Equal(content, File.ReadAllBytes(disk));
            Assert.Equal(new[] { "a.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName));
        }

        [LinuxRootFact]
        public void AFullDestinationSaysSoAndHowMuchIsNeededAndReplacesNothing()
        {
            using var fixture = new RepositoryFixture();
            using var fs = new ScratchFileSystem("size=256k");
            string disk = fixture.WriteFile("a.img", RepositoryFixture.Random(8 * Chunk, 11));
            RestorePoint point = fixture.BackUp("vm1", disk);
            // The space check sees room (as when something else fills the disk meanwhile), so the write meets
            // ENOSPC; once writing, the real figures count.
            bool writing = false;
            var engine = new RestoreEngine(fixture.Repository, new RestoreEnvironment
            {
                Usage = new NoUser(),
                FreeSpace = folder => writing ? RestoreEnvironment.Real.FreeSpace(folder) : ("scratch", long.MaxValue / 2),
            });

            var e = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Destination = fs.Path }, CancellationToken.None), new OperationHost(progress: _ => writing = true), CancellationToken.None));

            Assert.Equal("RestoreDestinationFull", e.ErrorId);
            Assert.Contains($"The file system of '{fs.Path}' is full", e.Message);
            Assert.Contains($"It needs {8L * Chunk:N0} bytes (512 KiB) there, and 262,144 bytes (256 KiB) are free", e.Message);
            Assert.Contains($"Free at least {(8L * Chunk) - (256 * 1024):N0} bytes", e.Remedy);
            Assert.DoesNotContain("chunk file", e.Message);
            Assert.Empty(Directory.EnumerateFileSystemEntries(fs.Path));
        }

        [Fact]
        public void TheSpaceCheckCountsTheDataBlocksNotWholeChunks()
        {
            using var fixture = new RepositoryFixture();
            var content = new byte[10 * Chunk];
            for (int chunk = 0; chunk < 10; chunk++)
            {
                RepositoryFixture.Random(4096, 20 + chunk).CopyTo(content, chunk * Chunk);
            }

            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("a.img", content));
            string destination = Path.Combine(fixture.Root, "out");
            long needed = 10 * 4096;

            var tight = new RestoreEngine(fixture.Repository, new RestoreEnvironment { Usage = new NoUser(), FreeSpace = _ => ("v", needed) });
            tight.Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None);
            var e = Assert.Throws<VmQuiesceException>(() => new RestoreEngine(fixture.Repository, new RestoreEnvironment { Usage = new NoUser(), FreeSpace = _ => ("v", needed - 1) })
                .Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None));

            Assert.Equal("InsufficientDiskSpace", e.ErrorId);
            Assert.Contains($"{needed:N0} bytes", e.Message);
        }

        [LinuxFact]
        public void ATempFileSwappedForALinkBeforeTheRevertIsNeitherWrittenThroughNorRenamedIntoPlace()
        {
            using var fixture = new RepositoryFixture();
            byte[] original = RepositoryFixture.Random(Chunk, 8);
            string disk = fixture.WriteFile("a.img", original);
            RestorePoint point = RepositoryFixtureWithSnapshot(fixture, disk);
            string victim = fixture.WriteFile("victim", RepositoryFixture.Random(Chunk, 9));
            byte[] victimBefore = File.ReadAllBytes(victim);
            var engine = new RestoreEngine(fixture.Repository, new RestoreEnvironment
            {
                Usage = new NoUser(),
                FreeSpace = _ => null,
                Reverters = new SnapshotReverters(new[] { new LinkSwappingReverter(victim) }),
            });

            var e = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None));

            Assert.Equal("RestoreTempFileReplaced", e.ErrorId);
            Assert.Equal(victimBefore, File.ReadAllBytes(victim));
            Assert.Equal(original, File.ReadAllBytes(disk));
            Assert.False(RegularFile.StatNoFollow(disk)!.Value.IsSymbolicLink);
        }

        [ThrowawayUserFact]
        public void ADiskWrittenBackAsQcow2IsNotConvertedThroughALinkTheVmsOwnerPutBesideItsTemp()
        {
            using var fixture = new RepositoryFixture();
            using var user = ThrowawayUser.Create();
            string folder = Path.Combine(fixture.Root, "vm1");
            Directory.CreateDirectory(folder);
            byte[] original = RepositoryFixture.Random(Chunk, 12);
            string disk = WriteAt(Path.Combine(folder, "disk.img"), original);
            user.Own(folder);
            RestorePoint point = WrittenBackAsQcow2(fixture.Repository, fixture.BackUp("vm1", disk));
            string victim = fixture.WriteFile("victim", RepositoryFixture.Random(Chunk, 13));
            byte[] victimBefore = File.ReadAllBytes(victim);
            string? planted = null;
            var attacker = new OperationHost(progress: progress =>
            {
                // While the raw content is written, the VM's owner links the name qemu-img's output gets to a file of root's.
                if (planted == null && progress is RestoreProgress { Phase: RestorePhase.Writing })
                {
                    planted = Directory.EnumerateFiles(folder, ".disk.img" + RestoreEngine.TempMarker + "*").Single() + ".qcow2";
                    Assert.Equal(0, user.Run("ln", "-s", victim, planted).ExitCode);
                }
            });

            Exception? refused = Record.Exception(() => Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), attacker, CancellationToken.None));

            Assert.Equal(victimBefore, File.ReadAllBytes(victim));
            Assert.Equal("RestoreWriteFailed", Assert.IsType<VmQuiesceException>(refused).ErrorId);
            Assert.Equal(original, File.ReadAllBytes(disk));

            // Without the link the disk comes back as a qcow2 image of the same content.
            File.Delete(planted!);
            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None);
            string raw = fixture.WriteFile("original.raw", original);
            HostCommandRun("/usr/bin/qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", disk, raw);
            Assert.Equal(new[] { "disk.img" }, Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName));
        }

        [Fact]
        public void ABackupRecordsTheVmFoldersAndRestoresToThemWithoutDestination()
        {
            using var fixture = new RepositoryFixture();
            string folder = Path.Combine(fixture.Root, "vm1");
            Directory.CreateDirectory(folder);
            byte[] content = RepositoryFixture.Random(Chunk, 20);
            string disk = WriteAt(Path.Combine(folder, "disk.img"), content);
            RestorePoint point = fixture.BackUp("vm1", disk);
            File.Delete(disk);

            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(point), CancellationToken.None), null, CancellationToken.None);

            Assert.Equal(new[] { folder }, fixture.Repository.GetRestorePoint(point.Id).VmFolders);
            Assert.Equal(content, File.ReadAllBytes(disk));
        }

        [Fact]
        public void AnAuthenticManifestNamingASystemFolderWritesNothing()
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk, 21)));
            string cron = "/etc/cron.d/vmquiesce-test-" + Guid.NewGuid().ToString("N").Substring(0, 8);
            RestorePoint forged = Forge(repository, point, cron, new[] { "/etc/cron.d" });

            VmQuiesceException e = PlanRefused(repository, forged);

            Assert.Equal("RestoreVmFolderProtected", e.ErrorId);
            Assert.Contains("'/etc'", e.Message);
            Assert.Contains("-Destination", e.Remedy!);
            Assert.False(File.Exists(cron));
        }

        [Fact]
        public void AnAuthenticManifestWithADiskOutsideTheVmFoldersWritesNothing()
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = fixture.NewEncrypted("enc");
            string folder = Path.Combine(fixture.Root, "vm1");
            Directory.CreateDirectory(folder);
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", WriteAt(Path.Combine(folder, "disk.img"), RepositoryFixture.Random(Chunk, 22)));
            string outside = Path.Combine(fixture.Root, "other-vm", "disk.img");
            RestorePoint forged = Forge(repository, point, outside, point.VmFolders!);

            VmQuiesceException e = PlanRefused(repository, forged);

            Assert.Equal("RestoreOutsideVmFolders", e.ErrorId);
            Assert.Contains(outside, e.Message);
            Assert.Contains($"'{folder}'", e.Message);
            Assert.False(Directory.Exists(Path.GetDirectoryName(outside)));
        }

        [Fact]
        public void ALinkInsideTheVmFolderDoesNotLeadARestoreOutOfIt()
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = fixture.NewEncrypted("enc");
            string folder = Path.Combine(fixture.Root, "vm1");
            string elsewhere = Path.Combine(fixture.Root, "elsewhere");
            Directory.CreateDirectory(folder);
            Directory.CreateDirectory(elsewhere);
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", WriteAt(Path.Combine(folder, "disk.img"), RepositoryFixture.Random(Chunk, 23)));
            File.CreateSymbolicLink(Path.Combine(folder, "sub"), elsewhere);
            RestorePoint forged = Forge(repository, point, Path.Combine(folder, "sub", "disk.img"), point.VmFolders!);

            VmQuiesceException e = PlanRefused(repository, forged);

            Assert.Equal("RestoreOutsideVmFolders", e.ErrorId);
            Assert.Contains($"resolves to '{elsewhere}'", e.Message);
            Assert.Empty(Directory.EnumerateFileSystemEntries(elsewhere));
        }

        [Fact]
        public void APointWithoutRecordedFoldersRestoresToItsDisksFoldersAndNeverToASystemFolder()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 24);
            string disk = fixture.WriteFile("disk.img", content);
            RestorePoint point = fixture.BackUp("vm1", disk);
            RestorePoint legacy = Forge(fixture.Repository, point, disk, null);
            string cron = "/etc/cron.d/vmquiesce-test-" + Guid.NewGuid().ToString("N").Substring(0, 8);
            RestorePoint planted = Forge(fixture.Repository, point, cron, null);
            File.Delete(disk);

            Assert.Null(legacy.VmFolders);
            Engine(fixture).Run(Engine(fixture).Plan(new RestoreRequest(legacy), CancellationToken.None), null, CancellationToken.None);
            Assert.Equal(content, File.ReadAllBytes(disk));
            Assert.Equal("RestoreVmFolderProtected", PlanRefused(fixture.Repository, planted).ErrorId);
            Assert.False(File.Exists(cron));
        }

        [LinuxTheory]
        [InlineData("/root/.ssh", "authorized_keys", "'/root/.ssh'")]
        [InlineData("/home/someone/.config/autostart", "x.desktop", "'/home/someone/.config'")]
        [InlineData("/var/spool/cron/crontabs", "root", "'/var/spool'")]
        public void AnAuthenticManifestNamingAHiddenFolderOrTheSpoolWritesNothing(string folder, string name, string named)
        {
            using var fixture = new RepositoryFixture();
            BackupRepository repository = fixture.NewEncrypted("enc");
            RestorePoint point = RepositoryFixture.BackUp(repository, "vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk, 25)));
            RestorePoint forged = Forge(repository, point, Path.Combine(folder, name), new[] { folder });

            VmQuiesceException e = PlanRefused(repository, forged);

            Assert.Equal("RestoreVmFolderProtected", e.ErrorId);
            Assert.Contains(named, e.Message, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void AnUnsealedManifestSomeoneElseCouldWriteIsNotRestoredToTheFoldersItNames()
        {
            using var fixture = new RepositoryFixture();
            string folder = Path.Combine(fixture.Root, "vm1");
            Directory.CreateDirectory(folder);
            RestorePoint point = fixture.BackUp("vm1", WriteAt(Path.Combine(folder, "disk.img"), RepositoryFixture.Random(Chunk, 27)));
            Assert.False(fixture.Repository.Encryption.IsEncrypted);
            string points = Path.Combine(fixture.RepositoryPath, "points");

            // Only root can write the plain repository: its manifests are root's word.
            Engine(fixture).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None);
            File.SetUnixFileMode(points, (UnixFileMode)0x1FF); // 0777
            VmQuiesceException e = PlanRefused(fixture.Repository, point);
            Engine(fixture).Plan(new RestoreRequest(point) { Destination = Path.Combine(fixture.Root, "elsewhere") }, CancellationToken.None);

            Assert.Equal("RestoreManifestUntrusted", e.ErrorId);
            Assert.Contains($"'{points}' has mode 0777", e.Message, StringComparison.Ordinal);
            Assert.Contains("-Destination", e.Remedy!, StringComparison.Ordinal);
        }

        [LinuxFact]
        public void AVmrunAPlantedManifestNamesIsNotRunByARestore()
        {
            using var fixture = new RepositoryFixture();
            RestorePoint point = fixture.BackUp("vm1", fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk, 26)));
            // Someone who can write the plain repository also owns a program of their own.
            string marker = Path.Combine(fixture.Root, "ran-as-root");
            string script = fixture.WriteFile("not-vmrun", System.Text.Encoding.ASCII.GetBytes("#!/bin/sh\nid -u > '" + marker + "'\nexit 1\n"));
            HostCommandRun("chmod", "0755", script);
            HostCommandRun("chown", "65534:65534", script);
            JsonObject json = point.ToJson()
                .With("id", BackupRepository.NewId(DateTime.UtcNow))
                .With("snapshot", new JsonObject()
                    .With("name", "vmquiesce-x")
                    .With("kind", global::VmQuiesce.Core.Sources.VMware.VmwareSource.SourceKind)
                    .With("vmrunPath", script)
                    .With("vmrunHostType", "Workstation"));
            ((JsonObject)json.GetArray("files")[0]!).With("path", "vm1.vmx");
            RestorePoint planted = RestorePoint.FromJson(JsonText.ParseObject(JsonText.Serialize(json, indented: false)));
            fixture.Repository.Publish(planted);
            planted = fixture.Repository.GetRestorePoint(planted.Id);
            var request = new RestoreRequest(planted) { Destination = Path.Combine(fixture.Root, "restored") };

            VmQuiesceException e = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Run(Engine(fixture).Plan(request, CancellationToken.None), null, CancellationToken.None));

            Assert.False(File.Exists(marker), "uid 65534's program ran");
            Assert.DoesNotContain(script, e.Message, StringComparison.Ordinal);
        }

        /// <summary>The error that refuses a plan to restore <paramref name="point"/> to its original location (with -Force: no refusal for existing files).</summary>
        private static VmQuiesceException PlanRefused(BackupRepository repository, RestorePoint point) =>
            Assert.Throws<VmQuiesceException>(() => new RestoreEngine(repository, Quiet).Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None));

        /// <summary>
        /// <paramref name="point"/> with its first file's original path and its recorded VM folders (null: none, as
        /// before they were recorded) changed, published under a new id through the repository (sealed with its key
        /// when it has one, so authentic), and read back.
        /// </summary>
        private static RestorePoint Forge(BackupRepository repository, RestorePoint point, string originalPath, IReadOnlyList<string>? vmFolders)
        {
            JsonObject json = point.ToJson()
                .With("id", BackupRepository.NewId(DateTime.UtcNow))
                .With("vmFolders", vmFolders == null ? null : new JsonArray(vmFolders.Select(folder => (object?)folder)));
            ((JsonObject)json.GetArray("files")[0]!).With("originalPath", originalPath);
            RestorePoint forged = RestorePoint.FromJson(JsonText.ParseObject(JsonText.Serialize(json, indented: false)));
            repository.Publish(forged);
            return repository.GetRestorePoint(forged.Id);
        }

        /// <summary><paramref name="point"/> with its first file to be written back as qcow2 (as a change-tracked disk is), published under a new id.</summary>
        private static RestorePoint WrittenBackAsQcow2(BackupRepository repository, RestorePoint point)
        {
            JsonObject json = point.ToJson().With("id", BackupRepository.NewId(DateTime.UtcNow));
            ((JsonObject)json.GetArray("files")[0]!).With("restoreAs", new JsonObject().With("format", "qcow2"));
            RestorePoint qcow2 = RestorePoint.FromJson(JsonText.ParseObject(JsonText.Serialize(json, indented: false)));
            repository.Publish(qcow2);
            return repository.GetRestorePoint(qcow2.Id);
        }

        private static RestoreEngine Engine(RepositoryFixture fixture) => new RestoreEngine(fixture.Repository, Quiet);

        private static string WriteAt(string path, byte[] content)
        {
            File.WriteAllBytes(path, content);
            return path;
        }

        private static void HostCommandRun(params string[] command) => TestGuest.HostCommand.RunChecked(command[0], command.Skip(1));

        private static RestorePoint BackUpUnder(RepositoryFixture fixture, string relative, string path) =>
            new BackupEngine(fixture.Repository, workers: 2).Run(new ViewSource(new StableFilesView(new[] { new ViewFile(relative, path, path) })), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

        private static RestorePoint RepositoryFixtureWithSnapshot(RepositoryFixture fixture, string path) =>
            new BackupEngine(fixture.Repository, workers: 2).Run(new ViewSource(StableFilesView.ForPaths(new[] { path }, new CapturedSnapshot("s1", null, "Recording"))), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

        private sealed class NoUser : IFileUsageProbe
        {
            public string? FindUser(string path, CancellationToken cancel) => null;
        }

        /// <summary>Runs an action once, when the replace gives the first original its second name.</summary>
        private sealed class BeforeFirstLink : RestoreFileOps
        {
            private Action? _action;

            public BeforeFirstLink(Action action) => _action = action;

            public override bool TryLink(TrustedFolder folder, string existing, string name)
            {
                Interlocked.Exchange(ref _action, null)?.Invoke();
                return base.TryLink(folder, existing, name);
            }
        }

        /// <summary>Looks at the temp files it is given: what they are just before the rename.</summary>
        private sealed class RecordingReverter : ISnapshotReverter
        {
            private readonly List<FileStatus> _seen;

            public RecordingReverter(List<FileStatus> seen) => _seen = seen;

            public string Kind => "Recording";

            public RevertStage Stage => RevertStage.BeforeReplace;

            public string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel)
            {
                _seen.AddRange(restoredFiles.Select(file => UnixFiles.StatFollowingLinks(file)!.Value));
                return "recorded";
            }
        }
        /// <summary>
        /// Plays whoever may write the VM folder: while the revert runs, moves the temp file away and puts a link
        /// to <c>victim</c> in its place, then reverts (writes) through the path it was given.
        /// </summary>
        private sealed class LinkSwappingReverter : ISnapshotReverter
        {
            private readonly string _victim;

            public LinkSwappingReverter(string victim) => _victim = victim;

            public string Kind => "Recording";

            public RevertStage Stage => RevertStage.BeforeReplace;

            public string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel)
            {
                string folder = Path.GetDirectoryName(_victim)!;
                foreach (string temp in Directory.EnumerateFiles(folder, ".a.img" + RestoreEngine.TempMarker + "*").ToList())
                {
                    File.Move(temp, temp + ".moved");
                    File.CreateSymbolicLink(temp, _victim);
                }

                foreach (string file in restoredFiles)
                {
                    using var stream = new FileStream(file, FileMode.Open, FileAccess.Write);
                    stream.Write(new byte[] { 0x52, 0x45, 0x56 }, 0, 3);
                }

                return "swapped";
            }
        }
    }
}
