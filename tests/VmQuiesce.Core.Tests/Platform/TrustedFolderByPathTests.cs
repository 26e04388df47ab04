using System;
using System.IO;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Logon;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>
    /// Folders for new files reached by path, as on Windows and macOS: real folders in a temporary folder, their Windows
    /// reparse tags told by the in-memory handle layer (runs on any OS), and macOS's links as they are on disk.
    /// </summary>
    public sealed class TrustedFolderByPathTests : IDisposable
    {
        private readonly string _root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-trustedpath-" + Guid.NewGuid().ToString("N"))).FullName;
        private readonly FolderHandlesInMemory _tags = new FolderHandlesInMemory();

        public void Dispose() => Directory.Delete(_root, recursive: true);

        private string Existing(string name) => Directory.CreateDirectory(Path.Combine(_root, name)).FullName;

        /// <summary>Junctions and volume mount points, symbolic links, WSL and container links, and a third party's name surrogate.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatRedirectsTheNameOnTheWayOrAtTheFolderIsRefusedAndNothingIsMadeThrough(uint tag)
        {
            string onTheWay = Existing("datastore");
            string below = Path.Combine(onTheWay, "logs", "job");
            _tags.ReparsePoint(onTheWay, tag);

            FolderTrustException refused = Assert.Throws<FolderTrustException>(() => TrustedFolder.OpenByPath(below, create: true, _tags));
            Assert.Equal(FolderProblem.Link, refused.Problem);
            Assert.Equal(onTheWay, refused.Folder);
            Assert.Contains($"'{onTheWay}' is {ReparsePoints.Describe(tag)}", refused.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(onTheWay, "logs")));

            Assert.Equal(FolderProblem.Link, Assert.Throws<FolderTrustException>(() => TrustedFolder.OpenNoFollowByPath(onTheWay, _tags)).Problem);
            using TrustedFolder parent = TrustedFolder.OpenByPath(_root, create: false, _tags);
            Assert.Equal(FolderProblem.Link, Assert.Throws<FolderTrustException>(() => parent.CreateFolder("datastore")).Problem);
            Assert.Empty(_tags.OpenNow);
        }

        /// <summary>
        /// OneDrive and other cloud placeholders, deduplication, container layers, projected and synced folders keep their
        /// name: a log folder, a key export, a new repository or a restore's destination in or under one is made and written.
        /// </summary>
        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatKeepsTheNameIsWrittenIntoAndThroughAsAnyFolder(uint tag)
        {
            string onTheWay = Existing("OneDrive");
            string below = Path.Combine(onTheWay, "logs", "job");
            _tags.ReparsePoint(onTheWay, tag);

            using (TrustedFolder opened = TrustedFolder.OpenByPath(below, create: true, _tags))
            {
                Assert.True(Directory.Exists(below));
                using (CreatedFile file = opened.CreateNew("run.log", direct: false))
                {
                    file.Stream.WriteByte(1);
                }

                _tags.ReparsePoint(opened.Combine("run.log"), tag);
                using (FileStream? again = opened.OpenExistingForWrite("run.log"))
                {
                    Assert.NotNull(again);
                }
            }

            _tags.ReparsePoint(Path.Combine(onTheWay, "keys"), tag);
            using (TrustedFolder tagged = TrustedFolder.OpenByPath(onTheWay, create: false, _tags))
            {
                tagged.CreateFolder("keys").Dispose();
            }

            TrustedFolder.OpenNoFollowByPath(onTheWay, _tags).Dispose();
            Assert.Empty(_tags.OpenNow);
        }

        /// <summary>macOS reads no reparse tags: every symbolic link on the way is refused, as before.</summary>
        [UnixFact]
        public void WithoutTagsEverySymbolicLinkIsRefused()
        {
            string link = Path.Combine(_root, "link");
            File.CreateSymbolicLink(link, Existing("target"));

            FolderTrustException refused = Assert.Throws<FolderTrustException>(() => TrustedFolder.OpenByPath(Path.Combine(link, "logs"), create: true, tags: null));
            Assert.Equal(FolderProblem.Link, refused.Problem);
            Assert.Contains($"'{link}' is a symbolic link", refused.Message, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(_root, "target", "logs")));
            Assert.Equal(FolderProblem.Link, Assert.Throws<FolderTrustException>(() => TrustedFolder.OpenNoFollowByPath(link, tags: null)).Problem);
        }

        /// <summary>Runs in the GitHub Actions Windows job: the real handle layer reads a junction's tag on the way to a folder for new files, and nothing is made through it.</summary>
        [WindowsFact]
        public void OnWindowsAJunctionOnTheWayToAFolderForNewFilesIsRefused()
        {
            string target = Existing("target");
            string junction = Path.Combine(_root, "junction");
            VmFolderLinkTests.MakeJunction(junction, target);

            FolderTrustException refused = Assert.Throws<FolderTrustException>(() => TrustedFolder.OpenForNewFiles(Path.Combine(junction, "logs")));
            Assert.Equal(FolderProblem.Link, refused.Problem);
            Assert.Contains("(reparse tag 0xA0000003)", refused.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.EnumerateFileSystemEntries(target));
            Directory.Delete(junction);
        }
    }
}
