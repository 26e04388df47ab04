using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Security;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Windows;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>What the Windows backend asks the Service Control Manager to store, through its logon-writer seam (runs on any OS).</summary>
    public sealed class WindowsLogonBackendSeamTests
    {
        private readonly RecordingLogonWriter _scm = new RecordingLogonWriter();

        private WindowsLogonBackend Backend => new WindowsLogonBackend(_scm);

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
