using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class VssDiagnosticsTests
    {
        private const string VmWriter = "VMware VSS Writer";
        private static readonly DateTime Started = new DateTime(2026, 11, 24, 12, 0, 0, DateTimeKind.Utc);
        private static readonly DateTime Read = Started.AddSeconds(5);
        private static readonly TimeSpan SnapshotDuration = TimeSpan.FromMilliseconds(4800);
        private static readonly Guid OurSet = FakeVss.SnapshotSetId;

        private static VssDiagnosticValue Record(string source, string name, double millisecondsAfterStart, Guid? set = null, bool enter = false, int size = 72) =>
            FakeVss.DiagnosticRecord(source, name, Started.AddMilliseconds(millisecondsAfterStart), set ?? OurSet, enter, size);

        private static VssFrozenWindow Measure(IReadOnlyCollection<string> writers, params VssDiagnosticValue[] values) =>
            VssFrozenWindow.FromRecords(values, OurSet, writers, Started, Read, SnapshotDuration);

        [Theory]
        [InlineData(72)]
        [InlineData(64)]
        public void ARecordOfA64Or32BitProcessParsesToItsOperationPhaseTimeAndSet(int size)
        {
            VssDiagnosticValue value = Record(VmWriter, "FREEZE (Enter)", 1234.5, size: size);

            VssDiagnosticEvent? parsed = VssDiagnosticEvent.Parse(value, out string? problem);

            Assert.Null(problem);
            Assert.NotNull(parsed);
            Assert.Equal(VmWriter, parsed!.Source);
            Assert.Equal(VssDiagnosticEvent.Freeze, parsed.Operation);
            Assert.True(parsed.IsEnter);
            Assert.Equal(Started.AddMilliseconds(1234.5), parsed.TimeUtc);
            Assert.Equal(4242, parsed.ProcessId);
            Assert.Equal(OurSet, parsed.SnapshotSetId);
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void AValueNameWithoutAPhaseTakesThePhaseFromTheRecordsFlags(bool enter)
        {
            VssDiagnosticEvent? parsed = VssDiagnosticEvent.Parse(Record(VmWriter, "THAW", 10, enter: enter), out _);

            Assert.Equal(VssDiagnosticEvent.Thaw, parsed!.Operation);
            Assert.Equal(enter, parsed.IsEnter);
        }

        [Fact]
        public void TheNamesSuffixOutranksTheFlags()
        {
            VssDiagnosticEvent? parsed = VssDiagnosticEvent.Parse(Record(VmWriter, "THAW (Leave)", 10, enter: true), out _);

            Assert.False(parsed!.IsEnter);
        }

        [Fact]
        public void BytesThatAreNotARecordAreRefusedNamingTheValue()
        {
            byte[] shortData = Record(VmWriter, "FREEZE (Enter)", 0).Data.Take(40).ToArray();
            byte[] wrongSize = Record(VmWriter, "FREEZE (Enter)", 0).Data;
            BitConverter.GetBytes(80).CopyTo(wrongSize, 0);
            byte[] noTime = Record(VmWriter, "FREEZE (Enter)", 0).Data;
            BitConverter.GetBytes(12345L).CopyTo(noTime, 8);

            foreach (byte[] data in new[] { shortData, wrongSize, noTime })
            {
                Assert.Null(VssDiagnosticEvent.Parse(new VssDiagnosticValue(VmWriter, "FREEZE (Enter)", data), out string? problem));
                Assert.Contains("'VMware VSS Writer\\FREEZE (Enter)'", problem, StringComparison.Ordinal);
            }
        }

        [Fact]
        public void TheWritersFreezeEnteredToThawLeftIsTheFrozenWindow()
        {
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "PREPARESNAPSHOT (Enter)", 100, enter: true),
                Record(VmWriter, "FREEZE (Enter)", 2000, enter: true),
                Record(VmWriter, "FREEZE (Leave)", 2100),
                Record(VmWriter, "THAW (Enter)", 2400, enter: true),
                Record(VmWriter, "THAW (Leave)", 2437.5),
                Record("Lovelace(D:)", "IOCTL_FLUSH_AND_HOLD (Enter)", 2150, enter: true),
                Record("Lovelace(D:)", "IOCTL_RELEASE (Leave)", 2300));

            Assert.Equal(437.5, window.Milliseconds, 3);
            Assert.Equal(FrozenMeasure.VssWriterEvents, window.Measure);
            Assert.Contains("437.5 ms", window.Explanation, StringComparison.Ordinal);
            Assert.Contains("4800.0 ms", window.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void TheWriterIsFoundByNameWhateverItsCase()
        {
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record("vmware vss writer", "FREEZE (Enter)", 10, enter: true),
                Record("VMWARE VSS WRITER", "THAW (Leave)", 30));

            Assert.Equal(20, window.Milliseconds, 3);
        }

        [Fact]
        public void WithoutAWriterTheLongestVolumeHoldIsTheFrozenWindowWhateverIdTheVolumeRecordsCarry()
        {
            var instance = Guid.NewGuid();
            VssFrozenWindow window = Measure(Array.Empty<string>(),
                Record("Lovelace(C:)", "IOCTL_FLUSH_AND_HOLD (Enter)", 1000, instance, enter: true),
                Record("Lovelace(C:)", "IOCTL_RELEASE (Leave)", 1040, instance),
                Record("Lovelace(D:)", "IOCTL_FLUSH_AND_HOLD (Enter)", 1001, instance, enter: true),
                Record("Lovelace(D:)", "IOCTL_RELEASE (Leave)", 1091, instance));

            Assert.Equal(90, window.Milliseconds, 3);
            Assert.Equal(FrozenMeasure.VssHoldWritesEvents, window.Measure);
        }

        [Fact]
        public void RecordsOfAnotherSnapshotSetLeaveTheUpperBoundAndSayWhy()
        {
            var otherSet = Guid.NewGuid();
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "FREEZE (Enter)", 10, otherSet, enter: true),
                Record(VmWriter, "THAW (Leave)", 30, otherSet));

            Assert.Equal(SnapshotDuration.TotalMilliseconds, window.Milliseconds);
            Assert.Equal(FrozenMeasure.DoSnapshotSetDuration, window.Measure);
            Assert.Contains("upper bound", window.Explanation, StringComparison.Ordinal);
            Assert.Contains("no FREEZE (Enter) of this snapshot set for the writer 'VMware VSS Writer'", window.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void RecordsStampedBeforeDoSnapshotSetAreAnEarlierBackupsAndAreNotCounted()
        {
            // An earlier snapshot's records without a set id: only their time tells them apart.
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "FREEZE (Enter)", -60_000, Guid.Empty, enter: true),
                Record(VmWriter, "THAW (Leave)", 30, Guid.Empty));

            Assert.Equal(FrozenMeasure.DoSnapshotSetDuration, window.Measure);
            Assert.Contains("FREEZE (Enter)", window.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void RecordsWithinTheClockSlackOfDoSnapshotSetAreCounted()
        {
            double slack = VssFrozenWindow.ClockSlack.TotalMilliseconds;
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "FREEZE (Enter)", -slack + 1, Guid.Empty, enter: true),
                Record(VmWriter, "THAW (Leave)", (Read - Started).TotalMilliseconds + slack - 1, Guid.Empty));

            Assert.Equal(FrozenMeasure.VssWriterEvents, window.Measure);
        }

        [Fact]
        public void AThawLeftBeforeTheFreezeWasEnteredIsNotAWindow()
        {
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "FREEZE (Enter)", 300, enter: true),
                Record(VmWriter, "THAW (Leave)", 200));

            Assert.Equal(FrozenMeasure.DoSnapshotSetDuration, window.Measure);
            Assert.Contains("leaving THAW", window.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void OnlyTheThawsLeavingEndsTheWindow()
        {
            VssFrozenWindow window = Measure(new[] { VmWriter },
                Record(VmWriter, "FREEZE (Enter)", 100, enter: true),
                Record(VmWriter, "THAW (Enter)", 200, enter: true));

            Assert.Equal(FrozenMeasure.DoSnapshotSetDuration, window.Measure);
            Assert.Contains("no THAW (Leave)", window.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void ValuesThatAreNotRecordsAreReportedButDoNotSpoilTheOthers()
        {
            var junk = new VssDiagnosticValue("Odd Writer", "FREEZE (Enter)", new byte[] { 1, 2, 3 });

            VssFrozenWindow measured = VssFrozenWindow.FromRecords(
                new[] { junk, Record(VmWriter, "FREEZE (Enter)", 10, enter: true), Record(VmWriter, "THAW (Leave)", 25) },
                OurSet, new[] { VmWriter }, Started, Read, SnapshotDuration);
            VssFrozenWindow unmeasured = VssFrozenWindow.FromRecords(new[] { junk }, OurSet, new[] { VmWriter }, Started, Read, SnapshotDuration);

            Assert.Equal(15, measured.Milliseconds, 3);
            Assert.Contains("1 value(s) were not VSS diagnostic records", unmeasured.Explanation, StringComparison.Ordinal);
            Assert.Contains("Odd Writer", unmeasured.Explanation, StringComparison.Ordinal);
        }

        [Fact]
        public void TheBackupRecordsTheWindowFromTheWritersRecordsMadeDuringDoSnapshotSet()
        {
            var verbose = new List<string>();
            var fake = new FakeVss
            {
                OnDoSnapshotSet = vss =>
                {
                    DateTime now = DateTime.UtcNow;
                    vss.Diagnostics.Add(FakeVss.DiagnosticRecord(VmWriter, "FREEZE (Enter)", now, FakeVss.SnapshotSetId, true));
                    vss.Diagnostics.Add(FakeVss.DiagnosticRecord(VmWriter, "THAW (Leave)", now.AddMilliseconds(12.5), FakeVss.SnapshotSetId, false));
                },
            };

            using IConsistentView view = new HostVssSource("Web server", HostVssWriter.VMware, new[] { "D:\\VMs\\web\\web.vmx" }, VssBackupType.Copy, new OperationHost(verbose: verbose.Add), fake)
                .OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.Equal(12.5, view.Quiesce.FrozenMilliseconds, 3);
            Assert.Equal(FrozenMeasure.VssWriterEvents, view.Quiesce.FrozenMeasure);
            Assert.Contains(verbose, line => line.StartsWith("Frozen for 12.5 ms by VSS's diagnostic records", StringComparison.Ordinal));
        }

        [Fact]
        public void UnreadableRecordsLeaveDoSnapshotSetsDurationAndTheReasonInVerboseOutput()
        {
            var verbose = new List<string>();
            var fake = new FakeVss
            {
                DiagnosticsFailure = new VmQuiesceException("RegistryReadFailed", FailureKind.ReadError, "Could not read HKLM\\SYSTEM\\CurrentControlSet\\Services\\VSS\\Diag: Win32 error 5.", "Diag"),
            };

            using IConsistentView view = new HostVssSource("Web server", HostVssWriter.VMware, new[] { "D:\\VMs\\web\\web.vmx" }, VssBackupType.Copy, new OperationHost(verbose: verbose.Add), fake)
                .OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.Equal(FrozenMeasure.DoSnapshotSetDuration, view.Quiesce.FrozenMeasure);
            Assert.True(view.Quiesce.FrozenMilliseconds >= 0);
            Assert.Contains(verbose, line => line.Contains("Win32 error 5", StringComparison.Ordinal));
            Assert.Contains(verbose, line => line.Contains("an upper bound", StringComparison.Ordinal));
        }
    }
}
