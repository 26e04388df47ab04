using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Backup;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Restore
{
    public class RestoreEngineTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        /// <summary>No file is in use and space is plenty: the tests that want otherwise say so.</summary>
        private static readonly RestoreEnvironment Quiet = new RestoreEnvironment
        {
            Usage = new FakeUsage(null),
            FreeSpace = _ => ("volume", long.MaxValue),
        };

        [Fact]
        public void ForceReplacesTheOriginalsWithTheBackedUpContentAndLeavesNoTempFiles()
        {
            using var fixture = new RepositoryFixture();
            byte[] a = RepositoryFixture.Random((3 * Chunk) + 100, 1);
            byte[] b = RepositoryFixture.Random(Chunk / 2, 2);
            string pathA = fixture.WriteFile("a.img", a);
            string pathB = fixture.WriteFile("b.img", b);
            RestorePoint point = fixture.BackUp("vm1", pathA, pathB);
            File.WriteAllBytes(pathA, RepositoryFixture.Random(100, 3));
            File.Delete(pathB);

            RestoreResult result = Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Force = true }), null, CancellationToken.None);

            Assert.Equal(a, File.ReadAllBytes(pathA));
            Assert.Equal(b, File.ReadAllBytes(pathB));
            Assert.Equal(new[] { true, false }, result.Files.Select(file => file.Replaced));
            Assert.Equal(a.Length + b.Length, result.Bytes);
            Assert.Equal(RevertStatus.NotNeeded, result.RevertValue);
            Assert.False(result.SnapshotReverted);
            Assert.Equal(new[] { "a.img", "b.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName).OrderBy(name => name));
        }

        [Fact]
        public void ExistingFilesAreNotReplacedWithoutForce()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1));
            RestorePoint point = fixture.BackUp("vm1", path);
            byte[] changed = RepositoryFixture.Random(Chunk, 2);
            File.WriteAllBytes(path, changed);

            var error = Assert.Throws<VmQuiesceException>(() => Plan(fixture, new RestoreRequest(point)));

            Assert.Equal("RestoreTargetExists", error.ErrorId);
            Assert.Contains(path, error.Message);
            Assert.Equal(changed, File.ReadAllBytes(path));
        }

        [Fact]
        public void DestinationRestoresUnderTheRelativePathsAndLeavesTheOriginalsAlone()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random((2 * Chunk) + 7, 1);
            string path = fixture.WriteFile("a.img", content);
            RestorePoint point = fixture.BackUp("vm1", path);
            byte[] changed = RepositoryFixture.Random(10, 2);
            File.WriteAllBytes(path, changed);
            string destination = Path.Combine(fixture.Root, "elsewhere", "deep");

            RestoreResult result = Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Destination = destination }), null, CancellationToken.None);

            Assert.Equal(content, File.ReadAllBytes(Path.Combine(destination, "a.img")));
            Assert.Equal(changed, File.ReadAllBytes(path));
            Assert.Equal(destination, result.Destination);
            Assert.Equal("RestoreTargetExists", Assert.Throws<VmQuiesceException>(() => Plan(fixture, new RestoreRequest(point) { Destination = destination })).ErrorId);
        }

        [LinuxFact]
        public void HolesAndZeroRangesStaySparse()
        {
            using var fixture = new RepositoryFixture();
            string path = Path.Combine(fixture.Root, "sparse.img");
            long size = 40L * Chunk;
            using (var file = new FileStream(path, FileMode.CreateNew))
            {
                file.SetLength(size);
                // Data in a few places: whole chunks, a chunk that is half zeros, one 4 KiB block.
                foreach (var (offset, length, seed) in new[] { (0L, Chunk, 1), (5L * Chunk, Chunk / 2, 2), ((12L * Chunk) + 8192, 4096, 3), (30L * Chunk, 3 * Chunk, 4) })
                {
                    file.Position = offset;
                    file.Write(RepositoryFixture.Random(length, seed), 0, length);
                }
            }

            string sha = RepositoryFixture.Sha256Of(path);
            long originalBlocks = AllocatedBlocks(path);
            RestorePoint point = fixture.BackUp("vm1", path);
            File.Delete(path);

            RestoreResult result = Engine(fixture).Run(Plan(fixture, new RestoreRequest(point)), null, CancellationToken.None);

            Assert.Equal(sha, RepositoryFixture.Sha256Of(path));
            Assert.Equal(size, new FileInfo(path).Length);
            long restoredBlocks = AllocatedBlocks(path);
            Assert.InRange(restoredBlocks, 1, originalBlocks + 16);
            Assert.InRange(result.Files[0].AllocatedBytes!.Value, 1, (originalBlocks + 16) * 512);
        }

        [Fact]
        public void ABadChunkStopsTheRestoreBeforeAnyFileIsReplaced()
        {
            using var fixture = new RepositoryFixture();
            string first = fixture.WriteFile("a.img", RepositoryFixture.Random(3 * Chunk, 1));
            string second = fixture.WriteFile("b.img", RepositoryFixture.Random(3 * Chunk, 2));
            RestorePoint point = fixture.BackUp("vm1", first, second);
            string damaged = point.Files[1].Chunks[2]!;
            string chunkFile = fixture.ChunkFiles().Single(file => Path.GetFileName(file) == damaged);
            byte[] stored = File.ReadAllBytes(chunkFile);
            stored[stored.Length - 1] ^= 0x55;
            File.WriteAllBytes(chunkFile, stored);
            byte[] changedFirst = RepositoryFixture.Random(50, 3);
            byte[] changedSecond = RepositoryFixture.Random(60, 4);
            File.WriteAllBytes(first, changedFirst);
            File.WriteAllBytes(second, changedSecond);

            var error = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Force = true }), null, CancellationToken.None));

            Assert.Equal("RestoreChunkDamaged", error.ErrorId);
            Assert.Contains(damaged, error.Message);
            Assert.Equal(changedFirst, File.ReadAllBytes(first));
            Assert.Equal(changedSecond, File.ReadAllBytes(second));
            Assert.Equal(new[] { "a.img", "b.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName).OrderBy(name => name));
        }

        [Fact]
        public void AMissingChunkIsNamedAndNothingIsWritten()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(2 * Chunk, 1));
            RestorePoint point = fixture.BackUp("vm1", path);
            File.Delete(fixture.ChunkFiles().Single(file => Path.GetFileName(file) == point.Files[0].Chunks[1]));
            string destination = Path.Combine(fixture.Root, "out");

            var error = Assert.Throws<VmQuiesceException>(() => Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Destination = destination }), null, CancellationToken.None));

            Assert.Equal("RestoreChunkMissing", error.ErrorId);
            Assert.False(Directory.Exists(destination), "the -Destination the failed restore made is left behind");

            // A destination that was there before stays, with what was in it.
            Directory.CreateDirectory(Path.Combine(destination, "kept"));
            Assert.Throws<VmQuiesceException>(() => Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Destination = destination }), null, CancellationToken.None));
            Assert.Equal(new[] { "kept" }, Directory.GetFileSystemEntries(destination).Select(Path.GetFileName));
        }

        [Fact]
        public void CancellingMidwayLeavesTheOriginalsAndNoTempFiles()
        {
            using var fixture = new RepositoryFixture();
            string first = fixture.WriteFile("a.img", RepositoryFixture.Random(8 * Chunk, 1));
            string second = fixture.WriteFile("b.img", RepositoryFixture.Random(8 * Chunk, 2));
            RestorePoint point = fixture.BackUp("vm1", first, second);
            byte[] changed = RepositoryFixture.Random(10, 3);
            File.WriteAllBytes(first, changed);
            File.WriteAllBytes(second, changed);
            using var cancel = new CancellationTokenSource();
            var phases = new List<string>();

            Assert.ThrowsAny<OperationCanceledException>(() => Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { Force = true }), new OperationHost(progress: report =>
            {
                var progress = (RestoreProgress)report;
                phases.Add(progress.Phase + " " + Path.GetFileName(progress.CurrentFile));
                if (progress.CurrentFile == second)
                {
                    cancel.Cancel();
                }
            }), cancel.Token));

            Assert.Contains("Writing a.img", phases);
            Assert.Equal(changed, File.ReadAllBytes(first));
            Assert.Equal(changed, File.ReadAllBytes(second));
            Assert.Equal(new[] { "a.img", "b.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName).OrderBy(name => name));
        }

        [Fact]
        public void TooLittleFreeSpaceIsRefusedBeforeWriting()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Concat(RepositoryFixture.Random(2 * Chunk, 1), new byte[4 * Chunk]));
            RestorePoint point = fixture.BackUp("vm1", path);
            File.Delete(path);
            var asked = new List<string>();

            // Holes need no room: two data chunks fit in exactly two chunks of space, one byte less does not.
            var error = Assert.Throws<VmQuiesceException>(() => Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = folder => { asked.Add(folder); return ("v", (2L * Chunk) - 1); } })
                .Plan(new RestoreRequest(point), CancellationToken.None));
            Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = _ => ("v", 2L * Chunk) }).Plan(new RestoreRequest(point), CancellationToken.None);

            Assert.Equal("InsufficientDiskSpace", error.ErrorId);
            Assert.Equal(fixture.Root, asked.Single());
            Assert.False(File.Exists(path));
        }

        [Fact]
        public void ARunningVmIsRefusedAndNamed()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1));
            RestorePoint point = fixture.BackUp("vm1", path);

            var error = Assert.Throws<VmQuiesceException>(() => Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage("process 4242 (qemu-system-x86_64)"), FreeSpace = _ => null })
                .Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None));

            Assert.Equal("VmRunning", error.ErrorId);
            Assert.Equal(FailureKind.ResourceBusy, error.Kind);
            Assert.Contains("process 4242 (qemu-system-x86_64)", error.Message);
            Assert.Contains("vm1", error.Message);
        }

        [LinuxFact]
        public void TheHostProbeFindsAProcessHoldingTheFileOpen()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("held.img", new byte[10]);
            Assert.Null(HostFileUsageProbe.Instance.FindUser(path, CancellationToken.None));
            // The shell stays itself (no exec) and waits on stdin, so its name is settled before it says "open".
            using var holder = Process.Start(new ProcessStartInfo("sh", $"-c \"exec 3<'{path}'; echo open; read line\"") { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false })!;
            try
            {
                Assert.Equal("open", holder.StandardOutput.ReadLine());

                Assert.Equal($"process {holder.Id} (sh)", HostFileUsageProbe.Instance.FindUser(path, CancellationToken.None));
            }
            finally
            {
                holder.Kill();
                holder.WaitForExit();
            }
        }

        [Fact]
        public void AFailedRenamePutsEveryOriginalBack()
        {
            using var fixture = new RepositoryFixture();
            string first = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1));
            string second = fixture.WriteFile("b.img", RepositoryFixture.Random(Chunk, 2));
            RestorePoint point = fixture.BackUp("vm1", first, second);
            byte[] changedFirst = RepositoryFixture.Random(11, 3);
            byte[] changedSecond = RepositoryFixture.Random(12, 4);
            File.WriteAllBytes(first, changedFirst);
            File.WriteAllBytes(second, changedSecond);

            // a.img linked aside, its temp renamed over it, b.img linked aside, then renaming b.img's temp over it fails.
            var ops = new FailingRenameOps(failAt: 1);
            var engine = Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = _ => null, Files = ops });
            var error = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None));

            Assert.Equal("RestoreReplaceFailed", error.ErrorId);
            Assert.Equal(2 + 1, ops.Renames); // and one putting a.img's original back (b.img's never left)
            Assert.Equal(changedFirst, File.ReadAllBytes(first));
            Assert.Equal(changedSecond, File.ReadAllBytes(second));
            Assert.Equal(new[] { "a.img", "b.img" }, Directory.GetFiles(fixture.Root).Select(Path.GetFileName).OrderBy(name => name));
        }

        [Fact]
        public void ALeftoverOfAnInterruptedReplaceIsRefused()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1));
            RestorePoint point = fixture.BackUp("vm1", path);
            File.WriteAllBytes(path + RestoreEngine.ReplacedSuffix, new byte[1]);

            Assert.Equal("RestoreLeftoverFound", Assert.Throws<VmQuiesceException>(() => Plan(fixture, new RestoreRequest(point) { Force = true })).ErrorId);
        }

        [Fact]
        public void AnUnknownSnapshotKindNamesTheKindAndSkipRevertStillRestores()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 1);
            string path = fixture.WriteFile("a.vmdk", content);
            RestorePoint point = BackUpWithSnapshot(fixture, new CapturedSnapshot("before-upgrade", "7", "Hypervisor9"), path);
            File.Delete(path);

            var error = Assert.Throws<VmQuiesceException>(() => Plan(fixture, new RestoreRequest(point)));
            RestoreResult result = Engine(fixture).Run(Plan(fixture, new RestoreRequest(point) { SkipRevert = true }), null, CancellationToken.None);

            Assert.Equal("SnapshotKindNotSupported", error.ErrorId);
            Assert.Contains("'Hypervisor9'", error.Message);
            Assert.Contains("-SkipRevert", error.Remedy);
            Assert.Equal(RevertStatus.Skipped, result.RevertValue);
            Assert.Equal("before-upgrade", result.Snapshot);
            Assert.Equal(content, File.ReadAllBytes(path));
        }

        [Fact]
        public void TheReverterRunsOnTheWrittenFilesBeforeTheyReplaceTheOriginals()
        {
            using var fixture = new RepositoryFixture();
            string path = fixture.WriteFile("a.img", RepositoryFixture.Random(Chunk, 1));
            RestorePoint point = BackUpWithSnapshot(fixture, new CapturedSnapshot("s1", null, "Fake"), path);
            byte[] changed = RepositoryFixture.Random(5, 2);
            File.WriteAllBytes(path, changed);
            var failing = new FakeReverter(fail: true);
            var engine = Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = _ => null, Reverters = new SnapshotReverters(new[] { failing }) });

            Assert.Equal("FakeRevertFailed", Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None)).ErrorId);
            Assert.Equal(changed, File.ReadAllBytes(path));
            // It saw the restored bytes, not the file they were to replace.
            Assert.Equal(RepositoryFixture.Random(Chunk, 1), failing.SawContents.Single());

            var working = new FakeReverter(fail: false);
            engine = Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = _ => null, Reverters = new SnapshotReverters(new[] { working }) });
            RestoreResult result = engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None);
            Assert.True(result.SnapshotReverted);
            Assert.Equal("reverted by fake", result.RevertDetail);
            Assert.Equal(new byte[] { 0xAB }, File.ReadAllBytes(path));
        }

        [Fact]
        public void AHypervisorRevertRunsOnTheFilesInPlaceAndItsFailureSaysTheFilesAreBack()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(Chunk, 1);
            string path = fixture.WriteFile("vm.vmx", content);
            RestorePoint point = BackUpWithSnapshot(fixture, new CapturedSnapshot("s1", null, "Fake"), path);
            File.WriteAllBytes(path, RepositoryFixture.Random(5, 2));
            var failing = new FakeReverter(fail: true, RevertStage.AfterReplace);
            var engine = Engine(fixture, new RestoreEnvironment { Usage = new FakeUsage(null), FreeSpace = _ => null, Reverters = new SnapshotReverters(new[] { failing }) });

            var error = Assert.Throws<VmQuiesceException>(() => engine.Run(engine.Plan(new RestoreRequest(point) { Force = true }, CancellationToken.None), null, CancellationToken.None));

            Assert.Equal("SnapshotRevertFailed", error.ErrorId);
            Assert.Contains("are back", error.Message);
            Assert.Equal(new[] { path }, failing.SawFiles);
            Assert.Equal(content, File.ReadAllBytes(path));
        }

        [LinuxFact]
        public void AQemuInternalSnapshotIsAppliedToTheRestoredImage()
        {
            using var fixture = new RepositoryFixture();
            string image = Path.Combine(fixture.Root, "disk.qcow2");
            HostCommand.RunChecked("qemu-img", new[] { "create", "-q", "-f", "qcow2", image, "4M" });
            HostCommand.RunChecked("qemu-io", new[] { "-c", "write -P 0x11 0 64k", image });
            HostCommand.RunChecked("qemu-img", new[] { "snapshot", "-c", "vmquiesce-test", image });
            HostCommand.RunChecked("qemu-io", new[] { "-c", "write -P 0x22 0 64k", image });
            RestorePoint point = BackUpWithSnapshot(fixture, new CapturedSnapshot("vmquiesce-test", null, "QemuInternal"), image);
            File.Delete(image);

            RestoreResult result = Engine(fixture).Run(Plan(fixture, new RestoreRequest(point)), null, CancellationToken.None);

            Assert.Equal(RevertStatus.Reverted, result.RevertValue);
            Assert.Contains("vmquiesce-test", result.RevertDetail);
            HostCommandResult before = HostCommand.Run("qemu-io", new[] { "-c", "read -P 0x11 0 64k", image });
            HostCommandResult after = HostCommand.Run("qemu-io", new[] { "-c", "read -P 0x22 0 64k", image });
            Assert.DoesNotContain("verification failed", before.StandardOutput + before.StandardError);
            Assert.Contains("read 65536/65536", before.StandardOutput);
            Assert.Contains("verification failed", after.StandardOutput + after.StandardError);
        }

        private static long AllocatedBlocks(string path) => long.Parse(HostCommand.RunChecked("stat", new[] { "-c", "%b", path }).StandardOutput.Trim(), System.Globalization.CultureInfo.InvariantCulture);

        private static RestoreEngine Engine(RepositoryFixture fixture, RestoreEnvironment? environment = null) => new RestoreEngine(fixture.Repository, environment ?? Quiet);

        private static RestorePlan Plan(RepositoryFixture fixture, RestoreRequest request) => Engine(fixture).Plan(request, CancellationToken.None);

        private static RestorePoint BackUpWithSnapshot(RepositoryFixture fixture, CapturedSnapshot snapshot, params string[] paths) =>
            new BackupEngine(fixture.Repository, workers: 2).Run(new ViewSource(StableFilesView.ForPaths(paths, snapshot)), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

        private sealed class FakeUsage : IFileUsageProbe
        {
            private readonly string? _user;

            public FakeUsage(string? user) => _user = user;

            public string? FindUser(string path, CancellationToken cancel) => _user;
        }

        private sealed class FailingRenameOps : RestoreFileOps
        {
            private readonly int _failAt;

            public FailingRenameOps(int failAt) => _failAt = failAt;

            public int Renames { get; private set; }

            public override void Rename(TrustedFolder folder, string from, string to)
            {
                if (Renames++ == _failAt)
                {
                    throw new IOException("disk on fire");
                }

                base.Rename(folder, from, to);
            }
        }

        private sealed class FakeReverter : ISnapshotReverter
        {
            private readonly bool _fail;

            public FakeReverter(bool fail, RevertStage stage = RevertStage.BeforeReplace)
            {
                _fail = fail;
                Stage = stage;
            }

            public string Kind => "Fake";

            public RevertStage Stage { get; }

            public List<string> SawFiles { get; } = new List<string>();

            public List<byte[]> SawContents { get; } = new List<byte[]>();

            public string Revert(CapturedSnapshot snapshot, IReadOnlyList<string> restoredFiles, CancellationToken cancel)
            {
                SawFiles.AddRange(restoredFiles);
                SawContents.AddRange(restoredFiles.Select(File.ReadAllBytes));
                if (_fail)
                {
                    throw new VmQuiesceException("FakeRevertFailed", FailureKind.WriteError, "fake revert failed", snapshot);
                }

                File.WriteAllBytes(restoredFiles.Single(), new byte[] { 0xAB });
                return "reverted by fake";
            }
        }
    }
}
