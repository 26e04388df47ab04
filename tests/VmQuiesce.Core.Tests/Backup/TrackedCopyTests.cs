using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Backup
{
    /// <summary>
    /// The engine's change-tracked copy against a disk in memory whose change map the test controls: what is read,
    /// what the point references, how partly changed chunks are patched, and what a wrong map or a damaged base does.
    /// </summary>
    public sealed class TrackedCopyTests : IDisposable
    {
        private const int Chunk = RepositoryFixture.ChunkSize;
        private readonly RepositoryFixture _fixture = new RepositoryFixture();
        private readonly byte[] _disk = RepositoryFixture.Random(16 * Chunk, 1);

        /// <summary>The repository the test backs up into: the fixture's (plain) unless the test chooses another.</summary>
        private BackupRepository _repository;

        public TrackedCopyTests()
        {
            _repository = _fixture.Repository;
            // Two chunks of zeroes: read as zero, never stored.
            Array.Clear(_disk, 10 * Chunk, 2 * Chunk);
        }

        public void Dispose() => _fixture.Dispose();

        [Fact]
        public void Change_tracking_asked_of_a_source_that_has_none_is_refused_naming_the_vm_before_anything_is_stored()
        {
            string image = _fixture.WriteFile("plain.raw", _disk);
            var source = new VmQuiesce.Core.Sources.PlainImage.PlainImageSource("plain-vm", new[] { image });

            var refused = Assert.Throws<VmQuiesceException>(() => new BackupEngine(_fixture.Repository).Run(source, new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None, new ChangeTrackingOptions()));

            Assert.Equal("ChangeTrackingNotSupported", refused.ErrorId);
            Assert.Contains("VM 'plain-vm'", refused.Message, StringComparison.Ordinal);
            Assert.Contains("running QEMU VMs", refused.Message, StringComparison.Ordinal);
            Assert.Equal("Leave out -ChangeTracking for this VM.", refused.Remedy);
            Assert.Empty(_fixture.Repository.ListRestorePoints());
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void An_incremental_point_reads_only_the_changed_bytes_patches_partly_changed_chunks_and_restores_whole(bool encrypted)
        {
            UseRepository(encrypted);
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            ChangeTrackingRecord full = Assert.Single(first.Files).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingMode.Full, full.ModeValue);
            Assert.Equal(14L * Chunk, full.BytesRead);

            // 4 KiB inside chunk 3, all of chunk 7, and 8 KiB of chunk 12 zeroed by the guest.
            var changed = new List<(long, long)> { (3L * Chunk + 8192, 4096), (7L * Chunk, Chunk), (12L * Chunk, 8192) };
            Write(3L * Chunk + 8192, RepositoryFixture.Random(4096, 2));
            Write(7L * Chunk, RepositoryFixture.Random(Chunk, 3));
            Write(12L * Chunk, new byte[8192]);
            RestorePoint second = Run(changed).RestorePoint;

            ChangeTrackingRecord record = Assert.Single(second.Files).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingMode.Incremental, record.ModeValue);
            Assert.Equal(first.Id, record.BasePoint);
            Assert.Equal(4096L + Chunk, record.BytesRead);
            Assert.Equal(4096L + Chunk + 8192, record.ChangedBytes);
            var before = first.Files[0].Chunks;
            var after = second.Files[0].Chunks;
            Assert.Equal(Enumerable.Range(0, 16).Where(i => i != 3 && i != 7 && i != 12), Enumerable.Range(0, 16).Where(i => before[i] == after[i]));
            Assert.Equal(_disk, File.ReadAllBytes(Restore(second)));
            Assert.Equal("raw", second.Files[0].RestoredFormat);
        }

        [Fact]
        public void Verification_names_the_region_a_wrong_map_missed_and_the_point_holds_the_full_read()
        {
            Run(new List<(long, long)>());
            Write(5L * Chunk + 100, new byte[] { 1, 2, 3 });
            BackupOutcome outcome = Run(new List<(long, long)>(), verify: true);

            Assert.Equal("ChangeTrackingMissedChanges", outcome.ChangeTrackingFailure?.ErrorId);
            Assert.Contains($"{5L * Chunk + 100}+3", outcome.ChangeTrackingFailure!.Message, StringComparison.Ordinal);
            ChangeTrackingRecord record = outcome.RestorePoint.Files[0].ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingRecord.Reasons.VerifyFailed, record.Reason);
            Assert.True(record.Verified);
            Assert.Equal(_disk, File.ReadAllBytes(Restore(outcome.RestorePoint)));

            // Without verification the same wrong map would have been believed: that is what -VerifyChangeTracking is for.
            Write(6L * Chunk, new byte[] { 9 });
            Assert.NotEqual(_disk, File.ReadAllBytes(Restore(Run(new List<(long, long)>()).RestorePoint)));
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void A_base_chunk_with_one_byte_changed_fails_a_patch_from_it_and_stores_no_point(bool encrypted)
        {
            // Plain, the chunk still looks whole (header, length) and only its hash tells; encrypted, its seal no longer opens.
            UseRepository(encrypted);
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            DamageStoredChunk(first.Files[0].Chunks[3]!);
            Write(3L * Chunk, new byte[] { 7 });

            var error = Assert.Throws<VmQuiesceException>(() => Run(new List<(long, long)> { (3L * Chunk, 1) }));
            Assert.Equal("ChangeTrackingBaseDamaged", error.ErrorId);
            Assert.Contains(encrypted ? "does not open with the repository's key" : "its content does not match its name", error.Message, StringComparison.Ordinal);
            Assert.Single(_repository.ListRestorePoints());
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void A_chunk_at_least_half_changed_is_read_whole_without_its_base_chunk_and_one_less_changed_is_patched(bool encrypted)
        {
            // Chunk 5's base chunk is damaged, yet half of chunk 5 changing is read whole and never opens it.
            UseRepository(encrypted);
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            DamageStoredChunk(first.Files[0].Chunks[5]!);
            Write(5L * Chunk + 4096, RepositoryFixture.Random(Chunk / 2, 5));
            RestorePoint second = Run(new List<(long, long)> { (5L * Chunk + 4096, Chunk / 2) }).RestorePoint;
            ChangeTrackingRecord record = Assert.Single(second.Files).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingMode.Incremental, record.ModeValue);
            Assert.Equal((long)Chunk, record.BytesRead);
            Assert.Equal(Chunk / 2, record.ChangedBytes);
            Assert.Equal(_disk, File.ReadAllBytes(Restore(second)));

            // Just under half of chunk 9 is patched onto its base chunk, so a damaged one fails it.
            DamageStoredChunk(second.Files[0].Chunks[9]!);
            Write(9L * Chunk, RepositoryFixture.Random(Chunk / 2 - 4096, 6));
            var error = Assert.Throws<VmQuiesceException>(() => Run(new List<(long, long)> { (9L * Chunk, Chunk / 2 - 4096) }));
            Assert.Equal("ChangeTrackingBaseDamaged", error.ErrorId);
        }

        /// <summary>A base chunk in object storage whose GET the store hangs up on, every time: the store failed, not the point built on.</summary>
        [Fact]
        public void A_base_chunk_the_store_fails_to_send_fails_the_backup_in_transport_not_as_damage()
        {
            var bucket = new S3DoubleBucket();
            bool hangUp = false;
            using var endpoint = new S3Double(request => hangUp && request.Method == "GET" && request.Path.Contains("/chunks/", StringComparison.Ordinal) ? S3Double.Reply.Nothing() : bucket.Answer(request));
            using ObjectRepository remote = ObjectRepository.OpenOrCreate(endpoint.NewStorage(), Chunk, key: null);
            var engine = new BackupEngine(remote) { HostCheckpointFolder = HostCheckpoints };
            RestorePoint first = Run(new List<(long, long)>(), engine: engine).RestorePoint;
            Write(3L * Chunk, new byte[] { 7 });
            hangUp = true;

            var error = Assert.Throws<VmQuiesceException>(() => Run(new List<(long, long)> { (3L * Chunk, 1) }, engine: engine));

            Assert.Equal("S3EndpointUnreachable", error.ErrorId);
            Assert.Contains($"(object '{ObjectRepository.ChunkKey(first.Files[0].Chunks[3]!)}')", error.Message, StringComparison.Ordinal);
            Assert.Single(remote.ListRestorePoints());
        }

        [Fact]
        public void A_source_that_fails_before_it_looks_at_the_previous_point_fails_the_backup_with_its_own_error_once_that_read_has_ended()
        {
            Run(new List<(long, long)>());
            var source = new TrackingSource(this, new List<(long, long)>()) { FailBeforeLooking = new VmQuiesceException("QemuUnreachable", FailureKind.ConnectionError, "no monitor", "vm") };

            var error = Assert.Throws<VmQuiesceException>(() => Engine().Run(source, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions()));

            Assert.Equal("QemuUnreachable", error.ErrorId);
            // The repository was read beside the source's preparation, and that read is over before the backup returns.
            Assert.Equal(TaskStatus.RanToCompletion, source.Received!.Status);
            Assert.Single(_fixture.Repository.ListRestorePoints());
        }

        [Fact]
        public async Task A_previous_point_that_lacks_a_chunk_is_found_out_after_the_source_has_the_request_and_the_disk_is_read_in_full_saying_why()
        {
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            string lost = first.Files[0].Chunks[2]!;
            File.Delete(_fixture.Repository.Chunks.PathOf(lost));
            var source = new TrackingSource(this, new List<(long, long)>());

            // The source is handed the base as if whole (its checkpoint serves a full read as well); the look at every chunk comes after.
            ChangeTrackingRequest request = Engine().PreviousCheckpoints(source, verify: false);
            Assert.Null(request.WhyNoPrevious);
            Assert.Equal(first.Id, Assert.Single(request.Previous).PointId);
            Assert.Equal($"restore point {first.Id} names the chunk {lost}, which is not in the repository", Engine().MissingBaseChunk(request));

            BackupOutcome outcome = Engine().Run(source, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions());
            Assert.Equal(first.Id, Assert.Single((await source.Received!).Previous).PointId);
            ChangeTrackingRecord record = Assert.Single(outcome.RestorePoint.Files).ChangeTrackingValue!;
            Assert.Equal(ChangeTrackingMode.Full, record.ModeValue);
            Assert.Equal(ChangeTrackingRecord.Reasons.PreviousPointDamaged, record.Reason);
            Assert.Contains(lost, record.Detail, StringComparison.Ordinal);
            Assert.Null(record.BasePoint);
            Assert.Null(record.ChangedBytes);
            Assert.Equal(14L * Chunk, record.BytesRead);
            // The full read stored the lost chunk again.
            Assert.True(File.Exists(_fixture.Repository.Chunks.PathOf(lost)));
            Assert.Equal(_disk, File.ReadAllBytes(Restore(outcome.RestorePoint)));
        }

        [Fact]
        public void The_base_is_found_reading_manifests_newest_first_so_older_ones_are_not_read_and_a_stray_copy_is_passed_over()
        {
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            string points = Path.Combine(_fixture.RepositoryPath, "points");
            // Older than the base: a backup that read every manifest stopped on this one.
            File.WriteAllText(Path.Combine(points, "20000101T000000Z-0badf00d.json"), "not a manifest");
            // Newer, but a copy of the base's manifest under another point's name: no point of the VM.
            File.Copy(Path.Combine(points, first.Id + ".json"), Path.Combine(points, "29990101T000000Z-0c0ffee0.json"));

            ChangeTrackingRequest request = Engine().PreviousCheckpoints(new TrackingSource(this, new List<(long, long)>()), verify: false);

            Assert.Null(request.WhyNoPrevious);
            Assert.Equal(first.Id, Assert.Single(request.Previous).PointId);
        }

        [Fact]
        public void A_previous_point_in_object_storage_is_a_base_checked_through_its_chunk_objects()
        {
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            using var objects = VmQuiesce.Core.Repository.Storage.ObjectRepository.Open(new VmQuiesce.Core.Repository.Storage.FileObjectStorage(_fixture.RepositoryPath));
            var source = new TrackingSource(this, new List<(long, long)>());

            var engine = new BackupEngine(objects) { HostCheckpointFolder = HostCheckpoints };
            ChangeTrackingRequest request = engine.PreviousCheckpoints(source, verify: false);
            string? whole = engine.MissingBaseChunk(request);
            objects.Storage.Delete(VmQuiesce.Core.Repository.Storage.ObjectRepository.ChunkKey(first.Files[0].Chunks[0]!));
            string? lacking = engine.MissingBaseChunk(request);

            Assert.Null(request.WhyNoPrevious);
            Assert.Equal(first.Id, Assert.Single(request.Previous).PointId);
            Assert.Null(whole);
            Assert.Contains("not in the repository", lacking, StringComparison.Ordinal);
        }

        [Fact]
        public void This_hosts_checkpoint_record_must_tell_the_same_chain_as_the_repository_or_the_request_says_why()
        {
            var source = new TrackingSource(this, new List<(long, long)>());
            RestorePoint first = Run(new List<(long, long)>()).RestorePoint;
            string record = HostCheckpointRecord.PathOf(HostCheckpoints, "Fake", "vm");
            JsonObject saved = JsonText.ParseObject(File.ReadAllText(record));
            Assert.Equal(_fixture.Repository.Location, saved.GetString("repository"));
            Assert.Equal(first.Id, saved.GetString("point"));
            Assert.Equal("bitmap-1", Assert.IsType<JsonObject>(Assert.Single(saved.GetArray("disks"))).GetString("bitmap"));
            Assert.Null(Engine().PreviousCheckpoints(source, verify: false).WhyNoPrevious);

            // The VM was last backed up into another repository: its checkpoints are that repository's.
            using (var other = new RepositoryFixture())
            {
                new BackupEngine(other.Repository) { HostCheckpointFolder = HostCheckpoints }.Run(source, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions());
                AssertNoBase(source, ChangeTrackingRecord.Reasons.HostRecordMismatch, $"restore point {other.Repository.ListRestorePoints().Single().Id} of the repository '{other.Repository.Location}'");
            }

            // The point the record names was pruned.
            RestorePoint second = Run(new List<(long, long)>()).RestorePoint;
            _fixture.Repository.Prune(_fixture.Repository.PlanRemoval(new[] { second.Id }, e => throw e), collectGarbage: false, removeStaleLock: false, CancellationToken.None);
            AssertNoBase(source, ChangeTrackingRecord.Reasons.PreviousPointMissing, $"names restore point {second.Id}, which is no longer in the repository");

            // The sides agree on the point but not on the disk's bitmap.
            Run(new List<(long, long)>());
            File.WriteAllText(record, File.ReadAllText(record).Replace("\"bitmap-1\"", "\"bitmap-edited\""));
            AssertNoBase(source, ChangeTrackingRecord.Reasons.HostRecordMismatch, "disagree about disk disk0: the point records the bitmap 'bitmap-1', this host's record 'bitmap-edited'");

            // No record, and a record that is not one.
            File.Delete(record);
            AssertNoBase(source, ChangeTrackingRecord.Reasons.HostRecordMissing, record);
            File.WriteAllText(record, "{\"format\": \"VmQuiesceHostCheckpoints\"");
            AssertNoBase(source, ChangeTrackingRecord.Reasons.HostRecordInvalid, record);
        }

        private void AssertNoBase(TrackingSource source, string reason, string detail)
        {
            ChangeTrackingRequest request = Engine().PreviousCheckpoints(source, verify: false);
            Assert.Empty(request.Previous);
            Assert.Equal(reason, request.NoPreviousReason);
            Assert.Contains(detail, request.WhyNoPrevious, StringComparison.Ordinal);
        }

        [Fact]
        public void The_change_map_is_asked_once_per_gibibyte_window_and_partly_changed_chunks_still_patch_right()
        {
            // 80 chunks: more than the 64 the map was once asked for at a time.
            byte[] content = RepositoryFixture.Random(80 * Chunk, 3);
            var maps = new List<(long Offset, long Length)>();
            var changed = new List<(long, long)>();
            var source = new TrackingSource(this, changed) { Content = content, Maps = maps };
            Engine().Run(source, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions());
            Buffer.BlockCopy(RepositoryFixture.Random(8192, 4), 0, content, 70 * Chunk + 4096, 8192);
            changed.Add((70L * Chunk + 4096, 8192));
            maps.Clear();

            RestorePoint second = Engine().Run(source, new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions()).RestorePoint;

            Assert.Equal(new[] { (0L, 80L * Chunk) }, maps);
            Assert.Equal(ChangeTrackingMode.Incremental, second.Files[0].ChangeTrackingValue!.ModeValue);
            Assert.Equal(8192, second.Files[0].ChangeTrackingValue!.BytesRead);
            Assert.Equal(content, File.ReadAllBytes(Restore(second)));
        }

        [Fact]
        public void A_map_with_a_gap_is_refused()
        {
            var error = Assert.Throws<VmQuiesceException>(() => Run(new List<(long, long)>(), gap: true));
            Assert.Equal("ChangeTrackingMapInvalid", error.ErrorId);
            Assert.Empty(_fixture.Repository.ListRestorePoints());
        }

        [Fact]
        public void The_manifest_keeps_the_tracking_record_and_layout_and_refuses_bad_ones()
        {
            RestorePoint point = Run(new List<(long, long)>(), layout: new DiskImageLayout("qcow2", 65536, "1.1")).RestorePoint;
            RestorePointFile read = _fixture.Repository.GetRestorePoint(point.Id).Files[0];
            Assert.Equal("qcow2", read.RestoreAsValue!.Format);
            Assert.Equal(65536, read.RestoreAsValue.ClusterSize);
            Assert.Equal(ChangeTrackingRecord.Reasons.NoCheckpoint, read.ChangeTrackingValue!.Reason);
            Assert.Equal("bitmap-1", read.ChangeTrackingValue.Bitmap);

            Assert.Throws<JsonFormatException>(() => DiskImageLayout.FromJson(new JsonObject().With("format", "qcow2").With("clusterSize", 1000L)));
            Assert.Throws<JsonFormatException>(() => DiskImageLayout.FromJson(new JsonObject().With("format", "vmdk")));
            Assert.Throws<JsonFormatException>(() => ChangeTrackingRecord.FromJson(read.ChangeTrackingValue.ToJson().With("mode", "Partial")));
            Assert.Throws<JsonFormatException>(() => ChangeTrackingRecord.FromJson(read.ChangeTrackingValue.ToJson().With("virtualSize", -1L)));
        }

        private string HostCheckpoints => Path.Combine(_fixture.Root, "host-checkpoints");

        private BackupEngine Engine() => new BackupEngine(_repository) { HostCheckpointFolder = HostCheckpoints };

        /// <summary>Makes the repository the test backs up into an encrypted one of the fixture's when asked; the fixture's plain one stays otherwise.</summary>
        private void UseRepository(bool encrypted)
        {
            if (encrypted)
            {
                _repository = _fixture.NewEncrypted("encrypted");
            }
        }

        /// <summary>Flips the last byte of a stored chunk: its header and length still look whole.</summary>
        private void DamageStoredChunk(string hash)
        {
            string stored = _repository.Chunks.PathOf(hash);
            byte[] bytes = File.ReadAllBytes(stored);
            bytes[bytes.Length - 1] ^= 1;
            File.WriteAllBytes(stored, bytes);
        }

        private void Write(long offset, byte[] data) => Buffer.BlockCopy(data, 0, _disk, (int)offset, data.Length);

        /// <summary>A backup of the test's disk, into the test's repository unless <paramref name="engine"/> backs up into another.</summary>
        private BackupOutcome Run(List<(long Offset, long Length)> changed, bool verify = false, bool gap = false, DiskImageLayout? layout = null, BackupEngine? engine = null) =>
            (engine ?? Engine()).Run(new TrackingSource(this, changed) { Gap = gap, Layout = layout ?? new DiskImageLayout("raw", null, null) },
                new QuiesceOptions(), null, CancellationToken.None, new ChangeTrackingOptions { Verify = verify });

        private string Restore(RestorePoint point)
        {
            var engine = new RestoreEngine(_repository);
            string destination = Path.Combine(_fixture.Root, "restored-" + point.Id);
            return engine.Run(engine.Plan(new RestoreRequest(point) { Destination = destination }, CancellationToken.None), null, CancellationToken.None).Files[0].Path;
        }

        /// <summary>A source whose one disk is the test's byte array; its map marks the ranges the test says changed.</summary>
        private sealed class TrackingSource : IBackupSource, IChangeTrackingSource
        {
            private readonly TrackedCopyTests _test;
            private readonly List<(long Offset, long Length)> _changed;

            public TrackingSource(TrackedCopyTests test, List<(long, long)> changed)
            {
                _test = test;
                _changed = changed;
            }

            public bool Gap { get; init; }

            public DiskImageLayout Layout { get; init; } = new DiskImageLayout("raw", null, null);

            /// <summary>The disk's content (the test's 16 chunks when null); the content is taken when the view opens.</summary>
            public byte[]? Content { get; init; }

            /// <summary>Where each map asked of the disk is listed, when set.</summary>
            public List<(long Offset, long Length)>? Maps { get; init; }

            public string Kind => "Fake";

            public string VmName => "vm";

            public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();

            public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => throw new NotSupportedException();

            /// <summary>Thrown as the view opens, before the source looks at the repository's answer, when set.</summary>
            public Exception? FailBeforeLooking { get; init; }

            /// <summary>The repository's answer as the engine handed it over.</summary>
            public Task<ChangeTrackingRequest>? Received { get; private set; }

            public IConsistentView OpenTrackedView(QuiesceOptions options, Task<ChangeTrackingRequest> pending, CancellationToken cancel)
            {
                Received = pending;
                if (FailBeforeLooking != null)
                {
                    throw FailBeforeLooking;
                }

                ChangeTrackingRequest request = pending.GetAwaiter().GetResult();
                PreviousDisk? previous = request.Previous.FirstOrDefault();
                var disk = new MemoryDisk(Content ?? _test._disk, previous, _changed, request.Verify, Gap) { Maps = Maps };
                return new StableFilesView(new[] { new ViewFile("disk0.qcow2", "memory", "/vm/disk0.qcow2") { Format = "raw", Tracked = disk, RestoreAs = Layout } });
            }
        }

        private sealed class MemoryDisk : TrackedDisk
        {
            private readonly byte[] _content;
            private readonly List<(long Offset, long Length)> _changed;
            private readonly bool _gap;

            public MemoryDisk(byte[] content, PreviousDisk? previous, List<(long, long)> changed, bool verify, bool gap)
            {
                _content = content.ToArray();
                Base = previous;
                _changed = changed;
                Verify = verify && previous != null;
                _gap = gap;
                Record = new ChangeTrackingRecord("disk0", "/vm/disk0.qcow2", content.Length, "bitmap-" + (previous == null ? 1 : 2), true)
                {
                    ModeValue = previous == null ? ChangeTrackingMode.Full : ChangeTrackingMode.Incremental,
                    Reason = previous == null ? ChangeTrackingRecord.Reasons.NoCheckpoint : null,
                    BasePoint = previous?.PointId,
                };
            }

            public override long Size => _content.Length;

            public override ChangeTrackingRecord Record { get; }

            public override PreviousDisk? Base { get; }

            public override bool Verify { get; }

            /// <summary>4 KiB blocks, each changed or not (always, without a base) and zero or not.</summary>
            public List<(long Offset, long Length)>? Maps { get; init; }

            public override IReadOnlyList<DiskRegion> Map(long offset, long length, CancellationToken cancel)
            {
                if (Maps != null)
                {
                    lock (Maps)
                    {
                        Maps.Add((offset, length));
                    }
                }

                var regions = new List<DiskRegion>();
                for (long at = offset; at < offset + length; at += 4096)
                {
                    bool changed = Base == null || _changed.Any(c => c.Offset < at + 4096 && at < c.Offset + c.Length);
                    bool zero = _content.Skip((int)at).Take(4096).All(b => b == 0);
                    if (!(_gap && at == offset + 4096))
                    {
                        regions.Add(new DiskRegion(at, Math.Min(4096, offset + length - at), changed, zero));
                    }
                }

                return regions;
            }

            protected override Task ReadCoreAsync(long offset, byte[] buffer, int bufferOffset, int count, CancellationToken cancel)
            {
                Buffer.BlockCopy(_content, (int)offset, buffer, bufferOffset, count);
                return Task.CompletedTask;
            }
        }
    }
}
