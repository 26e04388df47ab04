using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class VssSnapshotSessionTests
    {
        private const int ProviderVeto = unchecked((int)0x80042306);
        private const int FlushWritesTimeout = unchecked((int)0x80042313);
        private const int HoldWritesTimeout = unchecked((int)0x80042314);
        private const int WriterTimeout = unchecked((int)0x800423F2);
        private const int AccessDenied = unchecked((int)0x80070005);

        private static readonly string[] WebFiles = { "D:\\VMs\\web\\web.vmx", "D:\\VMs\\web\\web.vmdk" };

        /// <summary>The whole successful run, in order, as the interop notes prescribe.</summary>
        private static readonly string[] SuccessfulRun =
        {
            "Create",
            "InitializeForBackup",
            "SetContext(0)",
            "SetBackupState(True,False,Copy,False)",
            "GatherWriterMetadata",
            "GetWriterMetadata",
            "AddComponent(VMware VSS Writer,FileGroup,VMs,vm-42)",
            "StartSnapshotSet",
            "AddToSnapshotSet(\\\\?\\Volume{d}\\)",
            "PrepareForBackup",
            "GatherWriterStatus",
            "GetWriterStatus",
            "DoSnapshotSet",
            "GatherWriterStatus",
            "GetWriterStatus",
            "GetSnapshotProperties",
            "SetBackupSucceeded(VMware VSS Writer,vm-42,True)",
            "BackupComplete",
            "GatherWriterStatus",
            "GetWriterStatus",
            "DeleteSnapshots",
            "Release",
        };

        private static VssSnapshotRequest Request(string vmName = "Web server", HostVssWriter? writer = null, IReadOnlyList<string>? paths = null, bool require = true) => new VssSnapshotRequest
        {
            Writer = writer ?? HostVssWriter.VMware,
            VmNames = new[] { vmName },
            Paths = paths ?? WebFiles,
            RequireWriterComponents = require,
            PollInterval = TimeSpan.Zero,
            Target = vmName,
        };

        private static VssSnapshotSession Open(FakeVss fake, VssSnapshotRequest? request = null, List<string>? warnings = null, CancellationToken cancel = default) =>
            VssSnapshotSession.Open(fake, request ?? Request(), warnings == null ? null : warnings.Add, null, cancel);

        private static void RunToTheEnd(FakeVss fake, VssSnapshotRequest? request = null, List<string>? warnings = null)
        {
            using VssSnapshotSession session = Open(fake, request, warnings);
            session.Complete(true, CancellationToken.None);
        }

        [Fact]
        public void ASuccessfulRunMakesEveryCallInTheDocumentedOrderAndReleasesEverything()
        {
            var fake = new FakeVss();

            RunToTheEnd(fake);

            Assert.Equal(SuccessfulRun, fake.Calls);
            Assert.Equal(0, fake.LiveObjects);
            Assert.Equal(1, fake.ComponentsReleased);
        }

        [Fact]
        public void AnOpenSessionMapsEachFileToItsShadowCopyDevicePath()
        {
            var fake = new FakeVss();

            using VssSnapshotSession session = Open(fake);

            Assert.Equal("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\VMs\\web\\web.vmdk", session.ShadowPathOf("D:\\VMs\\web\\web.vmdk"));
            Assert.Equal("VMware VSS Writer: Web server", Assert.Single(session.SelectedComponents).ToString());
            Assert.Throws<ArgumentException>(() => session.ShadowPathOf("D:\\elsewhere.txt"));
        }

        [Fact]
        public void EveryVolumeHoldingAFileIsAddedOnce()
        {
            var fake = new FakeVss();
            string[] paths = { "D:\\VMs\\web\\web.vmx", "E:\\disks\\web-1.vmdk", "D:\\VMs\\web\\web.vmdk" };

            using VssSnapshotSession session = Open(fake, Request(paths: paths));

            Assert.Equal(new[] { "AddToSnapshotSet(\\\\?\\Volume{d}\\)", "AddToSnapshotSet(\\\\?\\Volume{e}\\)" }, fake.Calls.Where(c => c.StartsWith("AddToSnapshotSet", StringComparison.Ordinal)));
            Assert.Equal(2, fake.Calls.Count(c => c == "GetSnapshotProperties"));
            Assert.StartsWith("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy2\\disks", session.ShadowPathOf("E:\\disks\\web-1.vmdk"), StringComparison.Ordinal);
        }

        [Theory]
        [InlineData("C:\\Windows")]
        [InlineData("")]
        public void SnapshotPropertiesThatDoNotDescribeAShadowCopyStopTheRunLoudly(string deviceObject)
        {
            var fake = new FakeVss { DeviceObjectOverride = deviceObject };

            var failure = Assert.Throws<VmQuiesceException>(() => Open(fake));

            Assert.Equal("VssUnexpectedSnapshotProperties", failure.ErrorId);
            Assert.Equal(new[] { "GetSnapshotProperties", "AbortBackup", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 4));
        }

        [Fact]
        public void AFullBackupIsAskedForOnlyWhenRequested()
        {
            var fake = new FakeVss();
            VssSnapshotRequest request = Request();

            RunToTheEnd(fake, new VssSnapshotRequest { Writer = request.Writer, VmNames = request.VmNames, Paths = request.Paths, BackupType = VssBackupType.Full, PollInterval = TimeSpan.Zero });

            Assert.Contains("SetBackupState(True,False,Full,False)", fake.Calls);
        }

        [Theory]
        [InlineData("Hyper-V by caption", "hv1", "AddComponent(Microsoft Hyper-V VSS Writer,FileGroup,,5f2c3a10-0000-0000-0000-000000000000)")]
        [InlineData("Hyper-V by id", "5f2c3a10-0000-0000-0000-000000000000", "AddComponent(Microsoft Hyper-V VSS Writer,FileGroup,,5f2c3a10-0000-0000-0000-000000000000)")]
        public void TheHyperVWriterIsFoundByIdAndItsComponentByCaptionOrName(string because, string vmName, string expected)
        {
            var fake = new FakeVss();

            using VssSnapshotSession session = Open(fake, Request(vmName, HostVssWriter.HyperV, new[] { "E:\\Hyper-V\\hv1\\hv1.vhdx" }));

            Assert.True(fake.Calls.Contains(expected), because);
        }

        [Fact]
        public void AHyperVComponentIsNeverChosenByFolderBecauseHyperVSharesOneFolderAmongVms()
        {
            var fake = new FakeVss();
            var warnings = new List<string>();

            using VssSnapshotSession session = Open(fake, Request("other vm", HostVssWriter.HyperV, new[] { "E:\\Hyper-V\\hv1\\other.vhdx" }, require: false), warnings);

            Assert.DoesNotContain(fake.Calls, call => call.StartsWith("AddComponent", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("no component for the VM 'other vm'", StringComparison.Ordinal));
        }

        [Fact]
        public void AVMwareComponentIsFoundByTheFolderOfTheVmsFilesWhenNoNameMatches()
        {
            var fake = new FakeVss();

            using VssSnapshotSession session = Open(fake, Request("my database vm", paths: new[] { "D:\\VMs\\db\\db.vmx" }));

            Assert.Contains("AddComponent(VMware VSS Writer,FileGroup,VMs,vm-43)", fake.Calls);
        }

        /// <summary>Every call of the run, by name and occurrence, with whether AbortBackup and DeleteSnapshots must follow.</summary>
        public static IEnumerable<object[]> FailurePoints()
        {
            // (method, occurrence, after StartSnapshotSet, after DoSnapshotSet)
            yield return new object[] { "InitializeForBackup", 1, false, false };
            yield return new object[] { "SetContext", 1, false, false };
            yield return new object[] { "SetBackupState", 1, false, false };
            yield return new object[] { "GatherWriterMetadata", 1, false, false };
            yield return new object[] { "GetWriterMetadata", 1, false, false };
            yield return new object[] { "AddComponent", 1, false, false };
            yield return new object[] { "StartSnapshotSet", 1, false, false };
            yield return new object[] { "AddToSnapshotSet", 1, true, false };
            yield return new object[] { "PrepareForBackup", 1, true, false };
            yield return new object[] { "GatherWriterStatus", 1, true, false };
            yield return new object[] { "GetWriterStatus", 1, true, false };
            yield return new object[] { "DoSnapshotSet", 1, true, false };
            yield return new object[] { "GatherWriterStatus", 2, true, true };
            yield return new object[] { "GetWriterStatus", 2, true, true };
            yield return new object[] { "GetSnapshotProperties", 1, true, true };
            yield return new object[] { "SetBackupSucceeded", 1, true, true };
            yield return new object[] { "BackupComplete", 1, true, true };
        }

        [Theory]
        [MemberData(nameof(FailurePoints))]
        public void AFailedCallAbortsWhenVssNeedsItDeletesShadowCopiesThatExistAndReleasesEverything(string method, int occurrence, bool abortExpected, bool deleteExpected)
        {
            var fake = new FakeVss().FailOn(method, ProviderVeto, occurrence);

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Equal("VssProviderVeto", failure.ErrorId);
            Assert.Contains(method, failure.Message, StringComparison.Ordinal);
            Assert.Contains("0x80042306 (VSS_E_PROVIDER_VETO", failure.Message, StringComparison.Ordinal);
            Assert.Equal("Web server", failure.Target);
            AssertCleanedUp(fake, method, occurrence, abortExpected, deleteExpected);
        }

        [Theory]
        [MemberData(nameof(FailurePoints))]
        public void AnAsynchronousFailureOrTheSameCallFailingCleansUpTheSameWay(string method, int occurrence, bool abortExpected, bool deleteExpected)
        {
            bool isAsync = method is "GatherWriterMetadata" or "PrepareForBackup" or "GatherWriterStatus" or "DoSnapshotSet" or "BackupComplete";
            var fake = isAsync ? new FakeVss().FailAsync(method, ProviderVeto, occurrence) : new FakeVss().FailOn(method, AccessDenied, occurrence);

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Equal(isAsync ? "VssProviderVeto" : "VssAccessDenied", failure.ErrorId);
            AssertCleanedUp(fake, method, occurrence, abortExpected, deleteExpected);
        }

        private static void AssertCleanedUp(FakeVss fake, string method, int occurrence, bool abortExpected, bool deleteExpected)
        {
            int failedAt = IndexOfOccurrence(fake.Calls, method, occurrence);
            List<string> after = fake.Calls.Skip(failedAt + 1).ToList();
            var expected = new List<string>();
            if (abortExpected)
            {
                expected.Add("AbortBackup");
            }

            if (deleteExpected)
            {
                expected.Add("DeleteSnapshots");
            }

            expected.Add("Release");
            Assert.Equal(expected, after);
            Assert.Equal(0, fake.LiveObjects);
            Assert.Equal(1, fake.ComponentsReleased);
        }

        private static int IndexOfOccurrence(List<string> calls, string method, int occurrence)
        {
            int seen = 0;
            for (int index = 0; index < calls.Count; index++)
            {
                if (calls[index] == method || calls[index].StartsWith(method + "(", StringComparison.Ordinal))
                {
                    if (++seen == occurrence)
                    {
                        return index;
                    }
                }
            }

            throw new InvalidOperationException($"{method} #{occurrence} was not called.");
        }

        [Fact]
        public void WriterStatusFailingAfterBackupCompleteIsAWarningAndTheRunStillSucceeds()
        {
            var fake = new FakeVss().FailOn("GetWriterStatus", ProviderVeto, 3);
            var warnings = new List<string>();

            RunToTheEnd(fake, warnings: warnings);

            Assert.Equal(new[] { "GetWriterStatus", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 3));
            Assert.DoesNotContain("AbortBackup", fake.Calls);
            Assert.Contains(warnings, w => w.Contains("VSS_E_PROVIDER_VETO", StringComparison.Ordinal));
        }

        [Fact]
        public void DeleteSnapshotsFailingAfterASuccessfulBackupIsAWarningWithWhatToRun()
        {
            var fake = new FakeVss().FailOn("DeleteSnapshots", ProviderVeto);
            var warnings = new List<string>();

            RunToTheEnd(fake, warnings: warnings);

            Assert.Equal("Release", fake.Calls.Last());
            Assert.Contains(warnings, w => w.Contains("vssadmin delete shadows /shadow=", StringComparison.Ordinal));
            Assert.Equal(0, fake.LiveObjects);
        }

        [Fact]
        public void CleanupFailuresDoNotHideTheFirstErrorNorSkipTheRelease()
        {
            var fake = new FakeVss().FailOn("GetSnapshotProperties", ProviderVeto).FailOn("AbortBackup", AccessDenied).FailOn("DeleteSnapshots", AccessDenied);
            var warnings = new List<string>();

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake, warnings: warnings));

            Assert.Equal("VssProviderVeto", failure.ErrorId);
            Assert.Equal(new[] { "AbortBackup", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 3));
            Assert.Contains(warnings, w => w.Contains("AbortBackup", StringComparison.Ordinal));
            Assert.Equal(0, fake.LiveObjects);
        }

        [Fact]
        public void CompleteWithoutSuccessAbortsAndDeletesTheShadowCopies()
        {
            var fake = new FakeVss();

            using (VssSnapshotSession session = Open(fake))
            {
                session.Complete(false, CancellationToken.None);
                session.Complete(true, CancellationToken.None);
            }

            Assert.Equal(new[] { "GetSnapshotProperties", "AbortBackup", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 4));
            Assert.DoesNotContain(fake.Calls, c => c.StartsWith("SetBackupSucceeded", StringComparison.Ordinal));
        }

        [Fact]
        public void DisposingWithoutCompleteIsAFailure()
        {
            var fake = new FakeVss();

            Open(fake).Dispose();

            Assert.Equal(new[] { "AbortBackup", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 3));
            Assert.Equal(0, fake.LiveObjects);
        }

        [Theory]
        [InlineData(FlushWritesTimeout, "VSS_E_FLUSH_WRITES_TIMEOUT")]
        [InlineData(HoldWritesTimeout, "VSS_E_HOLD_WRITES_TIMEOUT")]
        public void FlushOrHoldWritesTimeoutIsADistinctTimeoutWithTheRetryAdvice(int hresult, string name)
        {
            var fake = new FakeVss().FailAsync("DoSnapshotSet", hresult);

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Equal(VssErrors.FreezeTimeoutId, failure.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, failure.Kind);
            Assert.Contains(name, failure.Message, StringComparison.Ordinal);
            Assert.Contains("up to 3 times", failure.Remedy, StringComparison.Ordinal);
            Assert.Equal(new[] { "DoSnapshotSet", "AbortBackup", "Release" }, fake.Calls.Skip(fake.Calls.Count - 3));
        }

        [Theory]
        [InlineData("GatherWriterMetadata", false)]
        [InlineData("PrepareForBackup", true)]
        [InlineData("DoSnapshotSet", true)]
        [InlineData("BackupComplete", true)]
        public void AnOperationThatDoesNotFinishInTimeIsCancelledAndReportedAsATimeout(string method, bool abortExpected)
        {
            var fake = new FakeVss().NeverFinish(method);
            VssSnapshotRequest request = Request();
            var quick = new VssSnapshotRequest
            {
                Writer = request.Writer, VmNames = request.VmNames, Paths = request.Paths, Target = request.Target, PollInterval = TimeSpan.Zero,
                OperationTimeout = TimeSpan.Zero, SnapshotTimeout = TimeSpan.Zero,
            };

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake, quick));

            Assert.Equal("VssOperationTimeout", failure.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, failure.Kind);
            Assert.Contains(method, failure.Message, StringComparison.Ordinal);
            Assert.Contains(method + ".Cancel", fake.Calls);
            Assert.Equal(abortExpected, fake.Calls.Contains("AbortBackup"));
            Assert.Equal("Release", fake.Calls.Last());
            Assert.Equal(0, fake.LiveObjects);
        }

        [Fact]
        public void CtrlCWhileAnOperationIsPendingCancelsItAbortsAndReleases()
        {
            var fake = new FakeVss().NeverFinish("PrepareForBackup");
            using var stop = new CancellationTokenSource();
            stop.Cancel();

            Assert.ThrowsAny<OperationCanceledException>(() => Open(fake, cancel: stop.Token));

            Assert.Equal(new[] { "PrepareForBackup", "PrepareForBackup.Cancel", "AbortBackup", "Release" }, fake.Calls.Skip(fake.Calls.Count - 4));
            Assert.Equal(0, fake.LiveObjects);
        }

        [Fact]
        public void AnOperationCancelledByVssIsReportedAsStopped()
        {
            var fake = new FakeVss().FailAsync("PrepareForBackup", VssConstants.AsyncCancelled);

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Equal("VssOperationCancelled", failure.ErrorId);
            Assert.Equal(FailureKind.OperationStopped, failure.Kind);
        }

        [Theory]
        [InlineData(1, "PrepareForBackup", VssWriterState.FailedAtPrepareBackup)]
        [InlineData(2, "DoSnapshotSet", VssWriterState.FailedAtFreeze)]
        public void TheVmWriterInAFailedStateStopsTheRunNamingWriterStateLastErrorAndService(int gather, string after, VssWriterState state)
        {
            var fake = new FakeVss { WriterState = (n, writer) => n == gather && writer == "VMware VSS Writer" ? (state, WriterTimeout) : (VssWriterState.Stable, 0) };

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Equal("VssWriterFailed", failure.ErrorId);
            Assert.Contains("'VMware VSS Writer'", failure.Message, StringComparison.Ordinal);
            Assert.Contains(state.ToString(), failure.Message, StringComparison.Ordinal);
            Assert.Contains("0x800423F2 (VSS_E_WRITERERROR_TIMEOUT", failure.Message, StringComparison.Ordinal);
            Assert.Contains("'vmvss' service", failure.Message, StringComparison.Ordinal);
            Assert.Contains("after " + after, failure.Message, StringComparison.Ordinal);
            Assert.Contains("Restart-Service vmvss", failure.Remedy, StringComparison.Ordinal);
            Assert.Contains("AbortBackup", fake.Calls);
            Assert.Equal("Release", fake.Calls.Last());
        }

        [Fact]
        public void AFailedWriterWhoseServiceIsUnknownSaysSo()
        {
            var fake = new FakeVss { WriterState = (_, writer) => writer == "VMware VSS Writer" ? (VssWriterState.FailedAtIdentify, 0) : (VssWriterState.Stable, 0) };
            fake.ServicesByDisplayName.Clear();

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Contains("an unknown service", failure.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void AWriterFailureAlsoCarriesTheComSecurityNote()
        {
            var fake = new FakeVss
            {
                ComSecurityNote = "COM security was already set (RPC_E_TOO_LATE).",
                WriterState = (_, writer) => writer == "VMware VSS Writer" ? (VssWriterState.FailedAtPrepareBackup, AccessDenied) : (VssWriterState.Stable, 0),
            };

            var failure = Assert.Throws<VmQuiesceException>(() => RunToTheEnd(fake));

            Assert.Contains("RPC_E_TOO_LATE", failure.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void AFailedWriterThatDoesNotTakePartIsAWarning()
        {
            var fake = new FakeVss { WriterState = (_, writer) => writer == "System Writer" ? (VssWriterState.FailedAtFreeze, WriterTimeout) : (VssWriterState.Stable, 0) };
            var warnings = new List<string>();

            RunToTheEnd(fake, warnings: warnings);

            Assert.Equal(SuccessfulRun, fake.Calls);
            Assert.Contains(warnings, w => w.Contains("'System Writer'", StringComparison.Ordinal) && w.Contains("'CryptSvc' service", StringComparison.Ordinal));
        }

        [Fact]
        public void A32BitProcessOn64BitWindowsIsRefusedBeforeVssIsAskedAnything()
        {
            var fake = new FakeVss { Is32BitProcessOn64BitWindows = true };

            var failure = Assert.Throws<VmQuiesceException>(() => Open(fake));

            Assert.Equal("VssWow64NotSupported", failure.ErrorId);
            Assert.Equal(FailureKind.NotSupported, failure.Kind);
            Assert.Contains("32-bit", failure.Message, StringComparison.Ordinal);
            Assert.Contains("64-bit PowerShell", failure.Remedy, StringComparison.Ordinal);
            Assert.Empty(fake.Calls);
        }

        [Fact]
        public void AProcessWithoutBackupRightsIsRefusedBeforeVssIsAskedAnything()
        {
            var fake = new FakeVss { HasBackupRights = false };

            var failure = Assert.Throws<VmQuiesceException>(() => Open(fake));

            Assert.Equal("VssRequiresElevation", failure.ErrorId);
            Assert.Equal(FailureKind.PermissionDenied, failure.Kind);
            Assert.Contains("Backup Operator", failure.Message, StringComparison.Ordinal);
            Assert.Empty(fake.Calls);
        }

        [Fact]
        public void CreateFailingIsMappedAndNothingIsReleased()
        {
            var fake = new FakeVss { CreateFailure = AccessDenied };

            var failure = Assert.Throws<VmQuiesceException>(() => Open(fake));

            Assert.Equal("VssAccessDenied", failure.ErrorId);
            Assert.Contains("CreateVssBackupComponents", failure.Message, StringComparison.Ordinal);
            Assert.Equal(new[] { "Create" }, fake.Calls);
        }

        [Fact]
        public void AVmTheWriterDoesNotKnowStopsTheRunBeforeAnyShadowCopyWhenApplicationConsistencyIsRequired()
        {
            var fake = new FakeVss();

            var failure = Assert.Throws<VmQuiesceException>(() => Open(fake, Request("unknown vm", paths: new[] { "D:\\VMs\\other\\other.vmx" })));

            Assert.Equal("ConsistencyNotReached", failure.ErrorId);
            Assert.Contains("'unknown vm'", failure.Message, StringComparison.Ordinal);
            Assert.Contains("'Web server'", failure.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("StartSnapshotSet", fake.Calls);
            Assert.Equal("Release", fake.Calls.Last());
        }

        [Fact]
        public void AMissingWriterIsAWarningWhenFileSystemConsistencyIsAccepted()
        {
            var fake = new FakeVss();
            fake.Writers.RemoveAll(w => w.Name == "VMware VSS Writer");
            var warnings = new List<string>();

            using VssSnapshotSession session = Open(fake, Request(require: false), warnings);

            Assert.Empty(session.SelectedComponents);
            Assert.DoesNotContain(fake.Calls, c => c.StartsWith("AddComponent", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("'VMware VSS Writer' is not on this machine", StringComparison.Ordinal));
        }

        [Fact]
        public void ListingWritersGathersMetadataThenStatusAndReleases()
        {
            var fake = new FakeVss { WriterState = (_, writer) => writer == "System Writer" ? (VssWriterState.FailedAtFreeze, WriterTimeout) : (VssWriterState.Stable, 0) };

            IReadOnlyList<VssWriterInfo> writers = VssSnapshotSession.ListWriters(fake, new VssSnapshotRequest { PollInterval = TimeSpan.Zero }, null, null, CancellationToken.None);

            Assert.Equal(new[] { "Create", "InitializeForBackup", "SetContext(0)", "SetBackupState(True,False,Copy,False)", "GatherWriterMetadata", "GatherWriterStatus", "GetWriterStatus", "Release" }, fake.Calls);
            Assert.Equal(new[] { "System Writer", "VMware VSS Writer", "Microsoft Hyper-V VSS Writer" }, writers.Select(w => w.Name));
            VssWriterInfo system = writers[0];
            Assert.True(system.Failed);
            Assert.Equal("VSS_E_WRITERERROR_TIMEOUT", system.LastErrorName);
            Assert.Equal("CryptSvc", system.Service);
            Assert.Equal("vmms", writers[2].Service);
            Assert.Equal("vmvss", writers[1].Service);
            Assert.Equal(0, fake.LiveObjects);
        }
    }
}
