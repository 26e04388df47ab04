using VmQuiesce.Core.Sources.VMware;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>
    /// The decisions of the Windows listing of a VM folder (each entry opened without following reparse points, and held),
    /// which run on any platform; the opening itself needs Windows.
    /// </summary>
    public sealed class WindowsHeldFilesTests
    {
        private const uint Archive = 0x20;
        private const uint Directory = 0x10;
        private const uint ReparsePoint = 0x400;

        [Theory]
        [InlineData(Archive, false, null)]
        [InlineData(Directory, true, null)]
        [InlineData(Archive | ReparsePoint, false, "a link")] // a file symbolic link, opened itself
        [InlineData(Directory | ReparsePoint, true, "a link")] // a junction, a mount point or a folder symbolic link
        [InlineData(Directory | ReparsePoint, false, "a link")]
        [InlineData(Directory, false, "a folder now, where a file was listed")]
        [InlineData(Archive, true, "a file now, where a folder was listed")]
        public void An_entry_opened_without_following_reparse_points_is_taken_only_as_the_regular_file_or_real_folder_listed(uint attributes, bool listedAsFolder, string? refused)
        {
            Assert.Equal(refused, VmwareVmFolder.WhyNotAsListed(attributes, listedAsFolder));
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
    }
}
