using System;
using System.Management.Automation;
using System.Threading;
using VmQuiesce.Core;

namespace VmQuiesce
{
    /// <summary>
    /// Base of every VmQuiesce cmdlet: turns StopProcessing (Ctrl+C) into a CancellationToken the
    /// core observes, and turns core failures into ErrorRecords with stable ids and real targets.
    /// </summary>
    public abstract class VmQuiesceCmdlet : PSCmdlet, IDisposable
    {
        private readonly CancellationTokenSource _stopping = new CancellationTokenSource();
        private bool _disposed;

        /// <summary>Cancelled when the user presses Ctrl+C or the pipeline is stopped.</summary>
        protected CancellationToken CancelToken => _stopping.Token;

        protected override void StopProcessing() => _stopping.Cancel();

        /// <summary>Non-terminating: this item failed, the others go on.</summary>
        protected void WriteFailure(VmQuiesceException failure) => WriteError(ErrorRecordFor(failure));

        /// <summary>Terminating: continuing would be wrong.</summary>
        protected void ThrowFailure(VmQuiesceException failure) => ThrowTerminatingError(ErrorRecordFor(failure));

        /// <summary>Terminating error for an invalid parameter combination, before anything changes.</summary>
        protected void ThrowInvalidArgument(string errorId, string message, object? target) =>
            ThrowFailure(new VmQuiesceException(errorId, FailureKind.InvalidArgument, message, target));

        /// <summary>Fills a progress bar from bytes moved: status with sizes and rate, percent, seconds left.</summary>
        internal static ProgressRecord ShowTransfer(ProgressRecord record, TransferProgress report)
        {
            if (report.BytesTotal <= 0)
            {
                record.StatusDescription = report.Status;
                return record;
            }

            record.StatusDescription = $"{report.Status}: {Units.Bytes(report.BytesDone)} of {Units.Bytes(report.BytesTotal)} at {Units.Rate(report.BytesPerSecond)}";
            record.PercentComplete = (int)Math.Min(100, report.BytesDone * 100 / report.BytesTotal);
            record.SecondsRemaining = report.TimeLeft is TimeSpan left ? (int)Math.Ceiling(left.TotalSeconds) : -1;
            return record;
        }

        /// <summary>A path as the user typed it (relative to the current location, PSDrives allowed) as a file system path.</summary>
        protected string? ResolvePath(string? path) => path == null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

        internal static ErrorRecord ErrorRecordFor(VmQuiesceException failure)
        {
            var record = new ErrorRecord(failure, failure.ErrorId, CategoryFor(failure.Kind), failure.Target);
            if (failure.Remedy != null)
            {
                record.ErrorDetails = new ErrorDetails(failure.Message) { RecommendedAction = failure.Remedy };
            }

            return record;
        }

        internal static ErrorCategory CategoryFor(FailureKind kind) => kind switch
        {
            FailureKind.InvalidArgument => ErrorCategory.InvalidArgument,
            FailureKind.InvalidData => ErrorCategory.InvalidData,
            FailureKind.InvalidOperation => ErrorCategory.InvalidOperation,
            FailureKind.ObjectNotFound => ErrorCategory.ObjectNotFound,
            FailureKind.PermissionDenied => ErrorCategory.PermissionDenied,
            FailureKind.ResourceBusy => ErrorCategory.ResourceBusy,
            FailureKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
            FailureKind.OperationTimeout => ErrorCategory.OperationTimeout,
            FailureKind.OperationStopped => ErrorCategory.OperationStopped,
            FailureKind.ReadError => ErrorCategory.ReadError,
            FailureKind.WriteError => ErrorCategory.WriteError,
            FailureKind.NotSupported => ErrorCategory.NotImplemented,
            FailureKind.ConnectionError => ErrorCategory.ConnectionError,
            FailureKind.ProtocolError => ErrorCategory.ProtocolError,
            FailureKind.SecurityError => ErrorCategory.SecurityError,
            FailureKind.LimitsExceeded => ErrorCategory.LimitsExceeded,
            _ => ErrorCategory.NotSpecified,
        };

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _stopping.Dispose();
            GC.SuppressFinalize(this);
        }
    }
}
