using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Security;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Windows;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>What the Windows backend asks the Service Control Manager to store, through its logon-writer seam (runs on any OS).</summary>
    public sealed class WindowsLogonBackendSeamTests : IDisposable
    {
        private readonly RecordingLogonWriter _scm = new RecordingLogonWriter();
        private readonly FolderDaclsInMemory _dacls = new FolderDaclsInMemory();
        private readonly string _folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-dacl-" + Guid.NewGuid().ToString("N"))).FullName;

        public void Dispose() => Directory.Delete(_folder, recursive: true);

        private WindowsLogonBackend Backend => new WindowsLogonBackend(_scm, _dacls);

        private static LogonAccount Backup => new LogonAccount(@".\backup", WindowsDaclTests.Account);

        private static ServiceEntry Service(string account) => new ServiceEntry("vmvss", "VMware VSS Writer Service", account, "Automatic", ServiceRunState.Running);

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
            _dacls.Dacls[_folder] = WindowsDaclTests.Before;

            FolderGrant grant = Backend.GrantFolderAccess(Backup, _folder);
            Assert.True(grant.CanBeUndone);
            Assert.Equal(_folder, grant.Path);
            Assert.NotEqual(WindowsDaclTests.Before, _dacls.Dacls[_folder]);

            Backend.RevokeFolderAccess(grant);
            Assert.Equal(WindowsDaclTests.Before, _dacls.Dacls[_folder]);
            Assert.Equal(2, _dacls.Writes);

            // Removed already (by hand): nothing else is touched.
            Backend.RevokeFolderAccess(grant);
            Assert.Equal(2, _dacls.Writes);
        }

        [Fact]
        public void AnEntryTheAccountHeldAlreadyIsNeitherWrittenNorRemoved()
        {
            byte[] held = WindowsDaclTests.Acl((0, 0x03, WindowsDacl.ModifyRights, WindowsDaclTests.Account));
            _dacls.Dacls[_folder] = held;

            FolderGrant grant = Backend.GrantFolderAccess(Backup, _folder);
            Assert.False(grant.CanBeUndone);
            Backend.RevokeFolderAccess(grant);
            Assert.Equal(0, _dacls.Writes);
            Assert.Equal(held, _dacls.Dacls[_folder]);
        }

        [Fact]
        public void AFolderWhoseDaclCannotBeReadIsAGrantFailureAndARevokeFailure()
        {
            Assert.Equal("FolderAccessGrantFailed", Assert.Throws<VmQuiesceException>(() => Backend.GrantFolderAccess(Backup, _folder)).ErrorId);
            Assert.Equal("FolderAccessRevokeFailed", Assert.Throws<VmQuiesceException>(() => Backend.RevokeFolderAccess(new FolderGrant(_folder, Backup.Name, Backup.Identity))).ErrorId);
        }

        /// <summary>Folder DACLs in memory; a folder not listed cannot be read, as GetNamedSecurityInfo failing.</summary>
        private sealed class FolderDaclsInMemory : IFolderDacls
        {
            public Dictionary<string, byte[]> Dacls { get; } = new Dictionary<string, byte[]>();

            public int Writes { get; private set; }

            public byte[] Read(string folder) => Dacls.TryGetValue(folder, out byte[]? dacl) ? (byte[])dacl.Clone() : throw new IOException($"Cannot read the permissions of '{folder}': access denied");

            public void Write(string folder, byte[] dacl)
            {
                Writes++;
                Dacls[folder] = (byte[])dacl.Clone();
            }
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
