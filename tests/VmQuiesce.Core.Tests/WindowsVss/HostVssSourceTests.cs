using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class HostVssSourceTests
    {
        private static readonly string[] WebFiles = { "D:\\VMs\\web\\web.vmx", "D:\\VMs\\web\\disks\\web.vmdk" };

        private static HostVssSource Source(FakeVss fake, HostVssWriter? writer, List<string>? warnings = null, string vmName = "Web server", string[]? files = null) =>
            new HostVssSource(vmName, writer, files ?? WebFiles, VssBackupType.Copy, new OperationHost(warn: warnings == null ? null : warnings.Add), fake);

        [Fact]
        public void TheVmWritersComponentTakingPartGivesApplicationConsistencyAndShadowCopyReadPaths()
        {
            var fake = new FakeVss();

            using IConsistentView view = Source(fake, HostVssWriter.VMware).OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None);

            Assert.Equal(Consistency.Application, view.Reached);
            Assert.Equal(new[] { "web.vmx", "disks/web.vmdk" }, view.Files.Select(f => f.RelativePath));
            Assert.Equal("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\VMs\\web\\disks\\web.vmdk", view.Files[1].ReadPath);
            Assert.Equal(WebFiles, view.Files.Select(f => f.OriginalPath));
            Assert.Equal(HostVssSource.MethodName, view.Quiesce.Method);
            Assert.Equal(new[] { "VMware VSS Writer: Web server", "D:\\" }, view.Quiesce.Frozen);
            Assert.Null(view.Snapshot);
        }

        [Theory]
        [InlineData("Offline\\hv1")]
        [InlineData("Backup Using Saved State\\hv1")]
        public void AHyperVVmBackedUpBySavingItsStateIsCrashConsistentWithAWarning(string caption)
        {
            var fake = new FakeVss();
            int hyperV = fake.Writers.FindIndex(w => w.WriterId == HostVssWriter.HyperV.Id);
            fake.Writers[hyperV] = new VssWriterMetadata(FakeVss.HyperVInstance, HostVssWriter.HyperV.Id!.Value, "Microsoft Hyper-V VSS Writer", new[]
            {
                new VssComponentMetadata(VssComponentType.FileGroup, null, "5f2c3a10-0000-0000-0000-000000000000", caption, true, new[] { "E:\\Hyper-V\\hv1\\*" }),
            });
            var warnings = new List<string>();
            var source = new HostVssSource("hv1", HostVssWriter.HyperV, new[] { "E:\\Hyper-V\\hv1\\hv1.vhdx" }, VssBackupType.Copy, new OperationHost(warn: warnings.Add), fake)
            {
                WriterComponentName = "5f2c3a10-0000-0000-0000-000000000000",
            };

            Assert.Equal("ConsistencyNotReached", Assert.Throws<VmQuiesceException>(() =>
                source.OpenConsistentView(new QuiesceOptions { Required = Consistency.FileSystem }, CancellationToken.None)).ErrorId);
            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Crash }, CancellationToken.None);

            Assert.Equal(Consistency.Crash, view.Reached);
            Assert.Contains(warnings, w => w.Contains("by saving its state", StringComparison.Ordinal) && w.Contains(caption, StringComparison.Ordinal));
        }

        [Fact]
        public void AHyperVVmBackedUpOnlineIsApplicationConsistent()
        {
            var source = new HostVssSource("hv1", HostVssWriter.HyperV, new[] { "E:\\Hyper-V\\hv1\\hv1.vhdx" }, VssBackupType.Copy, null, new FakeVss())
            {
                WriterComponentName = "5f2c3a10-0000-0000-0000-000000000000",
            };

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None);

            Assert.Equal(Consistency.Application, view.Reached);
        }

        [Fact]
        public void CompleteWithSuccessFinishesTheBackupAndDeletesTheShadowCopies()
        {
            var fake = new FakeVss();
            IConsistentView view = Source(fake, HostVssWriter.VMware).OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            view.Complete(true, CancellationToken.None);
            view.Dispose();

            Assert.Equal(new[] { "SetBackupSucceeded(VMware VSS Writer,vm-42,True)", "BackupComplete", "GatherWriterStatus", "GetWriterStatus", "DeleteSnapshots", "Release" },
                fake.Calls.SkipWhile(c => c != "GetSnapshotProperties").Skip(1));
        }

        [Fact]
        public void WithoutAWriterTheShadowCopyGivesFileSystemConsistency()
        {
            var fake = new FakeVss();

            using IConsistentView view = Source(fake, null).OpenConsistentView(new QuiesceOptions { Required = Consistency.FileSystem }, CancellationToken.None);

            Assert.Equal(Consistency.FileSystem, view.Reached);
            Assert.DoesNotContain(fake.Calls, c => c.StartsWith("AddComponent", StringComparison.Ordinal));
            Assert.Equal(new[] { "D:\\" }, view.Quiesce.Frozen);
        }

        [Fact]
        public void ApplicationRequiredWithoutAWriterIsRefusedBeforeVssIsAsked()
        {
            var fake = new FakeVss();

            var failure = Assert.Throws<VmQuiesceException>(() => Source(fake, null).OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None));

            Assert.Equal("ConsistencyNotReached", failure.ErrorId);
            Assert.Contains("FileSystem", failure.Message, StringComparison.Ordinal);
            Assert.Empty(fake.Calls);
        }

        [Fact]
        public void ApplicationRequiredForAVmTheWriterDoesNotKnowIsAnErrorAndNoShadowCopyIsMade()
        {
            var fake = new FakeVss();

            var failure = Assert.Throws<VmQuiesceException>(() =>
                Source(fake, HostVssWriter.VMware, vmName: "other", files: new[] { "D:\\VMs\\other\\other.vmx" })
                    .OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None));

            Assert.Equal("ConsistencyNotReached", failure.ErrorId);
            Assert.DoesNotContain("StartSnapshotSet", fake.Calls);
            Assert.Equal("Release", fake.Calls.Last());
        }

        [Fact]
        public void AllowLowerGivesFileSystemConsistencyWithAWarning()
        {
            var fake = new FakeVss();
            var warnings = new List<string>();

            using IConsistentView view = Source(fake, HostVssWriter.VMware, warnings, "other", new[] { "D:\\VMs\\other\\other.vmx" })
                .OpenConsistentView(new QuiesceOptions { Required = Consistency.Application, AllowLower = true }, CancellationToken.None);

            Assert.Equal(Consistency.FileSystem, view.Reached);
            Assert.Contains(warnings, w => w.Contains("no component for the VM 'other'", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("below the Application asked for", StringComparison.Ordinal));
        }

        [Fact]
        public void DisposingTheViewWithoutCompleteAbortsAndDeletes()
        {
            var fake = new FakeVss();

            Source(fake, HostVssWriter.VMware).OpenConsistentView(new QuiesceOptions(), CancellationToken.None).Dispose();

            Assert.Equal(new[] { "AbortBackup", "DeleteSnapshots", "Release" }, fake.Calls.Skip(fake.Calls.Count - 3));
            Assert.Equal(0, fake.LiveObjects);
        }

        [Theory]
        [InlineData("", "D:\\VMs\\vm.vmx", "InvalidVmName")]
        [InlineData("vm", "relative\\vm.vmx", "InvalidVmFilePath")]
        [InlineData("vm", "D:\\VMs\\..\\vm.vmx", "InvalidVmFilePath")]
        [InlineData("vm", "\\\\server\\share\\vm.vmx", "InvalidVmFilePath")]
        public void BadInputIsRejectedBeforeAnything(string vmName, string file, string errorId)
        {
            var fake = new FakeVss();

            var failure = Assert.Throws<VmQuiesceException>(() => Source(fake, HostVssWriter.VMware, vmName: vmName, files: new[] { file }));

            Assert.Equal(errorId, failure.ErrorId);
            Assert.Empty(fake.Calls);
        }

        [Fact]
        public void ForwardSlashesBecomeBackslashesBecauseDevicePathsAreNotNormalized()
        {
            var fake = new FakeVss();

            using IConsistentView view = Source(fake, null, files: new[] { "D:/VMs/web/web.vmx" }).OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.Equal("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\VMs\\web\\web.vmx", view.Files[0].ReadPath);
        }

        [Fact]
        public void NoFilesIsRejected()
        {
            var failure = Assert.Throws<VmQuiesceException>(() => new HostVssSource("vm", HostVssWriter.VMware, Array.Empty<string>()));

            Assert.Equal("NoVmFiles", failure.ErrorId);
        }

        [Theory]
        [InlineData(new[] { "D:\\VMs\\a\\a.vmx" }, new[] { "a.vmx" })]
        [InlineData(new[] { "D:\\VMs\\a\\a.vmx", "D:\\VMs\\b.vmdk" }, new[] { "a/a.vmx", "b.vmdk" })]
        [InlineData(new[] { "D:\\VMs\\a.vmx", "E:\\disks\\a.vmdk" }, new[] { "D/VMs/a.vmx", "E/disks/a.vmdk" })]
        public void RestorePointPathsAreRelativeToTheFilesCommonFolder(string[] files, string[] expected)
        {
            Assert.Equal(expected, HostVssSource.RelativePaths(files));
        }

        [Fact]
        public void NoLeftoversOutliveARunBecauseBackupShadowCopiesAreAutoRelease()
        {
            Assert.Empty(Source(new FakeVss(), HostVssWriter.VMware).FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void PreFreezeRunsRightBeforeDoSnapshotSetAndPostThawRightAfter()
        {
            var fake = new FakeVss();
            var options = new QuiesceOptions { PreFreeze = _ => fake.Calls.Add("PreFreeze"), PostThaw = _ => fake.Calls.Add("PostThaw") };

            using IConsistentView view = Source(fake, HostVssWriter.VMware).OpenConsistentView(options, CancellationToken.None);

            int snapshot = fake.Calls.IndexOf("DoSnapshotSet");
            Assert.Equal(new[] { "GetWriterStatus", "PreFreeze", "DoSnapshotSet", "PostThaw", "GatherWriterStatus" }, fake.Calls.Skip(snapshot - 2).Take(5));
        }

        [Fact]
        public void PreFreezeFailingStopsBeforeAnyFreezeAndAborts()
        {
            var fake = new FakeVss();
            var options = new QuiesceOptions
            {
                PreFreeze = _ => throw new VmQuiesceException("PreFreezeScriptFailed", FailureKind.InvalidOperation, "hook failed"),
                PostThaw = _ => fake.Calls.Add("PostThaw"),
            };

            var failure = Assert.Throws<VmQuiesceException>(() => Source(fake, HostVssWriter.VMware).OpenConsistentView(options, CancellationToken.None));

            Assert.Equal("PreFreezeScriptFailed", failure.ErrorId);
            Assert.DoesNotContain("DoSnapshotSet", fake.Calls);
            Assert.DoesNotContain("PostThaw", fake.Calls);
            Assert.Equal(new[] { "AbortBackup", "Release" }, fake.Calls.Skip(fake.Calls.Count - 2));
        }

        [Fact]
        public void PostThawRunsEvenWhenDoSnapshotSetFails()
        {
            var fake = new FakeVss().FailAsync("DoSnapshotSet", unchecked((int)0x80042313));
            var options = new QuiesceOptions { PreFreeze = _ => { }, PostThaw = _ => fake.Calls.Add("PostThaw") };

            var failure = Assert.Throws<VmQuiesceException>(() => Source(fake, HostVssWriter.VMware).OpenConsistentView(options, CancellationToken.None));

            Assert.Equal(VssErrors.FreezeTimeoutId, failure.ErrorId);
            Assert.Equal(new[] { "DoSnapshotSet", "PostThaw", "AbortBackup", "Release" }, fake.Calls.Skip(fake.Calls.Count - 4));
        }

        [Fact]
        public void KeepSnapshotIsRefusedBecauseBackupShadowCopiesCannotBeKept()
        {
            var fake = new FakeVss();

            var failure = Assert.Throws<VmQuiesceException>(() => Source(fake, HostVssWriter.VMware).OpenConsistentView(new QuiesceOptions { KeepSnapshot = true }, CancellationToken.None));

            Assert.Equal("KeepSnapshotNotSupported", failure.ErrorId);
            Assert.Empty(fake.Calls);
        }

        [UnixFact]
        public void OffWindowsTheRealHostIsRefusedWithWindowsOnly()
        {
            var failure = Assert.Throws<VmQuiesceException>(() => HostVssSource.GetWriters(OperationHost.None, CancellationToken.None));

            Assert.Equal("WindowsOnly", failure.ErrorId);
            Assert.Equal(FailureKind.NotSupported, failure.Kind);
            Assert.Contains(HostPlatform.Name, failure.Message, StringComparison.Ordinal);

            var source = new HostVssSource("vm", HostVssWriter.VMware, new[] { "C:\\VMs\\vm\\vm.vmx" });
            Assert.Equal("WindowsOnly", Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None)).ErrorId);
        }
    }
}
