using System;
using System.Diagnostics;
using System.IO;
using System.Security.AccessControl;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// A VM folder that is a link (a symbolic link, a junction) is refused by both backends before anything is read or
    /// changed: a grant through it would land, with inheritance, on whatever folder it leads to.
    /// </summary>
    public sealed class VmFolderLinkTests : IDisposable
    {
        private readonly string _root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-folderlink-" + Guid.NewGuid().ToString("N"))).FullName;

        public void Dispose() => Directory.Delete(_root, recursive: true);

        private string Elsewhere => Directory.CreateDirectory(Path.Combine(_root, "elsewhere")).FullName;

        [LinuxRootFact]
        public void TheSystemdBackendRefusesAVmFolderThatIsAnotherUsersSymbolicLinkAndFollowsRootsToItsRealPath()
        {
            string link = Path.Combine(_root, "vm");
            File.CreateSymbolicLink(link, Elsewhere);
            string rootsLink = Path.Combine(_root, "roots");
            File.CreateSymbolicLink(rootsLink, Elsewhere);
            TestGuest.HostCommand.RunChecked("chown", new[] { "-h", "65534:65534", link });
            var backend = new SystemdLogonBackend(_root, systemdRunning: false, systemdLoadsUnitDirectory: false, HostTools.ForThisHost);
            LogonAccount root = backend.ResolveAccount("root");

            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(root, link)).ErrorId);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(root, link + "/")).ErrorId);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.GrantFolderAccess(root, link)).ErrorId);
            Assert.True(backend.CheckFolderAccess(root, Elsewhere + "/").CanModify);
            Assert.True(backend.CheckFolderAccess(root, rootsLink).CanModify);
            Assert.Equal(Elsewhere, VmFolders.Existing(rootsLink));
        }

        /// <summary>A link above the VM folder leads the grant to another tree just as well as the folder itself being one.</summary>
        [LinuxRootFact]
        public void TheSystemdBackendRefusesAVmFolderUnderAnotherUsersSymbolicLinkAndFollowsRootsToItsRealPath()
        {
            string target = Directory.CreateDirectory(Path.Combine(Elsewhere, "vm")).FullName;
            string othersLink = Path.Combine(_root, "datastore");
            File.CreateSymbolicLink(othersLink, Elsewhere);
            TestGuest.HostCommand.RunChecked("chown", new[] { "-h", "65534:65534", othersLink });
            string rootsLink = Path.Combine(_root, "roots-datastore");
            File.CreateSymbolicLink(rootsLink, Elsewhere);
            var backend = new SystemdLogonBackend(_root, systemdRunning: false, systemdLoadsUnitDirectory: false, HostTools.ForThisHost);
            LogonAccount root = backend.ResolveAccount("root");

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() => backend.GrantFolderAccess(root, Path.Combine(othersLink, "vm")));
            Assert.Equal("FolderIsLink", refused.ErrorId);
            Assert.Contains($"'{othersLink}'", refused.Message, StringComparison.Ordinal);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(root, Path.Combine(othersLink, "vm") + "/")).ErrorId);
            Assert.Equal(target, VmFolders.Existing(Path.Combine(rootsLink, "vm")));

            // A link of root's whose target passes through another user's link is refused too.
            string chained = Path.Combine(_root, "chained");
            File.CreateSymbolicLink(chained, othersLink);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => VmFolders.Existing(Path.Combine(chained, "vm"))).ErrorId);
        }

        /// <summary>Runs in the GitHub Actions Windows job: a junction needs no privilege to make, so anyone who can write the VM folder's parent can plant one.</summary>
        [WindowsFact]
        public void TheWindowsBackendRefusesAVmFolderThatIsAJunctionAndLeavesItsTargetAlone()
        {
            string target = Elsewhere;
            string junction = Path.Combine(_root, "vm");
            MakeJunction(junction, target);

            Assert.True((File.GetAttributes(junction) & FileAttributes.ReparsePoint) != 0);
            var backend = new WindowsLogonBackend();
            LogonAccount system = backend.ResolveAccount("LocalSystem");
            string before = new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access);

            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(system, junction)).ErrorId);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.GrantFolderAccess(system, junction + "\\")).ErrorId);
            Assert.Equal(before, new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access));
            Directory.Delete(junction);
        }

        /// <summary>Runs in the GitHub Actions Windows job: a junction above the VM folder is refused, and the tree it leads to keeps its permissions.</summary>
        [WindowsFact]
        public void TheWindowsBackendRefusesAVmFolderUnderAJunction()
        {
            string target = Directory.CreateDirectory(Path.Combine(Elsewhere, "vm")).FullName;
            string junction = Path.Combine(_root, "datastore");
            MakeJunction(junction, Elsewhere);

            var backend = new WindowsLogonBackend();
            LogonAccount system = backend.ResolveAccount("LocalSystem");
            string before = new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access);

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() => backend.GrantFolderAccess(system, Path.Combine(junction, "vm")));
            Assert.Equal("FolderIsLink", refused.ErrorId);
            Assert.Contains($"'{junction}'", refused.Message, StringComparison.Ordinal);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(system, Path.Combine(junction, "vm"))).ErrorId);
            Assert.Equal(before, new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access));
            Directory.Delete(junction);
        }

        /// <summary>
        /// Runs in the GitHub Actions Windows job: what only the real handle layer can show. A junction's own handle gives
        /// IO_REPARSE_TAG_MOUNT_POINT; while a VM folder is held for its DACL, neither it nor a folder above it can be
        /// renamed, so none can be swapped for a junction before the DACL is written.
        /// </summary>
        [WindowsFact]
        public void TheWindowsHandleLayerReadsAJunctionsTagAndKeepsAHeldVmFolderAndTheFoldersAboveItInPlace()
        {
            string datastore = Directory.CreateDirectory(Path.Combine(_root, "datastore")).FullName;
            string vm = Directory.CreateDirectory(Path.Combine(datastore, "vm")).FullName;
            string junction = Path.Combine(_root, "junction");
            MakeJunction(junction, Elsewhere);
            var handles = new WindowsFolderHandles();
            using (IFolderHandle opened = handles.Open(junction, HeldFolder.HoldAccess)!)
            {
                Assert.Equal(FolderHandlesInMemory.ReparsePointAttribute, opened.Attributes & FolderHandlesInMemory.ReparsePointAttribute);
                Assert.Equal(0xA0000003u, opened.ReparseTag);
            }

            Assert.Null(handles.Open(Path.Combine(_root, "missing"), HeldFolder.HoldAccess));
            using (HeldFolder held = HeldFolder.Open(handles, vm, HeldFolder.DaclAccess))
            {
                Assert.Equal(FolderHandlesInMemory.DirectoryAttribute, held.Folder.Attributes & (FolderHandlesInMemory.DirectoryAttribute | FolderHandlesInMemory.ReparsePointAttribute));
                Assert.NotEmpty(held.Folder.ReadDacl());
                Assert.False(CanRename(vm));
                Assert.False(CanRename(datastore));
            }

            Assert.True(CanRename(datastore));
            Directory.Delete(junction);
        }

        /// <summary>
        /// Runs in the GitHub Actions Windows job: the real handle layer reads the 128-bit file id (FileIdInfo) of a folder on
        /// the temporary folder's NTFS volume, knows the folder again by it and tells another apart.
        /// </summary>
        [WindowsFact]
        public void TheWindowsHandleLayerKnowsAFolderAgainByItsFileIdAndTellsAnotherApart()
        {
            string one = Directory.CreateDirectory(Path.Combine(_root, "one")).FullName;
            string two = Directory.CreateDirectory(Path.Combine(_root, "two")).FullName;
            var handles = new WindowsFolderHandles();
            string IdOf(string folder)
            {
                using HeldFolder held = HeldFolder.Open(handles, folder, 0);
                Assert.NotNull(held.Folder.ReadFileId());
                return held.FolderId;
            }

            Assert.Equal(IdOf(one), IdOf(one));
            Assert.NotEqual(IdOf(one), IdOf(two));
        }

        /// <summary>Whether the folder can be renamed (and is put back at once).</summary>
        private static bool CanRename(string folder)
        {
            try
            {
                Directory.Move(folder, folder + "-moved");
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return false;
            }

            Directory.Move(folder + "-moved", folder);
            return true;
        }

        /// <summary>A junction needs no privilege to make (mklink /J); both paths are under the temporary folder and hold no quote.</summary>
        internal static void MakeJunction(string junction, string target)
        {
            var mklink = new ProcessStartInfo(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.System), "cmd.exe"), $"/c mklink /J \"{junction}\" \"{target}\"")
            {
                UseShellExecute = false,
            };
            using Process process = Process.Start(mklink)!;
            process.WaitForExit();
            Assert.Equal(0, process.ExitCode);
        }
    }
}
