using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// What the Windows backend asks the Service Control Manager to store, through its logon-writer seam, and how it
    /// checks, holds and edits a VM folder, through its handle-layer seam (runs on any OS).
    /// </summary>
    public sealed class WindowsLogonBackendSeamTests
    {
        private readonly RecordingLogonWriter _scm = new RecordingLogonWriter();
        private readonly FolderHandlesInMemory _folders = new FolderHandlesInMemory();

        /// <summary>A VM folder two levels below a folder of the temporary folder; none of it exists on disk.</summary>
        private static readonly string Folder = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "vmq-dacl", "datastore", "vm"));

        private static readonly string Datastore = Path.GetDirectoryName(Folder)!;

        private WindowsLogonBackend Backend => new WindowsLogonBackend(_scm, _folders);

        private static LogonAccount Backup => new LogonAccount(@".\backup", WindowsDaclTests.Account);

        private static ServiceEntry Service(string account) => new ServiceEntry("vmvss", "VMware VSS Writer Service", account, "Automatic", ServiceRunState.Running);

        /// <summary>Every folder from below the root down to the VM folder, worked out apart from the code under test.</summary>
        internal static List<string> FoldersDownTo(string path)
        {
            var folders = new List<string>();
            for (string? folder = path; Path.GetDirectoryName(folder) != null; folder = Path.GetDirectoryName(folder))
            {
                folders.Insert(0, folder!);
            }

            return folders;
        }

        [Theory]
        [InlineData("LocalSystem")]
        [InlineData(@"NT AUTHORITY\LocalService")]
        [InlineData(@"NT AUTHORITY\NetworkService")]
        public void PuttingABuiltInAccountBackClearsTheNewAccountsStoredPassword(string builtIn)
        {
            Backend.RestoreServiceAccount(Service(@".\backup"), new PreviousLogon(builtIn, null));

            // lpPassword "" (not NULL, which keeps the stored secret): the built-in accounts take an empty password.
            Assert.Equal(new[] { $"vmvss|{builtIn}|(empty)" }, _scm.Calls);
        }

        [Fact]
        public void PuttingAUserAccountBackLeavesTheStoredPasswordAsItIs()
        {
            Backend.RestoreServiceAccount(Service(@".\backup"), new PreviousLogon(@".\olduser", null));
            Assert.Equal(new[] { @"vmvss|.\olduser|(unchanged)" }, _scm.Calls);
        }

        [Fact]
        public void SettingAUserAccountStoresItsPasswordAndABuiltInOneAnEmptyOne()
        {
            var password = new SecureString();
            password.AppendChar('p');
            Backend.SetServiceAccount(Service("LocalSystem"), new LogonAccount(@".\backup", "S-1-5-21-1-2-3-1001"), password, null);
            Backend.SetServiceAccount(Service(@".\backup"), new LogonAccount("LocalSystem", "S-1-5-18") { IsBuiltInServiceAccount = true }, null, null);
            Assert.Equal(new[] { @"vmvss|.\backup|(password)", "vmvss|LocalSystem|(empty)" }, _scm.Calls);
        }

        [Fact]
        public void TheFolderGrantIsUndoneExactlyAndTheAccountsEarlierEntryStays()
        {
            _folders.Dacls[Folder] = WindowsDaclTests.Before;

            FolderGrant grant = Backend.GrantFolderAccess(Backup, Folder + Path.DirectorySeparatorChar);
            Assert.True(grant.CanBeUndone);
            Assert.Equal(Folder, grant.Path);
            Assert.NotEqual(WindowsDaclTests.Before, _folders.Dacls[Folder]);

            Backend.RevokeFolderAccess(grant);
            Assert.Equal(WindowsDaclTests.Before, _folders.Dacls[Folder]);
            Assert.Equal(2, _folders.Writes);

            // Removed already (by hand): nothing else is touched.
            Backend.RevokeFolderAccess(grant);
            Assert.Equal(2, _folders.Writes);
        }

        [Fact]
        public void AnEntryTheAccountHeldAlreadyIsNeitherWrittenNorRemoved()
        {
            byte[] held = WindowsDaclTests.Acl((0, 0x03, WindowsDacl.ModifyRights, WindowsDaclTests.Account));
            _folders.Dacls[Folder] = held;

            FolderGrant grant = Backend.GrantFolderAccess(Backup, Folder);
            Assert.False(grant.CanBeUndone);
            Backend.RevokeFolderAccess(grant);
            Assert.Equal(0, _folders.Writes);
            Assert.Equal(held, _folders.Dacls[Folder]);
        }

        [Fact]
        public void AFolderWhoseDaclCannotBeReadOrThatCannotBeOpenedIsAGrantFailureAndARevokeFailure()
        {
            Assert.Equal("FolderAccessGrantFailed", Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, Folder)).ErrorId);
            Assert.Equal("FolderAccessRevokeFailed", Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(new FolderGrant(Folder, Backup.Name, new GrantedEntry(Backup.Identity, Folder)))).ErrorId);

            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            _folders.Unopenable.Add(Datastore);
            VmQuiesceException failed = Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, Folder));
            Assert.Equal("FolderAccessGrantFailed", failed.ErrorId);
            Assert.Contains($"'{Datastore}' is held open by another program", failed.Message, StringComparison.Ordinal);
            Assert.Equal(0, _folders.Writes);
            Assert.Empty(_folders.OpenNow);
        }

        /// <summary>
        /// The DACL is read and written through the handle of the folder that was checked, while every folder above it is
        /// held (unrenamable): a junction planted after the check, at the folder or above it, cannot lead the write elsewhere.
        /// </summary>
        [Fact]
        public void TheGrantAndItsUndoGoThroughTheCheckedFolderWhileEveryFolderAboveItIsHeld()
        {
            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            List<string> chain = FoldersDownTo(Folder);
            List<string> opened = chain.Take(chain.Count - 1).Append(Folder + " (DACL)").ToList();

            FolderGrant grant = Backend.GrantFolderAccess(Backup, Folder);
            Assert.Equal(opened, _folders.Opened);
            Assert.Equal(chain, _folders.HeldWhenWritten);
            Assert.Empty(_folders.OpenNow);

            _folders.Opened.Clear();
            Backend.RevokeFolderAccess(grant);
            Assert.Equal(opened, _folders.Opened);
            Assert.Equal(chain, _folders.HeldWhenWritten);
            Assert.Empty(_folders.OpenNow);
            Assert.Equal(WindowsDaclTests.Before, _folders.Dacls[Folder]);
        }

        /// <summary>Junctions and volume mount points, symbolic links, WSL and container links, and a third party's name surrogate.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatRedirectsTheNameIsRefusedAtTheFolderAndAboveItAndNothingIsWritten(uint tag)
        {
            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            _folders.ReparsePoint(Folder, tag);
            VmQuiesceException atTheFolder = Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, Folder));
            Assert.Equal("FolderIsLink", atTheFolder.ErrorId);
            Assert.Contains($"'{Folder}' is {ReparsePoints.Describe(tag)}", atTheFolder.Message, StringComparison.Ordinal);
            Assert.Contains($"0x{tag:X8}", atTheFolder.Message, StringComparison.Ordinal);
            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(new FolderGrant(Folder, Backup.Name, new GrantedEntry(Backup.Identity, Folder)))).ErrorId);

            var above = new FolderHandlesInMemory();
            above.Dacls[Folder] = WindowsDaclTests.Before;
            above.ReparsePoint(Datastore, tag);
            VmQuiesceException underIt = Assert.Throws<VmQuiesceException>(() => new WindowsLogonBackend(_scm, above).GrantFolderAccess(Backup, Folder));
            Assert.Equal("FolderIsLink", underIt.ErrorId);
            Assert.Contains($"lies under '{Datastore}'", underIt.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(Folder + " (DACL)", above.Opened);

            Assert.Equal(0, _folders.Writes + above.Writes);
            Assert.Empty(_folders.OpenNow.Concat(above.OpenNow));
            Assert.Equal(WindowsDaclTests.Before, _folders.Dacls[Folder]);
        }

        /// <summary>Cloud placeholders (OneDrive and the like), deduplication, container layers, projected and synced folders: the folder stays where it is named.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatKeepsTheNameIsGrantedAtTheFolderAndAboveIt(uint tag)
        {
            foreach (string where in new[] { Folder, Datastore })
            {
                var folders = new FolderHandlesInMemory();
                folders.Dacls[Folder] = WindowsDaclTests.Before;
                folders.ReparsePoint(where, tag);
                var backend = new WindowsLogonBackend(_scm, folders);

                FolderGrant grant = backend.GrantFolderAccess(Backup, Folder);
                Assert.True(grant.CanBeUndone);
                Assert.NotEqual(WindowsDaclTests.Before, folders.Dacls[Folder]);
                backend.RevokeFolderAccess(grant);
                Assert.Equal(WindowsDaclTests.Before, folders.Dacls[Folder]);
                Assert.Equal(2, folders.Writes);
            }
        }

        [Fact]
        public void AFileOrNothingWhereTheFolderOrOneAboveItWasIsNotFoundAndNothingIsWritten()
        {
            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            _folders.File(Folder);
            Assert.Equal("FolderNotFound", Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, Folder)).ErrorId);
            _folders.File(Datastore);
            Assert.Equal("FolderNotFound", Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, Folder)).ErrorId);
            _folders.Missing(Datastore);
            Assert.Equal("FolderNotFound", Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(new FolderGrant(Folder, Backup.Name, new GrantedEntry(Backup.Identity, Folder)))).ErrorId);
            Assert.Equal(0, _folders.Writes);
            Assert.Empty(_folders.OpenNow);
        }

        /// <summary>The rollback checks the folder anew on its own handle: one swapped for a junction since the grant is refused, its target untouched.</summary>
        [Fact]
        public void TheUndoRefusesAFolderSwappedForAJunctionSinceTheGrant()
        {
            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            FolderGrant grant = Backend.GrantFolderAccess(Backup, Folder);
            _folders.ReparsePoint(Folder, 0xA0000003);

            Assert.Equal("FolderIsLink", Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(grant)).ErrorId);
            Assert.Equal(1, _folders.Writes);
            Assert.Empty(_folders.OpenNow);
        }

        /// <summary>
        /// The rollback removes the entry from the folder it was added to only: a folder put in its place since (the granted one
        /// moved away), even one holding the same entry, is left alone, and the rollback says so. Folders are told apart by their
        /// 128-bit file id: on ReFS the one put in place can have the moved one's 64-bit file index. A file system that gives
        /// no 128-bit id (FAT, some shares) is told apart by the 64-bit index.
        /// </summary>
        [Theory]
        [InlineData(true, false)]
        [InlineData(true, true)] // ReFS
        [InlineData(false, false)]
        public void TheUndoLeavesAFolderPutInPlaceOfTheGrantedOneAlone(bool answersFileId, bool sameIndex)
        {
            _folders.AnswersFileId = answersFileId;
            _folders.Dacls[Folder] = WindowsDaclTests.Before;
            FolderGrant grant = Backend.GrantFolderAccess(Backup, Folder);
            byte[] granted = _folders.Dacls[Folder];
            _folders.Replace(Folder, granted, sameIndex);

            VmQuiesceException refused = Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(grant));
            Assert.Equal("FolderAccessRevokeFailed", refused.ErrorId);
            Assert.Contains("moved or replaced", refused.Message, StringComparison.Ordinal);
            Assert.Equal(1, _folders.Writes);
            Assert.Equal(granted, _folders.Dacls[Folder]);
            Assert.Empty(_folders.OpenNow);
        }

        /// <summary>A file system that gives no 128-bit file id: the granted folder is known again by its 64-bit index, and its entry removed.</summary>
        [Fact]
        public void WhereTheFileSystemGivesNoFileIdTheUndoKnowsTheGrantedFolderByItsFileIndex()
        {
            _folders.AnswersFileId = false;
            _folders.Dacls[Folder] = WindowsDaclTests.Before;

            Backend.RevokeFolderAccess(Backend.GrantFolderAccess(Backup, Folder));
            Assert.Equal(WindowsDaclTests.Before, _folders.Dacls[Folder]);
            Assert.Equal(2, _folders.Writes);
        }

        /// <summary>Keeps the service, the account and which kind of lpPassword was passed; never the password itself.</summary>
        private sealed class RecordingLogonWriter : IServiceLogonWriter
        {
            public List<string> Calls { get; } = new List<string>();

            public void ChangeLogon(string serviceName, string account, IntPtr password)
            {
                string kind = password == IntPtr.Zero ? "(unchanged)" : Marshal.PtrToStringUni(password)!.Length == 0 ? "(empty)" : "(password)";
                Calls.Add($"{serviceName}|{account}|{kind}");
            }
        }
    }
}
