using System;
using System.IO;
using System.Linq;
using System.Security.AccessControl;
using System.Security.Principal;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>The real Windows backend against the real SCM, LSA and Authz (read-only calls, and permission changes on temporary folders only).</summary>
    public sealed class WindowsLogonBackendTests
    {
        [WindowsFact]
        public void BuiltInAccountsResolveWithoutAPassword()
        {
            var backend = new WindowsLogonBackend();
            LogonAccount system = backend.ResolveAccount("LocalSystem");
            Assert.True(system.IsBuiltInServiceAccount);
            Assert.Equal("S-1-5-18", system.Identity);
            Assert.True(backend.IsAdministrator(system));
            Assert.Equal("S-1-5-19", backend.ResolveAccount(@"NT AUTHORITY\LOCAL SERVICE").Identity);
        }

        [WindowsFact]
        public void AnUnknownAccountAndServiceAreClearErrors()
        {
            var backend = new WindowsLogonBackend();
            Assert.Equal("AccountNotFound", Assert.Throws<VmQuiesceException>(() => backend.ResolveAccount(@".\vmq-no-such-user-4711")).ErrorId);
            Assert.Equal("ServiceNotFound", Assert.Throws<VmQuiesceException>(() => backend.FindService("vmq-no-such-service-4711")).ErrorId);
        }

        [WindowsFact]
        public void FindsAServiceByNameOrDisplayNameWithItsAccountAndState()
        {
            var backend = new WindowsLogonBackend();
            ServiceEntry eventLog = backend.FindService("EventLog");
            Assert.Equal("EventLog", eventLog.Name, ignoreCase: true);
            Assert.Equal(ServiceRunState.Running, eventLog.State);
            Assert.Equal("S-1-5-19", backend.ResolveAccount(eventLog.Account).Identity);
            Assert.Equal("EventLog", backend.FindService(eventLog.DisplayName).Name, ignoreCase: true);
        }

        [WindowsFact]
        public void TheCurrentUserResolvesAndAnElevatedOneIsAnAdministrator()
        {
            var backend = new WindowsLogonBackend();
            using WindowsIdentity identity = WindowsIdentity.GetCurrent();
            LogonAccount current = backend.ResolveAccount(identity.Name);
            Assert.Equal(identity.User!.Value, current.Identity);
            Assert.True(Enum.IsDefined(backend.GetLogonRight(current)));
            if (new WindowsPrincipal(identity).IsInRole(WindowsBuiltInRole.Administrator))
            {
                Assert.True(backend.IsAdministrator(current));
            }
        }

        [WindowsFact]
        public void AuthzSeesThatSystemCanModifyATempFolder()
        {
            var backend = new WindowsLogonBackend();
            string folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-authz-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                Assert.True(backend.CheckFolderAccess(backend.ResolveAccount("LocalSystem"), folder).CanModify);
                Assert.Equal("FolderNotFound", Assert.Throws<VmQuiesceException>(() => backend.CheckFolderAccess(backend.ResolveAccount("LocalSystem"), folder + "-missing")).ErrorId);
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        /// <summary>What only the real API can show: SetNamedSecurityInfo keeps the entry apart and carries it to the files inside, and its removal gives the permissions back as they were.</summary>
        [WindowsFact]
        public void TheFolderGrantIsRemovedExactlyAndAnEntryTheAccountHeldBeforeStays()
        {
            string folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-grant-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                var guests = new SecurityIdentifier("S-1-5-32-546");
                var info = new DirectoryInfo(folder);
                DirectorySecurity security = info.GetAccessControl();
                security.AddAccessRule(new FileSystemAccessRule(guests, FileSystemRights.ReadAndExecute, InheritanceFlags.ContainerInherit | InheritanceFlags.ObjectInherit, PropagationFlags.None, AccessControlType.Allow));
                info.SetAccessControl(security);
                string disk = Path.Combine(folder, "disk.vmdk");
                File.WriteAllText(disk, "x");
                string folderBefore = info.GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access);
                string diskBefore = new FileInfo(disk).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access);

                var backend = new WindowsLogonBackend();
                FolderGrant grant = backend.GrantFolderAccess(new LogonAccount("Guests", guests.Value), folder);

                Assert.True(grant.CanBeUndone);
                FileSystemAccessRule[] explicitRules = info.GetAccessControl().GetAccessRules(true, false, typeof(SecurityIdentifier)).Cast<FileSystemAccessRule>()
                    .Where(r => r.IdentityReference.Equals(guests)).ToArray();
                Assert.Equal(2, explicitRules.Length);
                Assert.Contains(explicitRules, r => r.FileSystemRights.HasFlag(FileSystemRights.Modify));
                Assert.Contains(new FileInfo(disk).GetAccessControl().GetAccessRules(false, true, typeof(SecurityIdentifier)).Cast<FileSystemAccessRule>(),
                    r => r.IdentityReference.Equals(guests) && r.FileSystemRights.HasFlag(FileSystemRights.Modify));

                backend.RevokeFolderAccess(grant);
                Assert.Equal(folderBefore, info.GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access));
                Assert.Equal(diskBefore, new FileInfo(disk).GetAccessControl().GetSecurityDescriptorSddlForm(AccessControlSections.Access));
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        /// <summary>
        /// Runs in the GitHub Actions Windows job: a folder to be given to Administrators that is a junction is refused on its own
        /// handle, and the folder it leads to keeps its owner and permissions (a write by path went through the junction).
        /// </summary>
        [WindowsFact]
        public void AFolderToBeGivenToAdministratorsThatIsAJunctionIsRefusedAndItsTargetKeepsItsOwnerAndPermissions()
        {
            string root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-state-" + Guid.NewGuid().ToString("N"))).FullName;
            try
            {
                string target = Directory.CreateDirectory(Path.Combine(root, "target")).FullName;
                string junction = Path.Combine(root, "state");
                VmFolderLinkTests.MakeJunction(junction, target);
                const AccessControlSections OwnerAndAccess = AccessControlSections.Owner | AccessControlSections.Access;
                string before = new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(OwnerAndAccess);

                FolderTrustException refused = Assert.Throws<FolderTrustException>(() => WindowsSecurity.RestrictToAdministrators(junction));
                Assert.Equal(FolderProblem.Link, refused.Problem);
                Assert.Contains("(reparse tag 0xA0000003)", refused.Message, StringComparison.Ordinal);
                Assert.Equal(before, new DirectoryInfo(target).GetAccessControl().GetSecurityDescriptorSddlForm(OwnerAndAccess));
                Directory.Delete(junction);
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }
        }

        [WindowsFact]
        public void TheVerifierFolderBelongsToAdministratorsAndIsForAdministratorsAndSystemOnly()
        {
            string root = Path.Combine(Path.GetTempPath(), "vmq-state-" + Guid.NewGuid().ToString("N"));
            try
            {
                var store = new PasswordVerifierStore(root, iterations: 1000);
                var password = new System.Security.SecureString();
                password.AppendChar('x');
                store.Save("svc", new LogonAccount(@".\backup", "S-1-5-21-1-2-3-1001"), password);

                DirectorySecurity security = new DirectoryInfo(root).GetAccessControl();
                Assert.True(security.AreAccessRulesProtected);
                string[] who = security.GetAccessRules(true, true, typeof(SecurityIdentifier)).Cast<FileSystemAccessRule>()
                    .Select(r => r.IdentityReference.Value).Distinct().OrderBy(s => s, StringComparer.Ordinal).ToArray();
                Assert.Equal(new[] { "S-1-5-18", "S-1-5-32-544" }, who);
                // Its owner could rewrite that DACL at will: a folder another user made first must not stay theirs.
                Assert.Equal("S-1-5-32-544", security.GetOwner(typeof(SecurityIdentifier))!.Value);
            }
            finally
            {
                if (Directory.Exists(root))
                {
                    Directory.Delete(root, recursive: true);
                }
            }
        }
    }
}
