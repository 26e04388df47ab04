using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Tests.Logon;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>
    /// The decisions of the Windows listing of a VM folder (each entry opened without following reparse points, and held),
    /// which run on any platform; the opening itself needs Windows.
    /// </summary>
    public sealed class WindowsHeldFilesTests : IDisposable
    {
        private readonly string _root = Path.Combine(Path.GetTempPath(), "vmq-heldfiles-" + Guid.NewGuid().ToString("N"));

        public void Dispose()
        {
            if (System.IO.Directory.Exists(_root))
            {
                System.IO.Directory.Delete(_root, recursive: true);
            }
        }

        private const uint Archive = 0x20;
        private const uint Directory = 0x10;
        private const uint ReparsePoint = 0x400;

        [Theory]
        [InlineData(Archive, 0u, false, null)]
        [InlineData(Directory, 0u, true, null)]
        [InlineData(Archive | ReparsePoint, 0xA000000Cu, false, "a symbolic link (reparse tag 0xA000000C)")] // a file symbolic link, opened itself
        [InlineData(Directory | ReparsePoint, 0xA0000003u, true, "a junction or volume mount point (reparse tag 0xA0000003)")]
        [InlineData(Directory | ReparsePoint, 0xA000000Cu, true, "a symbolic link (reparse tag 0xA000000C)")]
        [InlineData(Directory | ReparsePoint, 0xA0000003u, false, "a junction or volume mount point (reparse tag 0xA0000003)")]
        [InlineData(Archive | ReparsePoint, 0xA000001Du, false, "a WSL symbolic link (reparse tag 0xA000001D)")]
        [InlineData(Directory, 0u, false, "a folder now, where a file was listed")]
        [InlineData(Archive, 0u, true, "a file now, where a folder was listed")]
        public void An_entry_opened_without_following_reparse_points_is_taken_only_as_the_regular_file_or_real_folder_listed(uint attributes, uint reparseTag, bool listedAsFolder, string? refused)
        {
            Assert.Equal(refused, VmwareVmFolder.WhyNotAsListed(attributes, reparseTag, listedAsFolder));
        }

        /// <summary>A VM folder on a deduplicated volume, in OneDrive or compressed by WOF: its files and folders keep their names, and are taken.</summary>
        [Theory]
        [InlineData(Archive | ReparsePoint, 0x80000013u, false)] // IO_REPARSE_TAG_DEDUP
        [InlineData(Archive | ReparsePoint, 0x80000017u, false)] // IO_REPARSE_TAG_WOF
        [InlineData(Archive | ReparsePoint, 0x9000001Au, false)] // IO_REPARSE_TAG_CLOUD
        [InlineData(Directory | ReparsePoint, 0x9000001Au, true)]
        [InlineData(Directory | ReparsePoint, 0x80000021u, true)] // IO_REPARSE_TAG_ONEDRIVE
        public void A_reparse_point_that_keeps_its_name_is_taken_as_the_file_or_folder_listed(uint attributes, uint reparseTag, bool listedAsFolder)
        {
            Assert.Null(VmwareVmFolder.WhyNotAsListed(attributes, reparseTag, listedAsFolder));
        }

        [Theory]
        [InlineData(@"C:\VMs\db\db.vmx", false, false)]
        [InlineData(@"C:\VMs\db\db.nvram", false, false)]
        [InlineData(@"C:\VMs\db\db.vmsd", false, false)]
        [InlineData(@"C:\VMs\db\db.vmdk", false, true)]
        [InlineData(@"C:\VMs\db\db-Snapshot1.vmsn", false, true)]
        [InlineData(@"C:\VMs\db\disks", true, true)]
        public void Folders_and_disk_side_files_are_held_so_nobody_can_rename_them_while_configuration_VMware_rewrites_is_not(string path, bool isFolder, bool unshared)
        {
            Assert.Equal(unshared, VmwareVmFolder.IsHeldUnshared(path, isFolder));
        }

        /// <summary>
        /// Runs in the GitHub Actions Windows job: a VM folder whose configuration and disk were compressed by the Windows Overlay
        /// Filter (compact /EXE: reparse points that keep their names, as deduplicated files are) is listed, and the configuration
        /// copied in full through its filter, not as the stub its held handle reads; a junction in it is still left out.
        /// </summary>
        [WindowsFact]
        public void On_Windows_a_compressed_VM_folder_is_listed_and_its_configuration_copied_in_full_while_a_junction_is_left_out()
        {
            string folder = System.IO.Directory.CreateDirectory(Path.Combine(_root, "vm")).FullName;
            string vmx = Path.Combine(folder, "vm.vmx");
            string text = string.Concat(Enumerable.Repeat("displayName = \"a VM on a compressed volume\"\n", 20_000));
            File.WriteAllText(vmx, text);
            File.WriteAllText(Path.Combine(folder, "vm.vmdk"), text);
            RegularFileByHandleTests.CompressWithTheOverlayFilter(vmx);
            RegularFileByHandleTests.CompressWithTheOverlayFilter(Path.Combine(folder, "vm.vmdk"));
            string elsewhere = System.IO.Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;
            File.WriteAllText(Path.Combine(elsewhere, "secret.txt"), "not the VM's");
            string junction = Path.Combine(folder, "linked");
            VmFolderLinkTests.MakeJunction(junction, elsewhere);
            var warnings = new List<string>();

            using (VmFolderFiles files = VmwareVmFolder.OpenFrozenFiles("vm", vmx, Array.Empty<string>(), new OperationHost(warn: warnings.Add)))
            {
                Assert.Equal(new[] { "vm.vmdk", "vm.vmx" }, files.Files.Select(file => file.Relative));
                string copy = Path.Combine(_root, "vm.vmx.copy");
                VmFolderFiles.CopySmall(files.Files.Single(file => file.Relative == "vm.vmx"), copy, 4L * 1024 * 1024);
                Assert.Equal(text, File.ReadAllText(copy));
            }

            Assert.Contains("'linked' is a junction or volume mount point (reparse tag 0xA0000003)", Assert.Single(warnings), StringComparison.Ordinal);
            System.IO.Directory.Delete(junction);
        }
    }
}
