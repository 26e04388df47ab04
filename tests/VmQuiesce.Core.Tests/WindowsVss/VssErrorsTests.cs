using System;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class VssErrorsTests
    {
        [Theory]
        [InlineData(0x80042301, "VSS_E_BAD_STATE", "VssBadState", FailureKind.InvalidOperation)]
        [InlineData(0x80042306, "VSS_E_PROVIDER_VETO", "VssProviderVeto", FailureKind.ResourceUnavailable)]
        [InlineData(0x80042308, "VSS_E_OBJECT_NOT_FOUND", "VssObjectNotFound", FailureKind.ObjectNotFound)]
        [InlineData(0x8004230C, "VSS_E_VOLUME_NOT_SUPPORTED", "VssVolumeNotSupported", FailureKind.NotSupported)]
        [InlineData(0x80042313, "VSS_E_FLUSH_WRITES_TIMEOUT", "VssFreezeTimeout", FailureKind.OperationTimeout)]
        [InlineData(0x80042314, "VSS_E_HOLD_WRITES_TIMEOUT", "VssFreezeTimeout", FailureKind.OperationTimeout)]
        [InlineData(0x80042316, "VSS_E_SNAPSHOT_SET_IN_PROGRESS", "VssSnapshotInProgress", FailureKind.ResourceBusy)]
        [InlineData(0x80042317, "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED", "VssTooManySnapshots", FailureKind.LimitsExceeded)]
        [InlineData(0x80042318, "VSS_E_WRITER_INFRASTRUCTURE", "VssWriterInfrastructure", FailureKind.ResourceUnavailable)]
        [InlineData(0x80042319, "VSS_E_WRITER_NOT_RESPONDING", "VssWriterNotResponding", FailureKind.OperationTimeout)]
        [InlineData(0x8004231F, "VSS_E_INSUFFICIENT_STORAGE", "VssInsufficientStorage", FailureKind.LimitsExceeded)]
        [InlineData(0x800423F0, "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT", "VssWriterInconsistentSnapshot", FailureKind.InvalidData)]
        [InlineData(0x800423F1, "VSS_E_WRITERERROR_OUTOFRESOURCES", "VssWriterOutOfResources", FailureKind.LimitsExceeded)]
        [InlineData(0x800423F2, "VSS_E_WRITERERROR_TIMEOUT", "VssWriterTimeout", FailureKind.OperationTimeout)]
        [InlineData(0x800423F3, "VSS_E_WRITERERROR_RETRYABLE", "VssWriterRetryable", FailureKind.ResourceBusy)]
        [InlineData(0x800423F4, "VSS_E_WRITERERROR_NONRETRYABLE", "VssWriterNonRetryable", FailureKind.InvalidOperation)]
        [InlineData(0x800423F5, "VSS_E_WRITERERROR_RECOVERY_FAILED", "VssWriterRecoveryFailed", FailureKind.InvalidOperation)]
        [InlineData(0x80070005, "E_ACCESSDENIED", "VssAccessDenied", FailureKind.PermissionDenied)]
        public void EachKnownHResultHasItsNameMeaningKindAndStableId(uint hresult, string name, string errorId, FailureKind kind)
        {
            int code = unchecked((int)hresult);

            VmQuiesceException failure = VssErrors.ToException(code, "DoSnapshotSet", "vm1");

            Assert.Equal(name, VssErrors.NameOf(code));
            Assert.Equal(errorId, failure.ErrorId);
            Assert.Equal(kind, failure.Kind);
            Assert.Equal("vm1", failure.Target);
            Assert.Equal($"VSS DoSnapshotSet failed with 0x{hresult:X8} ({name}: {VssErrors.MeaningOf(code)}).", failure.Message);
            Assert.False(string.IsNullOrWhiteSpace(VssErrors.MeaningOf(code)));
        }

        [Fact]
        public void OnlyFlushAndHoldWritesTimeoutsAreTheFreezeTimeout()
        {
            Assert.Equal(VssErrors.FreezeTimeoutId, VssErrors.ToException(unchecked((int)0x80042313), "DoSnapshotSet", null).ErrorId);
            Assert.NotEqual(VssErrors.FreezeTimeoutId, VssErrors.ToException(unchecked((int)0x800423F2), "DoSnapshotSet", null).ErrorId);
            Assert.NotEqual(VssErrors.FreezeTimeoutId, VssErrors.ToException(unchecked((int)0x80042319), "DoSnapshotSet", null).ErrorId);
        }

        [Fact]
        public void AnUnknownHResultKeepsItsCodeAndAGenericId()
        {
            VmQuiesceException failure = VssErrors.ToException(unchecked((int)0x8004FFFF), "PrepareForBackup", null);

            Assert.Equal("VssOperationFailed", failure.ErrorId);
            Assert.Equal("0x8004FFFF", VssErrors.NameOf(unchecked((int)0x8004FFFF)));
            Assert.Contains("0x8004FFFF", failure.Message, System.StringComparison.Ordinal);
        }

        [Fact]
        public void AWin32HResultNamesTheWindowsError()
        {
            Assert.StartsWith("Windows error 2: ", VssErrors.MeaningOf(unchecked((int)0x80070002)), System.StringComparison.Ordinal);
        }

        [Fact]
        public void NoErrorReadsAsSOk()
        {
            Assert.Equal("0x00000000 (S_OK: no error)", VssErrors.Format(0));
        }

        [Theory]
        [InlineData(-5.0, 0u)]
        [InlineData(0.0, 0u)]
        [InlineData(0.4, 1u)]
        [InlineData(250.0, 250u)]
        [InlineData(1e12, uint.MaxValue - 1)]
        public void AWaitSliceBecomesWholeMillisecondsThatNeverMeanInfinite(double milliseconds, uint expected)
        {
            Assert.Equal(expected, VssConstants.WaitMilliseconds(TimeSpan.FromMilliseconds(milliseconds)));
        }

        [Fact]
        public void AnInfiniteWaitSliceIsInfinite()
        {
            Assert.Equal(uint.MaxValue, VssConstants.WaitMilliseconds(System.Threading.Timeout.InfiniteTimeSpan));
        }
    }
}
