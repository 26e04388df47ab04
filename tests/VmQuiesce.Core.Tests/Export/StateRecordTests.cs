using System;
using System.Collections.Generic;
using System.IO;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Export;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Export
{
    /// <summary>
    /// The three kinds of state record this host keeps (a mount's, an instant restore's, a VM's checkpoints) are
    /// written and read back the same way: a file of this user only, never through a link, never of unbounded size.
    /// Mount and instant-restore records that are not that are passed over; a checkpoint record says why it cannot be used.
    /// </summary>
    public sealed class StateRecordTests : IDisposable
    {
        private static readonly string[] Kinds = { "mount", "instant restore", "checkpoint" };

        private readonly TempFolder _folder = new TempFolder();

        public void Dispose() => _folder.Dispose();

        private string RecordFolder => _folder.File("records");

        /// <summary>Saves a valid record of <paramref name="kind"/> the way the product does, into <see cref="RecordFolder"/>; returns its file.</summary>
        private string Save(string kind)
        {
            switch (kind)
            {
                case "mount":
                    RecordFile.Save(RecordFolder, "mount-1", new MountRecord("mount-1", "/mnt/point", "web01", "point-1", 4242).ToJson());
                    return RecordFile.PathOf(RecordFolder, "mount-1");
                case "instant restore":
                    RecordFile.Save(RecordFolder, "restore-1", new InstantRestoreRecord("restore-1", "web01", "point-1", "/repo", "/vms/web01", new[] { "/vms/web01/disk0.qcow2" }).ToJson());
                    return RecordFile.PathOf(RecordFolder, "restore-1");
                default:
                    new HostCheckpointRecord("Fake", "vm", "/repo", "point-1", new List<ChangeTrackingRecord> { new ChangeTrackingRecord("disk0", "/vm/disk0.qcow2", 4096, "bitmap-1", true) }).Save(RecordFolder);
                    return HostCheckpointRecord.PathOf(RecordFolder, "Fake", "vm");
            }
        }

        /// <summary>Null when the record in <paramref name="file"/> is read back; otherwise how it was refused.</summary>
        private string? Refusal(string kind, string file)
        {
            switch (kind)
            {
                case "mount":
                    return MountRecord.TryLoad(file) == null ? "passed over" : null;
                case "instant restore":
                    return InstantRestoreRecord.TryLoad(file) == null ? "passed over" : null;
                default:
                    try
                    {
                        return HostCheckpointRecord.Load(RecordFolder, "Fake", "vm") == null ? "missing" : null;
                    }
                    catch (InvalidDataException e)
                    {
                        return e.Message;
                    }
            }
        }

        private void AssertRefused(string kind, string file, string because)
        {
            string? refusal = Refusal(kind, file);
            Assert.True(refusal != null, $"the {kind} record was read back, but it should be refused ({because})");
            if (kind == "checkpoint")
            {
                Assert.Contains(because, refusal, StringComparison.Ordinal);
            }
        }

        [LinuxFact]
        public void Each_kind_of_record_is_written_for_its_owner_alone_and_read_back()
        {
            foreach (string kind in Kinds)
            {
                string file = Save(kind);

                Assert.True(Refusal(kind, file) == null, $"the {kind} record was not read back");
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(RecordFolder));
            }
        }

        [LinuxFact]
        public void A_link_in_a_records_place_is_never_followed_when_read_and_is_replaced_when_written()
        {
            foreach (string kind in Kinds)
            {
                string file = Save(kind);
                string elsewhere = _folder.File(Path.GetFileName(file));
                File.Move(file, elsewhere);
                Assert.Equal(0, HostCommand.Run("/bin/ln", new[] { "-s", elsewhere, file }).ExitCode);

                AssertRefused(kind, file, "a symbolic link");

                string planted = File.ReadAllText(elsewhere);
                Save(kind);
                Assert.Null(UnixFiles.ReadLink(file));
                Assert.Equal(planted, File.ReadAllText(elsewhere));
            }
        }

        [LinuxRootFact]
        public void A_record_another_user_owns_is_not_read()
        {
            foreach (string kind in Kinds)
            {
                string file = Save(kind);
                Assert.Equal(0, HostCommand.Run("/bin/chown", new[] { "nobody", file }).ExitCode);

                AssertRefused(kind, file, "owned by user");
            }
        }

        [LinuxFact]
        public void A_record_past_the_size_bound_is_not_read_even_when_it_is_valid_json()
        {
            foreach (string kind in Kinds)
            {
                string file = Save(kind);
                File.AppendAllText(file, new string(' ', 1024 * 1024));

                AssertRefused(kind, file, "bytes long");
            }
        }
    }
}
