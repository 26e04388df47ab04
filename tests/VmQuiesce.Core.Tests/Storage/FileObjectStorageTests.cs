using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>The storage contract on a local folder, plus what only a folder has: temp names and links.</summary>
    public sealed class FileObjectStorageTests : ObjectStorageContract, IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-storage-" + Guid.NewGuid().ToString("N"));

        public void Dispose()
        {
            if (Directory.Exists(_root))
            {
                Directory.Delete(_root, recursive: true);
            }
        }

        protected override IObjectStorage NewStorage() => new FileObjectStorage(Path.Combine(_root, Guid.NewGuid().ToString("N")));

        [Fact]
        public void Creates_reads_lists_and_deletes() => CreatesReadsListsAndDeletes();

        [Fact]
        public void Create_if_absent_never_replaces() => CreateIfAbsentNeverReplaces();

        [Fact]
        public void Of_concurrent_creates_exactly_one_wins() => OfConcurrentCreatesExactlyOneWins();

        [Fact]
        public void Replace_swaps_the_whole_object() => ReplaceSwapsTheWholeObject();

        [Fact]
        public void Read_is_bounded_by_the_buffer() => ReadIsBoundedByTheBuffer();

        [Fact]
        public void An_empty_object_reads_as_empty() => AnEmptyObjectReadsAsEmpty();

        [Fact]
        public void Keys_that_climb_out_are_refused() => KeysThatClimbOutAreRefused();

        [Fact]
        public void Lists_only_under_the_prefix() => ListsOnlyUnderThePrefix();

        [LinuxFact]
        public void An_object_that_is_a_link_is_not_read_through()
        {
            using var storage = new FileObjectStorage(Path.Combine(_root, "links"));
            storage.CreateIfAbsent("points/a.json", Parts("{}"));
            string secret = Path.Combine(_root, "secret.txt");
            File.WriteAllText(secret, "not for the repository");
            File.CreateSymbolicLink(storage.PathOf("points/b.json"), secret);

            Assert.Throws<InvalidDataException>(() => storage.Read("points/b.json", new byte[1024]));
            Assert.Equal(new[] { "points/a.json" }, storage.List("points/").Select(item => item.Key));
        }

        [Fact]
        public void Temp_files_of_a_writer_that_died_are_not_objects()
        {
            using var storage = new FileObjectStorage(Path.Combine(_root, "temp"));
            storage.CreateIfAbsent("points/a.json", Parts("{}"));
            File.WriteAllText(storage.PathOf("points/a.json").Replace("a.json", FileObjectStorage.TempPrefix + "b.json.123"), "half");

            Assert.Equal(new[] { "points/a.json" }, storage.List("points/").Select(item => item.Key));
        }
    }
}
