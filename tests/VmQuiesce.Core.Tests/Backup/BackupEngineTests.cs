using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;
using VmQuiesce.Core.Tests.Faults;
using VmQuiesce.Core.Tests.Platform;
using VmQuiesce.Core.Tests.Repository;
using Xunit;

namespace VmQuiesce.Core.Tests.Backup
{
    public class BackupEngineTests
    {
        private const int Chunk = RepositoryFixture.ChunkSize;

        [Fact]
        public void CancellingMidCopyCompletesTheViewAsFailedAndPublishesNothing()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(200 * Chunk, 1));
            var source = new FakeSource(disk);
            using var cancel = new CancellationTokenSource();
            var progress = SyncProgress(report =>
            {
                if (report.Phase == BackupPhase.Copying && report.BytesDone > 0)
                {
                    cancel.Cancel();
                }
            });

            Assert.ThrowsAny<OperationCanceledException>(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), progress, cancel.Token));

            Assert.Equal(new bool?[] { false }, source.View!.Completions);
            Assert.True(source.View.Disposed);
            Assert.Empty(fixture.Repository.ListRestorePoints());
            Assert.Empty(Directory.GetFiles(Path.Combine(fixture.RepositoryPath, "locks")));
        }

        [Fact]
        public void AReleaseFailureAfterTheDataIsStoredStillPublishesAPointThatSaysSo()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 2)))
            {
                CompleteFailure = new VmQuiesceException("QemuSnapshotReleaseFailed", FailureKind.InvalidOperation, "block-commit failed", "vm"),
            };

            BackupOutcome outcome = new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None);

            Assert.Equal("QemuSnapshotReleaseFailed", outcome.ReleaseFailure!.ErrorId);
            RestorePoint stored = fixture.Repository.GetRestorePoint(outcome.RestorePoint.Id);
            Assert.False(stored.SnapshotReleased);
            Assert.Equal("block-commit failed", stored.ReleaseError);
            Assert.Equal(new bool?[] { true }, source.View!.Completions);
            Assert.True(fixture.Repository.Verify(stored, CancellationToken.None).IsValid);
            // The manifest made ready during the release said it went well: it was dropped, not left beside the point.
            Assert.Equal(new[] { stored.Id + ".json" }, Directory.GetFiles(fixture.Repository.PointsFolder).Select(Path.GetFileName));
        }

        [Fact]
        public void TheManifestIsMadeReadyWhileTheSnapshotIsReleasedAndThePointExistsOnlyOnceItIsReleased()
        {
            using var fixture = new RepositoryFixture();
            var ops = new ManifestFlushSignal();
            BackupRepository repository = BackupRepository.Open(fixture.RepositoryPath, ops);
            string[] duringRelease = Array.Empty<string>();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 5)))
            {
                OnComplete = _ =>
                {
                    Assert.True(ops.ManifestFlushed.Wait(TimeSpan.FromMinutes(1)), "the manifest was not made ready while the snapshot was released");
                    duringRelease = Directory.GetFiles(repository.PointsFolder).Select(Path.GetFileName).ToArray()!;
                },
            };

            BackupOutcome outcome = new BackupEngine(repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None);

            string manifestTemp = Assert.Single(duringRelease);
            Assert.StartsWith(ChunkStore.TempPrefix + outcome.RestorePoint.Id + ".json.", manifestTemp, StringComparison.Ordinal);
            Assert.Equal(new[] { outcome.RestorePoint.Id + ".json" }, Directory.GetFiles(repository.PointsFolder).Select(Path.GetFileName));
            Assert.True(repository.GetRestorePoint(outcome.RestorePoint.Id).SnapshotReleased);
        }

        [Fact]
        public void AViewIsToldOnceWhenTheLastReadsAreQueuedBeforeItIsReleased()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(40 * Chunk, 6)), fixture.WriteFile("disk2.img", RepositoryFixture.Random(5 * Chunk, 7)));

            new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None);

            Assert.Equal(new[] { 1 }, source.View!.PreparedAtCompletions);
        }

        [Fact]
        public void AViewIsToldTheReadsEndedOnceEveryChunkIsWrittenAndBeforeItIsReleased()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(40 * Chunk, 8)));
            string chunks = Path.Combine(fixture.Repository.Path, ChunkStore.FolderName);
            int writtenWhenTold = -1;
            // Counted by chunk: a flusher publishing one links its final name before it unlinks the temp name.
            source.OnReadsEnded = () => writtenWhenTold = Directory.GetFiles(chunks, "*", SearchOption.AllDirectories)
                .Select(path => Path.GetFileName(path))
                .Select(name => name.StartsWith(ChunkStore.TempPrefix, StringComparison.Ordinal) ? name.Substring(ChunkStore.TempPrefix.Length).Split('.')[0] : name)
                .Distinct(StringComparer.Ordinal).Count();

            new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None);

            Assert.Equal(new[] { "prepare release", "reads ended", "complete True" }, source.View!.Events);
            // After the workers: each of the 40 distinct chunks is written, published or waiting for a flusher under its temp name.
            Assert.Equal(40, writtenWhenTold);
        }

        [LinuxFact]
        public void ADeviceFifoOrFolderGivenAsADiskIsRefusedByWhatItIsAndNothingIsStored()
        {
            using var fixture = new RepositoryFixture();
            string fifo = Path.Combine(fixture.Root, "disk.fifo");
            TestGuest.HostCommand.RunChecked("mkfifo", new[] { fifo });
            string folder = Directory.CreateDirectory(Path.Combine(fixture.Root, "disk-folder")).FullName;
            string linkToNull = Path.Combine(fixture.Root, "disk.img");
            File.CreateSymbolicLink(linkToNull, "/dev/null");

            foreach (var (disk, kind) in new[] { ("/dev/null", "a character device"), (linkToNull, "a character device"), (fifo, "a FIFO"), (folder, "a folder") })
            {
                // Bounded, so a regression that opens the FIFO fails here instead of hanging the suite.
                var backup = System.Threading.Tasks.Task.Run(() => Assert.Throws<VmQuiesceException>(() => fixture.BackUp("vm1", disk)));
                Assert.True(backup.Wait(TimeSpan.FromMinutes(2)), $"The backup of {disk} did not end.");

                Assert.Equal("SourceFileNotAFile", backup.Result.ErrorId);
                Assert.Contains($"'{disk}' of VM 'vm1' is {kind}, not a regular file", backup.Result.Message);
            }

            Assert.Empty(fixture.Repository.ListRestorePoints());
            Assert.Empty(fixture.ChunkFiles());
        }

        [LinuxFact]
        public void AnImagePutAsideForAFifoAfterItWasLookedAtIsRefusedByNameInsteadOfHangingTheBackup()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(2 * RepositoryFixture.ChunkSize, 1));
            // Whoever can write the VM's folder swaps the image for a FIFO between the look at each file and its copy.
            var host = new OperationHost(progress: progress =>
            {
                if (progress is BackupProgress { Phase: BackupPhase.Copying, BytesDone: 0 } && !File.Exists(disk + ".aside"))
                {
                    File.Move(disk, disk + ".aside");
                    Fifo.Make(disk);
                }
            });

            VmQuiesceException failure = Fifo.Within(disk, () => Assert.Throws<VmQuiesceException>(() =>
                new BackupEngine(fixture.Repository, 2).Run(new PlainImageSource("vm1", new[] { disk }), new QuiesceOptions { Required = Consistency.Crash }, host, CancellationToken.None)));

            // What the user sees: the copy's error id, and the file named as what it is.
            Assert.Equal("BackupCopyFailed", failure.ErrorId);
            Assert.Contains($"'{disk}' is a FIFO", failure.Message);
            Assert.Empty(fixture.Repository.ListRestorePoints());
        }

        [Fact]
        public void AFileReadThroughADescriptorPathIsNamedByItsOwnPathInErrors()
        {
            using var fixture = new RepositoryFixture();
            string gone = Path.Combine(fixture.Root, "gone.vmdk");
            var source = new FakeSource(gone) { ReadPathOf = _ => "/proc/self/fd/999999" };

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), OperationHost.None, CancellationToken.None));

            Assert.Equal("SourceFileNotFound", e.ErrorId);
            Assert.Contains($"'{gone}'", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("/proc/", e.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void AReleaseThatFailsAfterAFailedCopyReachesTheUserWithWhatToRunWhileTheCopysFailureStaysTheError()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(Path.Combine(fixture.Root, "gone.img"))
            {
                CompleteFailure = new VmQuiesceException("OverlayCommitFailed", FailureKind.InvalidOperation, "VM 'fake-vm' still runs on 1 overlay(s)", "fake-vm")
                {
                    Remedy = "commit disk0 by hand",
                },
            };
            var warnings = new List<string>();

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), new OperationHost(warn: warnings.Add), CancellationToken.None));

            Assert.Equal("SourceFileNotFound", e.ErrorId);
            Assert.Equal(new bool?[] { false }, source.View!.Completions);
            string warning = Assert.Single(warnings);
            Assert.Contains("'fake-vm' did not finish", warning, StringComparison.Ordinal);
            Assert.Contains("still runs on 1 overlay(s)", warning, StringComparison.Ordinal);
            Assert.Contains("To release it: commit disk0 by hand", warning, StringComparison.Ordinal);
        }

        [Fact]
        public async System.Threading.Tasks.Task CtrlCWhileTheSnapshotIsReleasedSaysAtOnceThatTheReleaseFinishesFirst()
        {
            using var fixture = new RepositoryFixture();
            using var cancel = new CancellationTokenSource();
            using var releasing = new ManualResetEventSlim();
            using var mayFinish = new ManualResetEventSlim();
            using var warned = new ManualResetEventSlim();
            var warnings = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 4)))
            {
                OnComplete = _ =>
                {
                    releasing.Set();
                    Assert.True(mayFinish.Wait(TimeSpan.FromMinutes(1)));
                },
            };
            var host = new OperationHost(warn: warning =>
            {
                warnings.Enqueue(warning);
                warned.Set();
            });

            var run = System.Threading.Tasks.Task.Run(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), host, cancel.Token));
            Assert.True(releasing.Wait(TimeSpan.FromMinutes(1)), "the release never started");
            cancel.Cancel();

            Assert.True(warned.Wait(TimeSpan.FromMinutes(1)), "Ctrl+C during the release said nothing");
            Assert.False(run.IsCompleted);
            mayFinish.Set();
            BackupOutcome outcome = await run;
            Assert.Contains("first the snapshot or overlays it made are released", Assert.Single(warnings), StringComparison.Ordinal);
            Assert.True(outcome.RestorePoint.SnapshotReleased);
        }

        [LinuxRootFact]
        public void ARepositoryThatTurnsReadOnlyDuringABackupFailsWithRepositoryReadOnlyAndLeavesTheLockForLater()
        {
            using var fixture = new RepositoryFixture();
            using var fs = new ScratchFileSystem("size=8m");
            BackupRepository repository = BackupRepository.OpenOrCreate(Path.Combine(fs.Path, "repo"), Chunk);
            var warnings = new List<string>();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 7)))
            {
                OnComplete = _ => fs.Remount("ro"),
            };

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(repository, 2).Run(source, new QuiesceOptions(), new OperationHost(warn: warnings.Add), CancellationToken.None));

            Assert.Equal("RepositoryReadOnly", e.ErrorId);
            Assert.Equal(new bool?[] { true }, source.View!.Completions);
            Assert.Contains("Could not remove the lock", Assert.Single(warnings), StringComparison.Ordinal);
            fs.Remount("rw");
            source.OnComplete = null;
            Assert.Empty(repository.ListRestorePoints());
            Assert.NotNull(new BackupEngine(repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None).RestorePoint);
        }

        [Fact]
        public void LeftoversAreRefusedByNameBeforeAnythingIsFrozen()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", new byte[10])) { Leftovers = new[] { "overlay disk.vmq-1.qcow2", "snapshot vmq-20260101" } };

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None));

            Assert.Equal("LeftoversFound", e.ErrorId);
            Assert.Contains("overlay disk.vmq-1.qcow2", e.Message);
            Assert.Contains("snapshot vmq-20260101", e.Message);
            Assert.Null(source.View);
        }

        [Fact]
        public void AFileThatShrinksDuringTheCopyFailsTheBackupAndReleasesTheView()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(100 * Chunk, 3));
            var source = new FakeSource(disk);
            var progress = SyncProgress(report =>
            {
                if (report.Phase == BackupPhase.Copying && report.BytesDone == 0)
                {
                    // The view lies: its file changes after the copy has measured it.
                    using var file = new FileStream(disk, FileMode.Open);
                    file.SetLength(Chunk);
                }
            });

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), progress, CancellationToken.None));

            Assert.Equal("SourceFileChanged", e.ErrorId);
            Assert.Equal(new bool?[] { false }, source.View!.Completions);
            Assert.Empty(fixture.Repository.ListRestorePoints());
        }

        [Theory]
        [InlineData("GuestAgent", FrozenMeasure.FreezeToThaw)]
        [InlineData("HostVss", FrozenMeasure.DoSnapshotSetDuration)]
        [InlineData("None", FrozenMeasure.None)]
        public void ARestorePointWrittenBeforeTheMeasureWasRecordedReadsAsItsMethodsUsualMeasure(string method, string usual)
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk, 5)))
            {
                Record = new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 7, method, "Unusual"),
            };
            RestorePoint point = new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None).RestorePoint;
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            string text = File.ReadAllText(manifest);
            string older = System.Text.RegularExpressions.Regex.Replace(text, "\"frozenMeasure\":\\s*\"Unusual\",?", string.Empty);
            Assert.NotEqual(text, older);
            File.WriteAllText(manifest, older);

            Assert.Equal(usual, fixture.Repository.GetRestorePoint(point.Id).Quiesce.FrozenMeasure);
        }

        [Fact]
        public void TheRestorePointRecordsWhatTheSourceReached()
        {
            using var fixture = new RepositoryFixture();
            var source = new FakeSource(fixture.WriteFile("disk.img", RepositoryFixture.Random(Chunk, 4)))
            {
                Record = new QuiesceRecord(Consistency.Application, new[] { "C:", "SqlServerWriter" }, 123.5, "HostVss", FrozenMeasure.VssWriterEvents),
                Snapshot = new CapturedSnapshot("vmq-1", "42", "QemuInternal"),
            };

            RestorePoint point = new BackupEngine(fixture.Repository, 2).Run(source, new QuiesceOptions(), null, CancellationToken.None).RestorePoint;
            RestorePoint read = fixture.Repository.GetRestorePoint(point.Id);

            Assert.Equal(Consistency.Application, read.ConsistencyValue);
            Assert.Equal(new[] { "C:", "SqlServerWriter" }, read.Quiesce.Frozen);
            Assert.Equal(123.5, read.Quiesce.FrozenMilliseconds);
            Assert.Equal(FrozenMeasure.VssWriterEvents, read.Quiesce.FrozenMeasure);
            Assert.Equal("HostVss", read.Quiesce.Method);
            Assert.Equal("vmq-1", read.Snapshot!.Name);
            Assert.Equal("42", read.Snapshot.Id);
            Assert.Equal("QemuInternal", read.Snapshot.Kind);
            Assert.Equal("Fake", read.SourceKind);
            Assert.True(read.SnapshotReleased);
        }

        [Fact]
        public void PlainFilesRefuseAHigherConsistencyUnlessALowerOneIsAllowed()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", new byte[10]);
            var engine = new BackupEngine(fixture.Repository, 2);

            var e = Assert.Throws<VmQuiesceException>(() => engine.Run(new PlainImageSource("vm", new[] { disk }), new QuiesceOptions { Required = Consistency.FileSystem }, null, CancellationToken.None));
            RestorePoint point = engine.Run(new PlainImageSource("vm", new[] { disk }), new QuiesceOptions { Required = Consistency.FileSystem, AllowLower = true }, null, CancellationToken.None).RestorePoint;

            Assert.Equal("ConsistencyNotReached", e.ErrorId);
            Assert.Equal(Consistency.Crash, point.ConsistencyValue);
        }

        [Fact]
        public void HooksRunAroundTheCaptureInOrder()
        {
            using var fixture = new RepositoryFixture();
            var calls = new List<string>();
            var options = new QuiesceOptions { Required = Consistency.Crash, PreFreeze = _ => calls.Add("pre"), PostThaw = _ => calls.Add("post") };

            new BackupEngine(fixture.Repository, 2).Run(new PlainImageSource("vm", new[] { fixture.WriteFile("disk.img", new byte[10]) }), options, null, CancellationToken.None);

            Assert.Equal(new[] { "pre", "post" }, calls);
        }

        [Fact]
        public void AnEmptyFileIsARestorePointFileWithNoChunks()
        {
            using var fixture = new RepositoryFixture();
            string empty = fixture.WriteFile("empty.bin", Array.Empty<byte>());
            RestorePoint point = fixture.BackUp("vm", empty, fixture.WriteFile("disk.img", RepositoryFixture.Random(100, 5)));

            Assert.Empty(point.Files[0].Chunks);
            Assert.Equal(RepositoryFixture.DigestOf(empty), point.Files[0].Digest);
            Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid);
        }

        [Theory]
        [InlineData("../escape.img")]
        [InlineData("/etc/disk.img")]
        [InlineData("a/./b.img")]
        [InlineData("")]
        public void AViewFilePathThatARestoreCouldNotWriteSafelyIsRefused(string relativePath)
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", new byte[10]);
            var view = new StableFilesView(new[] { new ViewFile(relativePath, disk, disk) });

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(new ViewSource(view), new QuiesceOptions(), null, CancellationToken.None));

            Assert.Equal("InvalidViewFile", e.ErrorId);
            Assert.False(view.CompletedWith);
        }

        [Fact]
        public void AQuiesceRecordThatFailsOnceTheDataIsCopiedFailsTheBackupBeforeTheReleaseAndStoresNoPoint()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(3 * Chunk, 8));
            var hookFailed = new VmQuiesceException("PostThawScriptFailed", FailureKind.InvalidOperation, "-PostThawScript failed for VM 'vm': no service to resume", "vm");
            var view = new StableFilesView(new[] { new ViewFile("disk.img", disk, disk) }) { QuiesceFailure = hookFailed };

            var e = Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(new ViewSource(view), new QuiesceOptions(), null, CancellationToken.None));

            Assert.Same(hookFailed, e);
            // Released as a failed backup (a change-tracked view keeps its previous checkpoint then), and nothing published.
            Assert.False(view.CompletedWith);
            Assert.Empty(fixture.Repository.ListRestorePoints());
        }

        [Fact]
        public void TwoViewFilesWithTheSamePathAreRefused()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", new byte[10]);
            var view = new StableFilesView(new[] { new ViewFile("disk.img", disk, disk), new ViewFile("DISK.img", disk, disk) });

            Assert.Equal("InvalidViewFile", Assert.Throws<VmQuiesceException>(() => new BackupEngine(fixture.Repository, 2).Run(new ViewSource(view), new QuiesceOptions(), null, CancellationToken.None)).ErrorId);
        }

        [Fact]
        public async System.Threading.Tasks.Task TwoVmsWithTheSameDataBackedUpAtOnceStoreEachChunkOnce()
        {
            using var fixture = new RepositoryFixture();
            byte[] content = RepositoryFixture.Random(64 * Chunk, 6);
            string a = fixture.WriteFile("a.img", content);
            string b = fixture.WriteFile("b.img", content);
            var engine = new BackupEngine(fixture.Repository, 2);
            var options = new QuiesceOptions { Required = Consistency.Crash };

            var runs = new[] { ("vm-a", a), ("vm-b", b) }
                .Select(vm => System.Threading.Tasks.Task.Run(() => engine.Run(new PlainImageSource(vm.Item1, new[] { vm.Item2 }), options, null, CancellationToken.None).RestorePoint))
                .ToArray();
            RestorePoint[] points = await System.Threading.Tasks.Task.WhenAll(runs);

            Assert.Equal(64, fixture.ChunkFiles().Count);
            Assert.Equal(64L * (Chunk + ChunkStore.HeaderLength), points.Sum(point => point.StoredBytes));
            Assert.All(points, point => Assert.True(fixture.Repository.Verify(point, CancellationToken.None).IsValid));
            Assert.Empty(Directory.EnumerateFiles(fixture.RepositoryPath, ".tmp-*", SearchOption.AllDirectories));
        }

        [Fact]
        public void ProgressGoesFromNothingToEverythingWithARate()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(30 * Chunk, 7));
            var reports = new List<BackupProgress>();

            new BackupEngine(fixture.Repository, 2).Run(new PlainImageSource("vm", new[] { disk }), new QuiesceOptions { Required = Consistency.Crash }, SyncProgress(reports.Add), CancellationToken.None);

            var copying = reports.Where(report => report.Phase == BackupPhase.Copying).ToList();
            Assert.Equal(0, copying.First().BytesDone);
            Assert.Equal(30L * Chunk, copying.Last().BytesDone);
            Assert.All(copying, report => Assert.Equal(30L * Chunk, report.BytesTotal));
            Assert.True(copying.Last().BytesPerSecond > 0);
            Assert.Equal(new[] { BackupPhase.Checking, BackupPhase.Quiescing, BackupPhase.Copying, BackupPhase.Completing, BackupPhase.Done }, reports.Select(report => report.Phase).Distinct());
        }

        [Fact]
        public void The_format_a_source_vouches_for_is_recorded_per_file_and_a_manifest_without_formats_still_reads()
        {
            using var fixture = new RepositoryFixture();
            string disk = fixture.WriteFile("disk.img", RepositoryFixture.Random(3000, 5));
            string config = fixture.WriteFile("vm.cfg", new byte[] { 1, 2, 3 });
            var view = new StableFilesView(new[] { new ViewFile("disk.img", disk, disk) { Format = "raw" }, new ViewFile("vm.cfg", config, config) });

            RestorePoint point = new BackupEngine(fixture.Repository, 2).Run(new ViewSource(view), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

            Assert.Equal(new[] { "raw", null }, fixture.Repository.GetRestorePoint(point.Id).Files.Select(file => file.Format));
            string manifest = Path.Combine(fixture.RepositoryPath, "points", point.Id + ".json");
            string before = File.ReadAllText(manifest);
            string withoutFormats = Regex.Replace(before, "\"format\":\\s*(\"raw\"|null),", string.Empty);
            Assert.NotEqual(before, withoutFormats);
            File.WriteAllText(manifest, withoutFormats);
            Assert.All(fixture.Repository.GetRestorePoint(point.Id).Files, file => Assert.Null(file.Format));
        }

        private static IOperationHost SyncProgress(Action<BackupProgress> report) => new OperationHost(progress: value => report((BackupProgress)value));

        /// <summary>Signals once a manifest (a file in points/) has been flushed to disk.</summary>
        private sealed class ManifestFlushSignal : RepositoryFileOps
        {
            private volatile Stream? _manifest;

            public ManualResetEventSlim ManifestFlushed { get; } = new ManualResetEventSlim();

            public override Stream CreateNew(string path)
            {
                Stream created = base.CreateNew(path);
                if (Path.GetFileName(Path.GetDirectoryName(path)) == BackupRepository.PointsFolderName)
                {
                    _manifest = created;
                }

                return created;
            }

            public override void FlushToDisk(Stream stream)
            {
                base.FlushToDisk(stream);
                if (ReferenceEquals(stream, _manifest))
                {
                    ManifestFlushed.Set();
                }
            }
        }

        private sealed class FakeSource : IBackupSource
        {
            private readonly string[] _paths;

            public FakeSource(params string[] paths) => _paths = paths;

            /// <summary>Where each file is read (a descriptor's path, as the VMware source gives); the file's own path when null.</summary>
            public Func<string, string>? ReadPathOf { get; init; }

            public string Kind => "Fake";

            public string VmName => "fake-vm";

            public IReadOnlyList<string> Leftovers { get; set; } = Array.Empty<string>();

            public Exception? CompleteFailure { get; set; }

            /// <summary>Runs inside Complete, before CompleteFailure is thrown, with its success argument.</summary>
            public Action<bool>? OnComplete { get; set; }

            public Action? OnReadsEnded { get; set; }

            public QuiesceRecord Record { get; set; } = new QuiesceRecord(Consistency.FileSystem, new[] { "/" }, 5, "GuestAgent");

            public CapturedSnapshot? Snapshot { get; set; }

            public FakeView? View { get; private set; }

            public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Leftovers;

            public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel)
            {
                VmQuiesce.Core.Sources.Leftovers.Refuse(VmName, FindLeftovers(cancel));
                View = new FakeView(this);
                return View;
            }

            internal sealed class FakeView : IConsistentView, IReleasePreparation
            {
                private readonly FakeSource _source;
                private int _prepared;

                public FakeView(FakeSource source) => _source = source;

                public List<bool?> Completions { get; } = new List<bool?>();

                /// <summary>How often the release had been prepared at each Complete.</summary>
                public List<int> PreparedAtCompletions { get; } = new List<int>();

                public bool Disposed { get; private set; }

                public Consistency Reached => _source.Record.ReachedValue;

                public IReadOnlyList<ViewFile> Files => _source._paths.Select(path => new ViewFile(Path.GetFileName(path), _source.ReadPathOf?.Invoke(path) ?? path, path)).ToList();

                public CapturedSnapshot? Snapshot => _source.Snapshot;

                public QuiesceRecord Quiesce => _source.Record;

                /// <summary>What the engine told the view, in order.</summary>
                public List<string> Events { get; } = new List<string>();

                public void PrepareRelease()
                {
                    Interlocked.Increment(ref _prepared);
                    lock (Events)
                    {
                        Events.Add("prepare release");
                    }
                }

                public void ReadsEnded()
                {
                    _source.OnReadsEnded?.Invoke();
                    lock (Events)
                    {
                        Events.Add("reads ended");
                    }
                }

                public void Complete(bool success, CancellationToken cancel)
                {
                    Completions.Add(success);
                    PreparedAtCompletions.Add(Volatile.Read(ref _prepared));
                    lock (Events)
                    {
                        Events.Add($"complete {success}");
                    }

                    _source.OnComplete?.Invoke(success);
                    if (_source.CompleteFailure != null)
                    {
                        throw _source.CompleteFailure;
                    }
                }

                public void Dispose() => Disposed = true;
            }
        }
    }
}
