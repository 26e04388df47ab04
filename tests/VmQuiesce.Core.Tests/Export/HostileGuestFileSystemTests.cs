using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Repository;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// Restore-VmBackupItem out of a real restore point whose guest file system was made hostile on purpose (see
    /// <see cref="CraftedGuestDisk"/>), mounted once for all the tests, each copying into a destination of its own.
    /// </summary>
    public sealed class HostileGuestFileSystemTests : IClassFixture<HostileGuestFileSystemTests.HostileGuest>
    {
        private readonly HostileGuest _guest;

        public HostileGuestFileSystemTests(HostileGuest guest) => _guest = guest;

        /// <summary>The guest's file system, backed up and mounted.</summary>
        public sealed class HostileGuest : IDisposable
        {
            /// <summary>deep: 30 folders of 200-byte names, 6 KB of path, more than a path may have (PATH_MAX, 4096).</summary>
            private const string Script = @"
mkdir names
echo bad > $'names/bad\xff'
echo fffd > $'names/bad\xef\xbf\xbd'
echo nl > $'names/new\nline'
mkfifo $'names/evil\nfifo'
mkdir special
mknod special/mem c 1 1
mknod special/disk b 7 0
printf '#!/bin/sh\necho ran\n' > special/program
chmod 4755 special/program
mkdir sparse
truncate -s 1G sparse/holes
printf data | dd of=sparse/holes bs=1 seek=536870912 conv=notrunc status=none
mkdir damaged
head -c 1M /dev/urandom > damaged/file
mkdir -p links/sub
head -c 8M /dev/urandom > links/a
for i in $(seq 1 50); do ln links/a links/l$i; done
ln links/a links/sub/l51
mkdir deep
(cd deep; n=$(printf 'd%.0s' $(seq 1 200)); for i in $(seq 1 30); do mkdir $n; cd $n; done; echo deep > leaf)
";

            public HostileGuest()
            {
                if (new MountFactAttribute().Skip != null)
                {
                    return;
                }

                Point = CraftedGuestDisk.BackUp(Fixture, Script);
                CraftedGuestDisk.DamageChunkOf(Fixture, Point, "/damaged/file", 512 * 1024);
                Mount = RestorePointMount.Mount(Fixture.Repository, Point, Path.Combine(Fixture.Root, "mnt"), CancellationToken.None);
            }

            internal RepositoryFixture Fixture { get; } = new RepositoryFixture();

            public RestorePoint Point { get; } = null!;

            public RestorePointMount Mount { get; } = null!;

            /// <summary>A new folder to copy into.</summary>
            public string NewDestination() => Path.Combine(Fixture.Root, "out-" + Guid.NewGuid().ToString("N").Substring(0, 8));

            public void Dispose()
            {
                Mount?.Dismount();
                CraftedGuestDisk.RemoveTree(Fixture.Root); // the copies hold names and depths .NET cannot delete
                Fixture.Dispose();
            }
        }

        [MountFact]
        public void The_mount_is_read_only_and_lends_the_guest_no_device_program_or_set_user_id()
        {
            string disk = _guest.Mount.FileSystems.Single().Path;
            string[] fields = File.ReadAllLines("/proc/self/mountinfo").Select(line => line.Split(' ')).Single(line => line[4] == disk);
            string[] options = fields[5].Split(',');

            Assert.Equal(new[] { "nodev", "noexec", "nosuid", "ro" }, options.Intersect(new[] { "ro", "nosuid", "nodev", "noexec" }).OrderBy(o => o, StringComparer.Ordinal));
            Assert.ThrowsAny<UnauthorizedAccessException>(() => File.OpenRead(Path.Combine(disk, "special", "mem")).Dispose()); // /dev/mem, were it a device here
            Assert.Equal(Libc.EACCES, Assert.ThrowsAny<System.ComponentModel.Win32Exception>(() => HostCommand.Run(Path.Combine(disk, "special", "program"), Array.Empty<string>())).NativeErrorCode);

            string destination = _guest.NewDestination();
            RestoredItem special = _guest.Mount.CopyItem("disk0/special", destination, force: false, CancellationToken.None);

            Assert.Equal(new[] { "disk0/special/disk: a block device, never copied out of a guest", "disk0/special/mem: a character device, never copied out of a guest" }, special.Skipped);
            Assert.Equal(Convert.ToUInt32("755", 8), UnixFiles.Stat(Path.Combine(destination, "special", "program")).Mode & 0xFFF);
        }

        [MountFact]
        public void Names_that_are_not_UTF8_come_back_byte_for_byte_and_are_shown_escaped()
        {
            string destination = _guest.NewDestination();

            RestoredItem names = _guest.Mount.CopyItem("disk0/names", destination, force: false, CancellationToken.None);

            // Each name as hex bytes, then the file's content: the name with byte FF and the one with U+FFFD (EF BF BD) are two files.
            Assert.Equal(
                new[] { "626164efbfbd=fffd", "626164ff=bad", "6e65770a6c696e65=nl" },
                Shell("cd \"$1\"/names && for f in *; do [ -f \"$f\" ] && printf '%s=%s\\n' \"$(printf '%s' \"$f\" | od -An -tx1 | tr -d ' \\n')\" \"$(cat -- \"$f\")\"; done", destination));
            Assert.Equal(3, names.Files);
            string fifo = Assert.Single(names.Skipped);
            Assert.Contains("names/evil\\nfifo: a FIFO", fifo, StringComparison.Ordinal);
        }

        [MountFact]
        public void A_tree_deeper_than_a_path_can_name_is_copied_whole()
        {
            string destination = _guest.NewDestination();

            RestoredItem deep = _guest.Mount.CopyItem("disk0/deep", destination, force: false, CancellationToken.None);

            Assert.Equal((1L, Array.Empty<string>()), (deep.Files, deep.Skipped.ToArray()));
            Assert.Equal(new[] { "deep" }, Shell("find \"$1\"/deep -name leaf -execdir cat {} \\;", destination));
            Assert.Equal(new[] { "30" }, Shell("find \"$1\"/deep -mindepth 1 -type d | wc -l", destination));
        }

        [MountFact]
        public void A_file_of_holes_takes_no_more_room_on_the_host_than_in_the_guest()
        {
            string destination = _guest.NewDestination();

            RestoredItem sparse = _guest.Mount.CopyItem("disk0/sparse/holes", destination, force: false, CancellationToken.None);

            string holes = Path.Combine(destination, "holes");
            FileStatus copied = UnixFiles.Stat(holes);
            Assert.Equal((1L << 30, 1L << 30), (copied.Size, sparse.Bytes));
            Assert.True(copied.Allocated <= 64 * 1024, $"{copied.Allocated} bytes allocated for 4 bytes of data");
            using FileStream read = File.OpenRead(holes);
            var bytes = new byte[8];
            read.Position = (512 << 20) - 4;
            Assert.Equal(8, read.Read(bytes, 0, 8));
            Assert.Equal(new byte[] { 0, 0, 0, 0, (byte)'d', (byte)'a', (byte)'t', (byte)'a' }, bytes);
        }

        [MountFact]
        public void A_file_the_point_cannot_read_fails_its_item_and_leaves_what_was_there()
        {
            string destination = _guest.NewDestination();
            Directory.CreateDirectory(Path.Combine(destination, "damaged"));
            File.WriteAllText(Path.Combine(destination, "damaged", "mine"), "before\n");

            VmQuiesceException forced = Assert.Throws<VmQuiesceException>(() => _guest.Mount.CopyItem("disk0/damaged", destination, force: true, CancellationToken.None));
            VmQuiesceException fresh = Assert.Throws<VmQuiesceException>(() => _guest.Mount.CopyItem("disk0/damaged/file", destination, force: false, CancellationToken.None));

            Assert.Equal(("ItemReadFailed", "ItemReadFailed"), (forced.ErrorId, fresh.ErrorId));
            Assert.Contains("'disk0/damaged/file' could not be read", forced.Message, StringComparison.Ordinal);
            // No half copy, no copy in the making: the folder -Force was to replace is as it was.
            Assert.Equal(new[] { "damaged" }, Directory.GetFileSystemEntries(destination).Select(Path.GetFileName));
            Assert.Equal(new[] { "mine" }, Directory.GetFileSystemEntries(Path.Combine(destination, "damaged")).Select(Path.GetFileName));
            Assert.Equal("before\n", File.ReadAllText(Path.Combine(destination, "damaged", "mine")));
        }

        [MountFact]
        public void Hard_links_come_back_as_links_to_one_copy()
        {
            string destination = _guest.NewDestination();

            RestoredItem links = _guest.Mount.CopyItem("disk0/links", destination, force: false, CancellationToken.None);

            // 52 names of one 8 MiB file: 8 MiB on the host, not 416 (65000 names of a large file would fill any disk).
            FileStatus a = UnixFiles.Stat(Path.Combine(destination, "links", "a"));
            Assert.Equal(52u, a.Links);
            Assert.All(Enumerable.Range(1, 50).Select(i => "l" + i).Append("sub/l51"), name => Assert.True(UnixFiles.Stat(Path.Combine(destination, "links", name)).IsSameFile(a), name));
            Assert.Equal((52L, 8L << 20), (links.Files, links.Bytes));
        }

        private static string[] Shell(string script, string argument) =>
            HostCommand.RunChecked("bash", new[] { "-c", script, "_", argument }).StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
