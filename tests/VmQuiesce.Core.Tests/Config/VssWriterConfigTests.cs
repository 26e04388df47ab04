using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Config;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Config
{
    public class VssWriterConfigTests
    {
        private const string OverwriteSnapshots = VssWriterConfig.OverwriteSnapshotsName;

        [Fact]
        public void AMissingFileReadsAsNotExistingWithOverwriteOff()
        {
            using var folder = new TempFolder();

            VssWriterConfig config = VssWriterConfig.Read(folder.File(VssWriterConfig.FileName));

            Assert.False(config.Exists);
            Assert.False(config.OverwriteSnapshots);
            Assert.Empty(config.Settings);
            Assert.Null(config.LastWriteTime);
        }

        [Fact]
        public void AnExistingFileShowsEverySettingAndOverwriteSnapshots()
        {
            using var folder = new TempFolder();
            string path = folder.File(VssWriterConfig.FileName);
            File.WriteAllText(path, "# ops\r\nVMWRITER.overwritesnapshots = \"true\"\r\nvmwriter.unknown = \"kept\"\r\n");

            VssWriterConfig config = VssWriterConfig.Read(path);

            Assert.True(config.Exists);
            Assert.True(config.OverwriteSnapshots);
            Assert.Equal(new[] { "VMWRITER.overwritesnapshots", "vmwriter.unknown" }, config.Settings.Select(s => s.Name));
            Assert.NotNull(config.LastWriteTime);
            Assert.Equal(path, config.ToString());
        }

        [Theory]
        [InlineData("TRUE", true)]
        [InlineData("true", true)]
        [InlineData(" Yes ", true)]
        [InlineData("on", true)]
        [InlineData("1", true)]
        [InlineData("FALSE", false)]
        [InlineData("0", false)]
        [InlineData("", false)]
        [InlineData("maybe", false)]
        [InlineData(null, false)]
        public void BooleansAreReadAsVMwareReadsThem(string? value, bool expected) => Assert.Equal(expected, VssWriterConfig.IsTrue(value));

        [Fact]
        public void ADesiredStateMustAskForSomething()
        {
            var failure = Assert.Throws<VmQuiesceException>(() => new VssWriterDesiredState(null, null));

            Assert.Equal("NothingToConfigure", failure.ErrorId);
        }

        [Theory]
        [InlineData("bad name", "1", "InvalidSettingName")]
        [InlineData("", "1", "InvalidSettingName")]
        [InlineData("a", "x\"; b = \"y", "InvalidSettingValue")]
        [InlineData("a", "line\nbreak", "InvalidSettingValue")]
        [InlineData(OverwriteSnapshots, "TRUE", "ConflictingSetting")]
        public void ADesiredStateRejectsBadSettingsWhenItIsBuilt(string name, string value, string errorId)
        {
            var failure = Assert.Throws<VmQuiesceException>(() => new VssWriterDesiredState(false, Pairs((name, value))));

            Assert.Equal(errorId, failure.ErrorId);
            Assert.Equal(FailureKind.InvalidArgument, failure.Kind);
        }

        [Fact]
        public void ASettingGivenTwiceIsRejected()
        {
            var failure = Assert.Throws<VmQuiesceException>(() => new VssWriterDesiredState(null, Pairs(("Log.Level", "1"), ("log.level", "2"))));

            Assert.Equal("DuplicateSetting", failure.ErrorId);
        }

        [Fact]
        public void OverwriteOffMatchesAMissingFileSoNothingIsCreated()
        {
            var desired = new VssWriterDesiredState(false, null);
            var document = new VmwareConfigDocument();

            Assert.Empty(desired.Compare("x.cfg", null));
            Assert.False(desired.ApplyTo(document));
            Assert.False(document.IsModified);
            Assert.False(desired.TurnsOnOverwriteSnapshots(null));
        }

        [Fact]
        public void OverwriteOnIsOneDifferenceAndOneCanonicalLine()
        {
            var desired = new VssWriterDesiredState(true, null);
            var document = new VmwareConfigDocument();

            VssWriterConfigDifference difference = Assert.Single(desired.Compare("x.cfg", null));
            Assert.Equal((OverwriteSnapshots, "TRUE", (string?)null, "x.cfg"), (difference.Setting, difference.Expected, difference.Actual, difference.Path));
            Assert.True(desired.TurnsOnOverwriteSnapshots(null));
            Assert.True(desired.ApplyTo(document));
            Assert.Equal("vmwriter.overwriteSnapshots = \"TRUE\"\r\n", document.ToText());
            Assert.Empty(desired.Compare("x.cfg", document));
            Assert.False(desired.TurnsOnOverwriteSnapshots(document));
            Assert.False(desired.ApplyTo(document));
        }

        [Fact]
        public void SettingsCompareExactlyAndNullMeansAbsent()
        {
            VmwareConfigDocument current = VmwareConfigDocument.Parse("vmwriter.overwriteSnapshots = \"yes\"\nlog = \"Verbose\"\nold = \"1\"\n", false, "x.cfg");
            var desired = new VssWriterDesiredState(true, Pairs(("LOG", "verbose"), ("old", null), ("new", "n")));

            var differences = desired.Compare("x.cfg", current).Select(d => (d.Setting, d.Expected, d.Actual)).ToList();

            Assert.Equal(new[] { ("LOG", (string?)"verbose", (string?)"Verbose"), ("old", null, "1"), ("new", "n", null) }, differences);
            Assert.False(desired.TurnsOnOverwriteSnapshots(current));
            Assert.True(desired.ApplyTo(current));
            Assert.Equal("vmwriter.overwriteSnapshots = \"yes\"\nlog = \"verbose\"\nnew = \"n\"\n", current.ToText());
            Assert.Empty(desired.Compare("x.cfg", current));
        }

        [Fact]
        public void TurningOverwriteOnThroughSettingCountsAsTurningItOn()
        {
            VmwareConfigDocument off = VmwareConfigDocument.Parse("vmwriter.overwriteSnapshots = \"FALSE\"\n", false, "x.cfg");

            Assert.True(new VssWriterDesiredState(null, Pairs(("VMWRITER.OVERWRITESNAPSHOTS", "TRUE"))).TurnsOnOverwriteSnapshots(off));
            Assert.False(new VssWriterDesiredState(null, Pairs(("vmwriter.overwriteSnapshots", null))).TurnsOnOverwriteSnapshots(off));
            Assert.False(new VssWriterDesiredState(null, Pairs(("other", "TRUE"))).TurnsOnOverwriteSnapshots(off));
        }

        [Fact]
        public void AFolderMeansTheFileInsideItAndAFileMeansItself()
        {
            using var folder = new TempFolder();
            string existing = folder.File("custom.txt");
            File.WriteAllText(existing, string.Empty);

            Assert.Equal(folder.File(VssWriterConfig.FileName), VssWriterConfigLocation.Resolve(folder.Path));
            Assert.Equal(existing, VssWriterConfigLocation.Resolve(existing));
            Assert.Equal(folder.File("new.cfg"), VssWriterConfigLocation.Resolve(folder.File("new.cfg")));
        }

        [Theory]
        [InlineData("VMware Server")]
        [InlineData("missing/vmvsswriter.cfg")]
        [InlineData("not-a-cfg-name")]
        public void APathInAFolderThatDoesNotExistIsAnError(string relative)
        {
            using var folder = new TempFolder();
            string path = Path.Combine(folder.Path, relative);

            var failure = Assert.Throws<VmQuiesceException>(() => VssWriterConfigLocation.Resolve(path));

            Assert.Equal("ConfigFolderNotFound", failure.ErrorId);
            Assert.Equal(FailureKind.ObjectNotFound, failure.Kind);
        }

        [Fact]
        public void WithoutVMwareServerTheDefaultLocationAsksForPath()
        {
            string? found = null;
            VmQuiesceException? failure = null;
            try
            {
                found = VssWriterConfigLocation.FindDefault();
            }
            catch (VmQuiesceException e)
            {
                failure = e;
            }

            if (HostPlatform.IsWindows && found != null)
            {
                // VMware Server is installed on this Windows machine: the file is in its folder.
                Assert.EndsWith(Path.DirectorySeparatorChar + VssWriterConfig.FileName, found, StringComparison.OrdinalIgnoreCase);
                return;
            }

            Assert.NotNull(failure);
            Assert.Equal("VMwareServerNotFound", failure!.ErrorId);
            Assert.Contains("-Path", failure.Message, StringComparison.Ordinal);
            if (!HostPlatform.IsWindows)
            {
                Assert.Contains(HostPlatform.Name, failure.Message, StringComparison.Ordinal);
            }
        }

        [WindowsFact]
        public void TheRegistryReaderReadsBothViewsAndReportsMissingKeysAsNull()
        {
            const string CurrentVersion = @"SOFTWARE\Microsoft\Windows NT\CurrentVersion";

            Assert.False(string.IsNullOrEmpty(WindowsRegistry.ReadLocalMachineString(CurrentVersion, "ProductName", WindowsRegistry.View.Registry64)));
            Assert.False(string.IsNullOrEmpty(WindowsRegistry.ReadLocalMachineString(CurrentVersion, "ProductName", WindowsRegistry.View.Registry32)));
            Assert.Null(WindowsRegistry.ReadLocalMachineString(CurrentVersion, "NoSuchValue-" + Guid.NewGuid(), WindowsRegistry.View.Registry64));
            Assert.Null(WindowsRegistry.ReadLocalMachineString(@"SOFTWARE\NoSuchVendor-" + Guid.NewGuid(), "InstallPath", WindowsRegistry.View.Registry32));
        }

        private static IEnumerable<KeyValuePair<string, string?>> Pairs(params (string Name, string? Value)[] pairs) =>
            pairs.Select(p => new KeyValuePair<string, string?>(p.Name, p.Value));
    }
}
