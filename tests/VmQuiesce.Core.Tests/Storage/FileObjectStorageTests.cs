using System;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.Platform;
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

        /// <summary>A symbolic link to a folder inside the storage is not gone into: what it leads to is not the storage's.</summary>
        [UnixFact]
        public void A_listing_does_not_go_into_a_folder_that_is_a_symbolic_link()
        {
            using var storage = new FileObjectStorage(Path.Combine(_root, "folderlink"));
            storage.CreateIfAbsent("keys/a.json", Parts("{}"));
            string elsewhere = Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            File.WriteAllText(Path.Combine(elsewhere, "b.json"), "{}");
            // symlink(2) makes the same link to a folder as to a file (File: .NET Framework has no Directory.CreateSymbolicLink).
            File.CreateSymbolicLink(Path.Combine(Path.GetDirectoryName(storage.PathOf("keys/a.json"))!, "linked"), elsewhere);

            Assert.Equal(new[] { "keys/a.json" }, storage.List("keys/").Select(item => item.Key));
            Assert.Equal(new[] { "keys/a.json" }, storage.List(string.Empty).Select(item => item.Key));
            Assert.Empty(storage.List("keys/linked/"));
        }

        /// <summary>
        /// As on Windows (tags in memory): a folder inside the storage that is a junction, symbolic link or other name surrogate
        /// is not gone into; one kept by a filter (deduplicated, OneDrive) is, as any folder.
        /// </summary>
        [Theory]
        [InlineData(0xA0000003u, false)] // IO_REPARSE_TAG_MOUNT_POINT: a junction
        [InlineData(0xA000000Cu, false)] // IO_REPARSE_TAG_SYMLINK
        [InlineData(0xA000001Du, false)] // IO_REPARSE_TAG_LX_SYMLINK
        [InlineData(0x80000013u, true)] // IO_REPARSE_TAG_DEDUP
        [InlineData(0x9000001Au, true)] // IO_REPARSE_TAG_CLOUD
        public void A_listing_goes_into_a_reparse_point_folder_only_when_it_keeps_its_name(uint tag, bool listed)
        {
            var tags = new FolderHandlesInMemory();
            using var storage = new FileObjectStorage(Path.Combine(_root, "tagged"), new WindowsTaggedFileOps(tags));
            storage.CreateIfAbsent("keys/a.json", Parts("{}"));
            storage.CreateIfAbsent("keys/sub/b.json", Parts("{}"));
            tags.ReparsePoint(Path.GetDirectoryName(storage.PathOf("keys/sub/b.json"))!, tag);

            string[] expected = listed ? new[] { "keys/a.json", "keys/sub/b.json" } : new[] { "keys/a.json" };
            Assert.Equal(expected, storage.List("keys/").Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));
            Assert.Equal(expected, storage.List(string.Empty).Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));
            Assert.Equal(listed ? new[] { "keys/sub/b.json" } : new string[0], storage.List("keys/sub/").Select(item => item.Key));
        }

        /// <summary>Runs in the GitHub Actions Windows job: a real junction inside the storage is not gone into.</summary>
        [WindowsFact]
        public void On_Windows_a_listing_does_not_go_into_a_junction()
        {
            using var storage = new FileObjectStorage(Path.Combine(_root, "junction"));
            storage.CreateIfAbsent("keys/a.json", Parts("{}"));
            string elsewhere = Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            File.WriteAllText(Path.Combine(elsewhere, "b.json"), "{}");
            string junction = Path.Combine(Path.GetDirectoryName(storage.PathOf("keys/a.json"))!, "linked");
            Logon.VmFolderLinkTests.MakeJunction(junction, elsewhere);

            Assert.Equal(new[] { "keys/a.json" }, storage.List("keys/").Select(item => item.Key));
            Directory.Delete(junction);
        }

        /// <summary>As on Windows (tags in memory): a deduplicated or OneDrive object, in a folder that is one too, is an object as any other.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void Objects_kept_by_a_filter_are_listed_and_read(uint tag)
        {
            var tags = new FolderHandlesInMemory();
            using var storage = new FileObjectStorage(Path.Combine(_root, "dedup"), new WindowsTaggedFileOps(tags));
            storage.CreateIfAbsent("points/a.json", Parts("{}"));
            storage.CreateIfAbsent("points/b.json", Parts("{\"b\": 1}"));
            tags.ReparsePoint(storage.PathOf("points/b.json"), tag);
            tags.ReparsePoint(Path.GetDirectoryName(storage.PathOf("points/b.json"))!, tag);

            Assert.Equal(new[] { "points/a.json", "points/b.json" }, storage.List("points/").Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));
            Assert.Equal("{\"b\": 1}", System.Text.Encoding.UTF8.GetString(storage.ReadAll("points/b.json", 1024)));
            Assert.Contains(storage.PathOf("points/b.json"), tags.Read);
        }

        /// <summary>As on Windows (tags in memory): a symbolic link, junction or other name surrogate is no object, and is not read.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void An_object_that_redirects_the_name_is_neither_listed_nor_read(uint tag)
        {
            var tags = new FolderHandlesInMemory();
            using var storage = new FileObjectStorage(Path.Combine(_root, "surrogate"), new WindowsTaggedFileOps(tags));
            storage.CreateIfAbsent("points/a.json", Parts("{}"));
            storage.CreateIfAbsent("points/b.json", Parts("{}"));
            tags.ReparsePoint(storage.PathOf("points/b.json"), tag);

            Assert.Equal(new[] { "points/a.json" }, storage.List("points/").Select(item => item.Key));
            InvalidDataException refused = Assert.Throws<InvalidDataException>(() => storage.Read("points/b.json", new byte[1024]));
            Assert.Contains($"(reparse tag 0x{tag:X8})", refused.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(storage.PathOf("points/b.json"), tags.Read);
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
