using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;

namespace VmQuiesce
{
    /// <summary>
    /// Base of every VmQuiesce cmdlet: turns StopProcessing (Ctrl+C) into a CancellationToken the
    /// core observes, turns core failures into ErrorRecords with stable ids and real targets, and is the
    /// one pump for background work: work runs on other threads and posts what it has to say; the
    /// pipeline thread alone writes it (<see cref="CreateHost"/>, <see cref="RunPumped{T}"/>, <see cref="Pump"/>).
    /// </summary>
    public abstract class VmQuiesceCmdlet : PSCmdlet, IDisposable
    {
        private readonly CancellationTokenSource _stopping = new CancellationTokenSource();
        private Thread? _pipelineThread;
        private BlockingCollection<Action>? _posted;
        private bool _disposed;
        private bool _yesToAll;
        private bool _noToAll;

        /// <summary>Cancelled when the user presses Ctrl+C or the pipeline is stopped.</summary>
        protected CancellationToken CancelToken => _stopping.Token;

        protected override void StopProcessing() => _stopping.Cancel();

        /// <summary>
        /// The host the core reports to, from any thread: warnings, verbose lines and ShouldProcess questions reach
        /// this cmdlet on the pipeline thread, and progress goes to <paramref name="showProgress"/> there. Call it
        /// on the pipeline thread.
        /// </summary>
        protected IOperationHost CreateHost(Action<TransferProgress>? showProgress = null)
        {
            _pipelineThread = Thread.CurrentThread;
            return new PipelineHost(this, showProgress);
        }

        /// <summary>
        /// Runs <paramref name="work"/> on a background thread while this (pipeline) thread writes what it posts;
        /// returns its result or throws its exception. Ctrl+C cancels <see cref="CancelToken"/>, which the work observes.
        /// </summary>
        protected T RunPumped<T>(Func<T> work)
        {
            Task<T>? running = null;
            Pump(() => running = Task.Run(work));
            return running!.GetAwaiter().GetResult();
        }

        /// <summary>
        /// Starts background work and writes what it posts until it is done. After Ctrl+C the pipeline refuses
        /// writes; the pump goes on draining, so the work finishes its cleanup and its warnings still reach the console.
        /// </summary>
        protected void Pump(Func<Task> start)
        {
            _pipelineThread = Thread.CurrentThread;
            var posted = new BlockingCollection<Action>();
            Volatile.Write(ref _posted, posted);
            try
            {
                start().ContinueWith(_ => posted.CompleteAdding(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                foreach (Action action in posted.GetConsumingEnumerable())
                {
                    try
                    {
                        action();
                    }
                    catch (PipelineStoppedException)
                    {
                    }
                }
            }
            finally
            {
                Volatile.Write(ref _posted, null);
            }
        }

        /// <summary>Runs <paramref name="action"/> on the pipeline thread: at once when called there, else through the pump.</summary>
        protected void Post(Action action)
        {
            if (!TryPost(action))
            {
                // Work that outlives its pump (a bug) must not write from its own thread: PowerShell would throw there.
                Trace.TraceWarning("A message posted when no pump was running was dropped.");
            }
        }

        private bool TryPost(Action action)
        {
            if (Thread.CurrentThread == _pipelineThread)
            {
                action();
                return true;
            }

            BlockingCollection<Action>? posted = Volatile.Read(ref _posted);
            if (posted == null)
            {
                return false;
            }

            try
            {
                posted.Add(action);
                return true;
            }
            catch (InvalidOperationException)
            {
                // The work this pump waited for has ended.
                return false;
            }
        }

        /// <summary>
        /// Asks <paramref name="question"/> on the pipeline thread (ShouldProcess, a script block of the user's) and
        /// waits for the answer; <paramref name="cancel"/> or Ctrl+C ends the wait with OperationCanceledException.
        /// </summary>
        protected T Ask<T>(Func<T> question, CancellationToken cancel)
        {
            if (Thread.CurrentThread == _pipelineThread)
            {
                return question();
            }

            var answer = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            bool posted = TryPost(() =>
            {
                if (cancel.IsCancellationRequested)
                {
                    answer.TrySetCanceled();
                    return;
                }

                try
                {
                    answer.TrySetResult(question());
                }
                catch (PipelineStoppedException)
                {
                    answer.TrySetCanceled();
                    throw;
                }
                catch (Exception e)
                {
                    answer.TrySetException(e);
                }
            });
            if (!posted)
            {
                throw new InvalidOperationException("A question from background work needs the pipeline thread's pump, and none is running.");
            }

            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancel, CancelToken);
            Task.WaitAny(new Task[] { answer.Task }, stopping.Token);
            return answer.Task.GetAwaiter().GetResult();
        }

        /// <summary>A warning reaches the user even after Ctrl+C: a stopping pipeline refuses it, the host's console does not.</summary>
        protected void WriteWarningEvenWhenStopping(string message)
        {
            try
            {
                WriteWarning(message);
            }
            catch (PipelineStoppedException)
            {
                Host?.UI?.WriteWarningLine(message);
            }
        }

        /// <summary>
        /// An error reaches the user even after Ctrl+C, as a warning does: the errors of a stopped command's cleanup say what
        /// it left behind (a snapshot or overlay it could not release) and what to run. A stopping pipeline refuses it; the
        /// host's error line shows it, with its id, and the stop goes on (the pump catches it).
        /// </summary>
        protected void WriteErrorEvenWhenStopping(ErrorRecord error)
        {
            try
            {
                WriteError(error);
            }
            catch (PipelineStoppedException)
            {
                string remedy = error.ErrorDetails?.RecommendedAction is string action ? " " + action : string.Empty;
                Host?.UI?.WriteErrorLine($"{MyInvocation.MyCommand.Name}: {error.FullyQualifiedErrorId}: {error}{remedy}");
                throw;
            }
        }

        /// <summary>Non-terminating: this item failed, the others go on. It reaches the user even after Ctrl+C (<see cref="WriteErrorEvenWhenStopping"/>).</summary>
        protected void WriteFailure(VmQuiesceException failure) => WriteErrorEvenWhenStopping(ErrorRecordFor(failure));

        /// <summary>Terminating: continuing would be wrong.</summary>
        protected void ThrowFailure(VmQuiesceException failure) => ThrowTerminatingError(ErrorRecordFor(failure));

        /// <summary>Terminating error for an invalid parameter combination, before anything changes.</summary>
        protected void ThrowInvalidArgument(string errorId, string message, object? target) =>
            ThrowFailure(new VmQuiesceException(errorId, FailureKind.InvalidArgument, message, target));

        /// <summary>
        /// A High-impact change inside a cmdlet whose own impact is lower (restoring over a VM's own disks, turning on
        /// overwriteSnapshots) gets its own question, with Yes to All and No to All for the rest of the pipeline.
        /// ShouldProcess already honoured -WhatIf, -Confirm (either way) and a $ConfirmPreference below High, and
        /// None means "never ask": only in the default case is the user asked again. A host that cannot ask gets
        /// ConfirmationRequired, naming -Confirm:$false, instead of a change nobody confirmed.
        /// </summary>
        protected bool ConfirmHighImpact(string target, string query, string caption)
        {
            if (MyInvocation.BoundParameters.ContainsKey("Confirm") || ConfirmPreference() != ConfirmImpact.High)
            {
                return true;
            }

            try
            {
                return ShouldContinue(query, caption, ref _yesToAll, ref _noToAll);
            }
            catch (Exception e) when (e is System.Management.Automation.Host.HostException || e is PSInvalidOperationException)
            {
                throw new VmQuiesceException("ConfirmationRequired", FailureKind.InvalidOperation,
                    $"{caption} ('{target}') needs confirmation, and this host cannot ask ({e.Message}). Nothing was changed.", target, e)
                {
                    Remedy = "In a script, confirm the change explicitly with -Confirm:$false.",
                };
            }
        }

        private ConfirmImpact ConfirmPreference()
        {
            object? value = SessionState.PSVariable.GetValue("ConfirmPreference");
            value = value is PSObject wrapped ? wrapped.BaseObject : value;
            return value is ConfirmImpact impact ? impact
                : Enum.TryParse(value?.ToString(), true, out ConfirmImpact parsed) ? parsed
                : ConfirmImpact.High;
        }

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

        /// <summary>The error id of a path that is not a file system path.</summary>
        internal const string PathNotFileSystem = "PathNotFileSystem";

        /// <summary>
        /// The path given to -<paramref name="parameterName"/> as the user typed it (relative to the current location,
        /// PSDrives allowed) as a file system path. A path of another provider (Variable:, Env:, HKLM:) or of a drive this
        /// session lacks ends the command, naming the parameter and the provider, before anything happens. For a path that
        /// holds for the whole command; one that comes with a pipeline item takes <see cref="ResolveItemFileSystemPath"/>.
        /// </summary>
        protected string ResolveFileSystemPath(string path, string parameterName)
        {
            try
            {
                return ResolveItemFileSystemPath(path, parameterName);
            }
            catch (VmQuiesceException e)
            {
                ThrowFailure(e);
                throw;
            }
        }

        /// <summary>
        /// <see cref="ResolveFileSystemPath"/> for a path that comes with a pipeline item (-Repository bound from each
        /// object): it throws the same failure as a VmQuiesceException, which the item's catch writes as a non-terminating
        /// error, so the items after it are still processed.
        /// </summary>
        protected string ResolveItemFileSystemPath(string path, string parameterName) => FileSystemPath(this, path, parameterName, PathNotFileSystem);

        /// <summary>The one path resolver: <see cref="ResolveFileSystemPath"/>, throwing a VmQuiesceException with <paramref name="errorId"/>.</summary>
        internal static string FileSystemPath(PSCmdlet cmdlet, string path, string parameterName, string errorId)
        {
            if (Core.Repository.Storage.S3RepositoryAddress.IsS3(path))
            {
                throw new VmQuiesceException("S3RepositoryNotSupported", FailureKind.NotSupported,
                    $"-{parameterName} '{path}' is on S3 object storage; {cmdlet.MyInvocation.MyCommand.Name} works on folder repositories. The cmdlets with an -S3Endpoint parameter take s3:// repositories (Get-Command -Module VmQuiesce -ParameterName S3Endpoint lists them); for the rest, copy restore points from S3 to a folder repository with Copy-VmBackup.", path);
            }

            string resolved;
            ProviderInfo provider;
            try
            {
                resolved = cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out provider, out _);
            }
            catch (Exception e) when (e is ItemNotFoundException || e is DriveNotFoundException || e is ProviderNotFoundException || e is NotSupportedException || e is ArgumentException)
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidArgument,
                    $"-{parameterName} '{path}' cannot be resolved to a file system path: {e.Message}", path, e);
            }

            if (!string.Equals(provider.Name, "FileSystem", StringComparison.OrdinalIgnoreCase))
            {
                throw new VmQuiesceException(errorId, FailureKind.InvalidArgument,
                    $"-{parameterName} '{path}' is a path of the {provider.Name} provider; expected a file system path (a folder or file on a drive).", path);
            }

            return resolved;
        }

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

        /// <summary>The cmdlet as the core sees it; progress reports that arrive faster than the pipeline thread shows them are merged (the newest wins).</summary>
        private sealed class PipelineHost : IOperationHost
        {
            private readonly VmQuiesceCmdlet _cmdlet;
            private readonly Action<TransferProgress>? _showProgress;
            private TransferProgress? _unshownProgress;

            public PipelineHost(VmQuiesceCmdlet cmdlet, Action<TransferProgress>? showProgress)
            {
                _cmdlet = cmdlet;
                _showProgress = showProgress;
            }

            public void WriteWarning(string message) => _cmdlet.Post(() => _cmdlet.WriteWarningEvenWhenStopping(message));

            public void WriteVerbose(string message) => _cmdlet.Post(() => _cmdlet.WriteVerbose(message));

            public void WriteProgress(TransferProgress progress)
            {
                if (_showProgress != null && Interlocked.Exchange(ref _unshownProgress, progress) == null)
                {
                    _cmdlet.Post(() =>
                    {
                        TransferProgress? newest = Interlocked.Exchange(ref _unshownProgress, null);
                        if (newest != null && !_cmdlet.Stopping)
                        {
                            _showProgress(newest);
                        }
                    });
                }
            }

            public bool ShouldProcess(string target, string action) => _cmdlet.Ask(() => _cmdlet.ShouldProcess(target, action), _cmdlet.CancelToken);
        }

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
