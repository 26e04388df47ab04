using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security;
using System.Threading;
using VmQuiesce.Core.Logon;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>The shared Set/Test/Get decisions, driven through the backend seam with a scripted fake.</summary>
    public sealed class ServiceLogonManagerTests : IDisposable
    {
        private const string Secret = "Correct-Horse-1";
        private const string Folder = "/vms/web01";
        private readonly string _state = Path.Combine(Path.GetTempPath(), "vmq-logon-tests-" + Guid.NewGuid().ToString("N"));
        private readonly FakeLogonBackend _backend = new FakeLogonBackend();
        private readonly RecordingGate _gate = new RecordingGate();

        public ServiceLogonManagerTests()
        {
            _backend.Folders[Folder] = true;
        }

        public void Dispose()
        {
            if (Directory.Exists(_state))
            {
                Directory.Delete(_state, recursive: true);
            }
        }

        private ServiceLogonManager Manager => new ServiceLogonManager(_backend, new PasswordVerifierStore(_state, iterations: 1000));

        private static SecureString Secure(string text)
        {
            var secure = new SecureString();
            foreach (char c in text)
            {
                secure.AppendChar(c);
            }

            secure.MakeReadOnly();
            return secure;
        }

        private static ServiceLogonRequest Request(string password = Secret, params string[] folders) =>
            new ServiceLogonRequest(@".\backup") { Password = Secure(password), VmFolders = folders };

        private VmQuiesceException SetFails(ServiceLogonRequest request) =>
            Assert.Throws<VmQuiesceException>(() => Manager.Set(request, _gate, CancellationToken.None));

        [Fact]
        public void SetValidatesEverythingBeforeTheFirstChangeThenChangesInOrder()
        {
            _backend.Folders[Folder] = false;
            ServiceLogonChange change = Manager.Set(Request(Secret, Folder) with { GrantFolderAccess = true }, _gate, CancellationToken.None);

            Assert.Equal(
                new[]
                {
                    "FindService:(default)", @"ResolveAccount:.\backup", @"VerifyPassword:.\backup", @"GetLogonRight:.\backup",
                    @"IsAdministrator:.\backup", "CheckFolderAccess:" + Folder, "ResolveAccount:LocalSystem", "CheckCanSetServiceAccount:vmvss",
                },
                _backend.Calls.Take(8));
            Assert.Equal(
                new[] { @"GrantLogonRight:.\backup", "GrantFolderAccess:" + Folder, @"SetServiceAccount:.\backup", @"RestartService:.\backup" },
                _backend.Changes);
            Assert.Equal(@".\backup", change.Account);
            Assert.Equal("LocalSystem", change.PreviousAccount);
            Assert.True(change.Restarted);
            Assert.Equal(4, change.Actions.Count);
        }

        [Fact]
        public void SetAsksShouldProcessBeforeEachChangeAndChangesNothingWhenDeclined()
        {
            _backend.Folders[Folder] = false;
            _gate.Answer = false;
            Manager.Set(Request(Secret, Folder) with { GrantFolderAccess = true }, _gate, CancellationToken.None);

            Assert.Empty(_backend.Changes);
            Assert.Equal(3, _gate.Asked.Count);
            Assert.Contains(_gate.Asked, a => a.StartsWith(@".\backup: Grant the 'Log on as a service' right", StringComparison.Ordinal));
            Assert.Contains(_gate.Asked, a => a.StartsWith(Folder + ": Give", StringComparison.Ordinal));
            Assert.Contains(_gate.Asked, a => a.StartsWith("vmvss: Set the logon account", StringComparison.Ordinal));
            Assert.False(File.Exists(new PasswordVerifierStore(_state).PathFor("vmvss")));
        }

        [Fact]
        public void SetWithAWrongPasswordChangesNothing()
        {
            VmQuiesceException failure = SetFails(Request("wrong-password", Folder));
            Assert.Equal("PasswordIncorrect", failure.ErrorId);
            Assert.Empty(_backend.Changes);
            Assert.Empty(_gate.Asked);
        }

        [Fact]
        public void SetWithAnUnknownAccountChangesNothing()
        {
            VmQuiesceException failure = SetFails(new ServiceLogonRequest(@".\nobody") { Password = Secure(Secret) });
            Assert.Equal("AccountNotFound", failure.ErrorId);
            Assert.Empty(_backend.Changes);
        }

        [Fact]
        public void SetRefusesAnAccountWithTheDenyRight()
        {
            _backend.Right = LogonRight.Denied;
            VmQuiesceException failure = SetFails(Request(Secret, Folder));
            Assert.Equal("LogonRightDenied", failure.ErrorId);
            Assert.Equal(FailureKind.PermissionDenied, failure.Kind);
            Assert.Contains("SeDenyServiceLogonRight", failure.Message, StringComparison.Ordinal);
            Assert.Empty(_backend.Changes);
        }

        [Fact]
        public void SetRefusesAServiceWhoseConfigurationAnotherUserCouldRedirectBeforeAnyGrant()
        {
            _backend.Folders[Folder] = false;
            _backend.ConfigurationUnsafe = true;
            Assert.Equal("UnitFolderUnsafe", SetFails(Request(Secret, Folder) with { GrantFolderAccess = true }).ErrorId);
            Assert.Empty(_backend.Changes);
            Assert.Empty(_gate.Asked);
        }

        [Fact]
        public void SetRefusesAnAccountThatIsNotAnAdministrator()
        {
            _backend.Administrator = false;
            Assert.Equal("AccountNotAdministrator", SetFails(Request(Secret, Folder)).ErrorId);
            Assert.Empty(_backend.Changes);
        }

        [Fact]
        public void AFolderWithoutAccessIsAnErrorNamingTheFolderUnlessGrantFolderAccess()
        {
            _backend.Folders["/vms/db01"] = false;
            VmQuiesceException failure = SetFails(Request(Secret, Folder, "/vms/db01"));
            Assert.Equal("FolderAccessDenied", failure.ErrorId);
            Assert.Equal("/vms/db01", failure.Target);
            Assert.Contains("'/vms/db01'", failure.Message, StringComparison.Ordinal);
            Assert.Empty(_backend.Changes);

            Manager.Set(Request(Secret, Folder, "/vms/db01") with { GrantFolderAccess = true }, _gate, CancellationToken.None);
            Assert.Contains("GrantFolderAccess:/vms/db01", _backend.Changes);
            Assert.DoesNotContain("GrantFolderAccess:" + Folder, _backend.Changes);
        }

        [Fact]
        public void AMissingFolderStopsSetBeforeAnyGrant()
        {
            _backend.Folders[Folder] = false;
            VmQuiesceException failure = SetFails(Request(Secret, Folder, "/vms/missing") with { GrantFolderAccess = true });
            Assert.Equal("FolderNotFound", failure.ErrorId);
            Assert.Empty(_backend.Changes);
        }

        [Fact]
        public void AFailedRestartPutsThePreviousAccountBackAndSaysSo()
        {
            _backend.RestartFailuresLeft = 1;
            VmQuiesceException failure = SetFails(Request());

            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains("'LocalSystem' was put back", failure.Message, StringComparison.Ordinal);
            Assert.Contains("runs again", failure.Message, StringComparison.Ordinal);
            Assert.Equal(
                new[] { @"GrantLogonRight:.\backup", @"SetServiceAccount:.\backup", @"RestartService:.\backup", "RestoreServiceAccount:LocalSystem|state-of-LocalSystem", "RestartService:LocalSystem" },
                _backend.Changes);
            Assert.Equal("LocalSystem", _backend.CurrentAccount);
            Assert.False(File.Exists(new PasswordVerifierStore(_state).PathFor("vmvss")), "no verifier for a password that is not in use");
        }

        [Fact]
        public void AFailedRestartRemovesTheFolderEntryItGaveAndSaysTheLogonRightWasKept()
        {
            _backend.Folders[Folder] = false;
            _backend.RestartFailuresLeft = 1;
            VmQuiesceException failure = SetFails(Request(Secret, Folder) with { GrantFolderAccess = true });

            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains(@"RevokeFolderAccess:" + Folder + @"|entry-for-SID-.\BACKUP", _backend.Changes);
            Assert.False(_backend.Folders[Folder], "the Modify entry given in this run is removed again");
            Assert.Contains(@"The modify access given to .\backup was removed again from " + Folder + ".", failure.Message, StringComparison.Ordinal);
            Assert.Contains(@"Kept: Granted 'Log on as a service' to .\backup.", failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void CtrlCDuringTheRestartRemovesTheFolderEntryItGaveAndSaysSo()
        {
            _backend.Folders[Folder] = false;
            using var cancel = new CancellationTokenSource();
            _backend.CancelDuringRestart = cancel;

            Assert.ThrowsAny<OperationCanceledException>(() => Manager.Set(Request(Secret, Folder) with { GrantFolderAccess = true }, _gate, cancel.Token));

            Assert.Equal(
                new[]
                {
                    @"GrantLogonRight:.\backup", "GrantFolderAccess:" + Folder, @"SetServiceAccount:.\backup", @"RestartService:.\backup",
                    "RestoreServiceAccount:LocalSystem|state-of-LocalSystem", "RestartService:LocalSystem", @"RevokeFolderAccess:" + Folder + @"|entry-for-SID-.\BACKUP",
                },
                _backend.Changes);
            Assert.False(_backend.Folders[Folder]);
            Assert.Contains(_gate.Warnings, w => w.Contains("removed again from " + Folder, StringComparison.Ordinal));
        }

        [Fact]
        public void AFailureBeforeTheAccountChangesStillRemovesTheFolderEntry()
        {
            _backend.Folders[Folder] = false;
            _backend.SetAccountFails = true;
            VmQuiesceException failure = SetFails(Request(Secret, Folder) with { GrantFolderAccess = true });

            Assert.Equal("ServiceConfigChangeFailed", failure.ErrorId);
            Assert.Equal(FailureKind.PermissionDenied, failure.Kind);
            Assert.Equal(
                new[] { @"GrantLogonRight:.\backup", "GrantFolderAccess:" + Folder, @"SetServiceAccount:.\backup", @"RevokeFolderAccess:" + Folder + @"|entry-for-SID-.\BACKUP" },
                _backend.Changes);
            Assert.StartsWith("Cannot set the logon account of 'vmvss': access denied.", failure.Message, StringComparison.Ordinal);
            Assert.Contains("removed again from " + Folder, failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void CtrlCAtTheQuestionAfterTheFolderGrantRemovesItAndSaysSo()
        {
            _backend.Folders[Folder] = false;
            _gate.StopAt = "Set the logon account";

            Assert.ThrowsAny<OperationCanceledException>(() => Manager.Set(Request(Secret, Folder) with { GrantFolderAccess = true }, _gate, CancellationToken.None));

            Assert.Equal(new[] { @"GrantLogonRight:.\backup", "GrantFolderAccess:" + Folder, @"RevokeFolderAccess:" + Folder + @"|entry-for-SID-.\BACKUP" }, _backend.Changes);
            Assert.Contains(_gate.Warnings, w => w.Contains("the command was stopped", StringComparison.Ordinal) && w.Contains("removed again from " + Folder, StringComparison.Ordinal));
        }

        [Fact]
        public void AFolderGrantThatCannotBeUndoneIsSaidToBeKept()
        {
            _backend.Folders[Folder] = false;
            _backend.FolderGrantsCanBeUndone = false;
            _backend.RestartFailuresLeft = 1;
            VmQuiesceException failure = SetFails(Request(Secret, Folder) with { GrantFolderAccess = true });

            Assert.DoesNotContain(_backend.Changes, c => c.StartsWith("RevokeFolderAccess", StringComparison.Ordinal));
            Assert.Contains(@"Kept: Granted 'Log on as a service' to .\backup; Gave .\backup modify access to " + Folder + ".", failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void AFolderEntryThatCannotBeRemovedIsNamedWithWhy()
        {
            _backend.Folders[Folder] = false;
            _backend.RevokeFails = true;
            _backend.RestartFailuresLeft = 1;
            VmQuiesceException failure = SetFails(Request(Secret, Folder) with { GrantFolderAccess = true });

            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains("'LocalSystem' was put back", failure.Message, StringComparison.Ordinal);
            Assert.Contains($@"The modify access given to .\backup on {Folder} could not be removed: Cannot remove the Modify entry from '{Folder}': access denied.", failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void ARollbackWhoseRestartAlsoFailsSaysThat()
        {
            _backend.RestartFailuresLeft = 2;
            VmQuiesceException failure = SetFails(Request());
            Assert.Contains("did not start under it either", failure.Message, StringComparison.Ordinal);
            Assert.Equal("LocalSystem", _backend.CurrentAccount);
        }

        [Fact]
        public void CtrlCDuringTheRestartPutsThePreviousAccountBackAndStartsTheServiceAgain()
        {
            using var cancel = new CancellationTokenSource();
            _backend.CancelDuringRestart = cancel;

            Assert.ThrowsAny<OperationCanceledException>(() => Manager.Set(Request(), _gate, cancel.Token));

            Assert.Equal(
                new[] { @"GrantLogonRight:.\backup", @"SetServiceAccount:.\backup", @"RestartService:.\backup", "RestoreServiceAccount:LocalSystem|state-of-LocalSystem", "RestartService:LocalSystem" },
                _backend.Changes);
            Assert.Equal("LocalSystem", _backend.CurrentAccount);
            Assert.Contains(_gate.Warnings, w => w.Contains("'LocalSystem' was put back", StringComparison.Ordinal) && w.Contains("runs again", StringComparison.Ordinal));
        }

        /// <summary>
        /// The warning is the only word of a stopped command (the pipeline then refuses error records): a rollback step that
        /// fails must go into it, not replace the stop with an error nobody sees, and the other steps still run.
        /// </summary>
        [Fact]
        public void CtrlCDuringTheRestartStillWarnsWhenThePreviousAccountCannotBePutBack()
        {
            _backend.Folders[Folder] = false;
            _backend.RestoreAccountFails = true;
            using var cancel = new CancellationTokenSource();
            _backend.CancelDuringRestart = cancel;

            Assert.ThrowsAny<OperationCanceledException>(() => Manager.Set(Request(Secret, Folder) with { GrantFolderAccess = true }, _gate, cancel.Token));

            string warning = Assert.Single(_gate.Warnings);
            Assert.Contains("the command was stopped", warning, StringComparison.Ordinal);
            Assert.Contains(@"The previous account 'LocalSystem' could not be put back (Cannot set the logon account of 'vmvss': access denied.): vmvss is still set to log on as .\backup.", warning, StringComparison.Ordinal);
            Assert.Contains("removed again from " + Folder, warning, StringComparison.Ordinal);
            Assert.False(_backend.Folders[Folder]);
        }

        [Fact]
        public void AFailedRestartWhoseAccountCannotBePutBackKeepsItsOwnErrorAndSaysSo()
        {
            _backend.RestoreAccountFails = true;
            _backend.RestartFailuresLeft = 1;
            VmQuiesceException failure = SetFails(Request());

            Assert.Equal("ServiceRestartFailed", failure.ErrorId);
            Assert.Contains("logon failure (error 1069)", failure.Message, StringComparison.Ordinal);
            Assert.Contains("could not be put back", failure.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("RestartService:LocalSystem", _backend.Changes);
        }

        [Fact]
        public void AStoppedServiceIsNotStartedUnlessRestartIsAsked()
        {
            _backend.State = ServiceRunState.Stopped;
            Manager.Set(Request(), _gate, CancellationToken.None);
            Assert.DoesNotContain(_backend.Changes, c => c.StartsWith("RestartService", StringComparison.Ordinal));

            _backend.CurrentAccount = "LocalSystem";
            Manager.Set(Request() with { Restart = true }, _gate, CancellationToken.None);
            Assert.Contains(@"RestartService:.\backup", _backend.Changes);
        }

        [Fact]
        public void WhenTheServiceManagerCannotRestartTheChangeWaitsForTheNextStartWithAWarning()
        {
            _backend.UsesPassword = false;
            _backend.WhyNoRestart = "systemd is not managing this machine";
            Manager.Set(new ServiceLogonRequest(@".\backup"), _gate, CancellationToken.None);
            Assert.DoesNotContain(_backend.Changes, c => c.StartsWith("RestartService", StringComparison.Ordinal));
            Assert.Contains(_gate.Warnings, w => w.Contains("next starts", StringComparison.Ordinal) && w.Contains("systemd is not managing", StringComparison.Ordinal));
        }

        [Fact]
        public void SetIsIdempotentOnceThePasswordVerifierMatches()
        {
            Manager.Set(Request(), _gate, CancellationToken.None);
            _backend.Changes.Clear();
            Manager.Set(Request(), _gate, CancellationToken.None);
            Assert.Empty(_backend.Changes);
            Assert.Contains(_gate.Verbose, v => v.Contains("already logs on as", StringComparison.Ordinal));
        }

        [Fact]
        public void TestIsTrueAfterSetAndNoticesARotatedPassword()
        {
            Manager.Set(Request(Secret, Folder), _gate, CancellationToken.None);
            Assert.True(Manager.Test(Request(Secret, Folder), _gate).InDesiredState);

            ServiceLogonTestResult rotated = Manager.Test(Request("Rotated-Horse-2", Folder), _gate);
            Assert.False(rotated.InDesiredState);
            ServiceLogonCheck password = Assert.Single(rotated.Checks, c => !c.Passed);
            Assert.Equal("Password", password.Name);
            Assert.Contains("rotated", password.Detail, StringComparison.Ordinal);
        }

        [Fact]
        public void TestIsFalseForEachMissingCondition()
        {
            Manager.Set(Request(Secret, Folder), _gate, CancellationToken.None);
            _backend.Folders[Folder] = false;
            _backend.Administrator = false;
            _backend.Right = LogonRight.Denied;
            int changesBefore = _backend.Changes.Count;

            ServiceLogonTestResult result = Manager.Test(Request(Secret, Folder, "/vms/missing"), _gate);

            Assert.False(result.InDesiredState);
            Assert.Equal(new[] { "LogonRight", "Administrator", "Folder", "Folder" }, result.Checks.Where(c => !c.Passed).Select(c => c.Name));
            Assert.Equal(changesBefore, _backend.Changes.Count); // Test never changes anything
        }

        [Fact]
        public void TestIsFalseWhenThePasswordWasNeverAppliedOrTheAccountDiffers()
        {
            _backend.CurrentAccount = @".\backup";
            ServiceLogonTestResult neverApplied = Manager.Test(Request(), _gate);
            Assert.Contains(neverApplied.Checks, c => c.Name == "Password" && !c.Passed && c.Detail.Contains("no password verifier", StringComparison.Ordinal));

            _backend.CurrentAccount = "LocalSystem";
            Assert.Contains(Manager.Test(Request(), _gate).Checks, c => c.Name == "Account" && !c.Passed);
        }

        [Fact]
        public void BuiltInServiceAccountsNeedNoPasswordAndNoGrant()
        {
            _backend.CurrentAccount = @".\backup";
            Manager.Set(new ServiceLogonRequest("LocalSystem"), _gate, CancellationToken.None);
            Assert.DoesNotContain(_backend.Calls, c => c.StartsWith("VerifyPassword", StringComparison.Ordinal) || c.StartsWith("GetLogonRight", StringComparison.Ordinal));
            Assert.Equal(new[] { "SetServiceAccount:LocalSystem", "RestartService:LocalSystem" }, _backend.Changes);
        }

        [Fact]
        public void APasswordOnAPasswordlessPlatformIsIgnoredWithAWarning()
        {
            _backend.UsesPassword = false;
            Manager.Set(Request(Secret), _gate, CancellationToken.None);
            Assert.Contains(_gate.Warnings, w => w.Contains("ignored", StringComparison.Ordinal));
            Assert.DoesNotContain(_backend.Calls, c => c.StartsWith("VerifyPassword", StringComparison.Ordinal));
            Assert.Empty(Directory.Exists(_state) ? Directory.GetFiles(_state) : Array.Empty<string>());
        }

        [Fact]
        public void ThePasswordNeverAppearsInAnyMessage()
        {
            const string secret = "Unmistakable-Secret-77";
            _backend.CorrectPassword = secret;
            var messages = new List<string>();
            void Capture(Action action)
            {
                try
                {
                    action();
                }
                catch (VmQuiesceException failure)
                {
                    messages.Add(failure.ToString());
                    messages.Add(failure.Remedy ?? string.Empty);
                    messages.Add(failure.Target?.ToString() ?? string.Empty);
                }
            }

            Capture(() => Manager.Set(Request(secret, Folder), _gate, CancellationToken.None));
            Capture(() => Manager.Test(Request(secret, Folder), _gate));
            Capture(() => Manager.Set(Request(secret + "x", Folder), _gate, CancellationToken.None));
            _backend.CurrentAccount = "LocalSystem";
            _backend.RestartFailuresLeft = 2;
            Capture(() => Manager.Set(Request(secret, Folder), _gate, CancellationToken.None));
            _backend.Right = LogonRight.Denied;
            Capture(() => Manager.Set(Request(secret, Folder), _gate, CancellationToken.None));
            _backend.UsesPassword = false;
            Capture(() => Manager.Set(Request(secret, Folder), _gate, CancellationToken.None));

            Assert.True(messages.Count >= 9);
            Assert.NotEmpty(_gate.Everything);
            Assert.DoesNotContain(messages.Concat(_gate.Everything).Concat(_backend.Calls), m => m.Contains("Unmistakable", StringComparison.Ordinal));
            string verifier = File.ReadAllText(new PasswordVerifierStore(_state).PathFor("vmvss"));
            Assert.DoesNotContain("Unmistakable", verifier, StringComparison.Ordinal);
        }

        [Fact]
        public void GetReportsTheCurrentAccountAndEachFolderAndReportsMissingFoldersSeparately()
        {
            _backend.Folders["/vms/db01"] = false;
            var failures = new List<VmQuiesceException>();
            ServiceLogonInfo info = Manager.Get(null, new[] { Folder, "/vms/gone", "/vms/db01" }, failures.Add);

            Assert.Equal("vmvss", info.ServiceName);
            Assert.Equal("LocalSystem", info.Account);
            Assert.Equal(LogonRight.Granted, info.LogonRightValue);
            Assert.True(info.IsAdministrator);
            Assert.Equal(new[] { true, false }, info.FolderAccess.Select(f => f.CanModify));
            Assert.Equal("FolderNotFound", Assert.Single(failures).ErrorId);
            Assert.Empty(_backend.Changes);
        }
    }
}
