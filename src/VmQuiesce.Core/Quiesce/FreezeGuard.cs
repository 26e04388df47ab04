using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace VmQuiesce.Core.Quiesce
{
    /// <summary>How a <see cref="FreezeGuard"/> behaves.</summary>
    public sealed class FreezeGuardOptions
    {
        /// <summary>Longest time the guest may stay frozen, counted from the freeze request (VSS uses 10 s).</summary>
        public TimeSpan FreezeTimeout { get; init; } = TimeSpan.FromSeconds(10);

        /// <summary>Runs before the freeze (e.g. a guest-side script that pauses a database); a failure stops the run before anything is frozen.</summary>
        public Action<CancellationToken>? PreFreeze { get; init; }

        /// <summary>Runs after the thaw whenever <see cref="PreFreeze"/> ran, on every path.</summary>
        public Action<CancellationToken>? PostThaw { get; init; }

        /// <summary>How often a failing thaw is tried before the guard gives up and reports it.</summary>
        public int ThawAttempts { get; init; } = 3;

        public TimeSpan ThawRetryDelay { get; init; } = TimeSpan.FromSeconds(1);

        /// <summary>Receives loud warnings (watchdog fired, thaw failing); may be called from the watchdog thread.</summary>
        public Action<string>? Warn { get; init; }

        /// <summary>Two hooks as one step, in order; either may be absent (e.g. the host's script, then the guest's command).</summary>
        public static Action<CancellationToken>? Chain(Action<CancellationToken>? first, Action<CancellationToken>? second) =>
            first == null ? second : second == null ? first : token =>
            {
                first(token);
                second(token);
            };
    }

    /// <summary>What a guarded freeze produced.</summary>
    public sealed class FrozenWindow<T>
    {
        internal FrozenWindow(T result, IReadOnlyList<string> frozen, double frozenMilliseconds)
        {
            Result = result;
            Frozen = frozen;
            FrozenMilliseconds = frozenMilliseconds;
        }

        /// <summary>What the snapshot step returned.</summary>
        public T Result { get; }

        /// <summary>What the freezer froze; empty when nothing was.</summary>
        public IReadOnlyList<string> Frozen { get; }

        /// <summary>From the freeze returning to the thaw returning.</summary>
        public double FrozenMilliseconds { get; }
    }

    /// <summary>
    /// Runs pre-freeze hook -> freeze -> snapshot step -> thaw -> post-thaw hook so that a frozen guest is
    /// always thawed: on success, on an exception, on cancellation (at once, even while the step still
    /// runs) and at the deadline, by a watchdog on its own thread, even when the step hangs. A failing
    /// thaw is retried; if it keeps failing the run ends with ThawFailed naming the command to run.
    /// </summary>
    public sealed class FreezeGuard
    {
        private readonly IGuestFreezer _freezer;
        private readonly FreezeGuardOptions _options;

        public FreezeGuard(IGuestFreezer freezer, FreezeGuardOptions options)
        {
            if (options.FreezeTimeout <= TimeSpan.Zero)
            {
                throw new VmQuiesceException("FreezeTimeoutInvalid", FailureKind.InvalidArgument,
                    $"The freeze timeout is {options.FreezeTimeout}; expected a positive duration.", options.FreezeTimeout);
            }

            if (options.ThawAttempts < 1)
            {
                throw new VmQuiesceException("ThawAttemptsInvalid", FailureKind.InvalidArgument,
                    $"ThawAttempts is {options.ThawAttempts}; expected at least 1.", options.ThawAttempts);
            }

            _freezer = freezer;
            _options = options;
        }

        /// <summary>
        /// Freezes, runs <paramref name="snapshot"/> with a token that is cancelled at the deadline or when
        /// <paramref name="cancel"/> is, thaws and returns the step's result with the frozen window.
        /// </summary>
        public FrozenWindow<T> Run<T>(Func<CancellationToken, T> snapshot, CancellationToken cancel)
        {
            cancel.ThrowIfCancellationRequested();
            _options.PreFreeze?.Invoke(cancel);

            Exception? failure = null;
            FrozenWindow<T>? window = null;
            using (var watch = new Watch(_freezer, _options, cancel))
            {
                try
                {
                    window = watch.Run(snapshot);
                }
                catch (Exception e)
                {
                    failure = e;
                }

                VmQuiesceException? thawFailure = watch.ThawOnce();
                if (thawFailure != null)
                {
                    failure = failure == null ? thawFailure : WithEarlierFailure(thawFailure, failure);
                }
                else if (watch.TimedOut)
                {
                    // The deadline is the cause even when the step then failed for it (e.g. cancelled).
                    failure = FreezeTimedOut(failure);
                }
                else if (watch.Cancelled && !(failure is OperationCanceledException))
                {
                    failure = new OperationCanceledException(cancel);
                }
            }

            if (_options.PostThaw != null)
            {
                try
                {
                    // After a cancellation too: the hook resumes what the pre-freeze hook paused.
                    _options.PostThaw(CancellationToken.None);
                }
                catch (Exception e) when (failure != null)
                {
                    _options.Warn?.Invoke($"The post-thaw hook failed after an earlier failure: {e.Message}");
                }
            }

            if (failure != null)
            {
                ExceptionDispatchInfo.Capture(failure).Throw();
            }

            return window!;
        }

        private static VmQuiesceException WithEarlierFailure(VmQuiesceException thawFailure, Exception earlier) =>
            new VmQuiesceException(thawFailure.ErrorId, thawFailure.Kind, thawFailure.Message + " (Before that, the snapshot step failed: " + earlier.Message + ")",
                thawFailure.Target, thawFailure.InnerException)
            {
                Remedy = thawFailure.Remedy,
            };

        private VmQuiesceException FreezeTimedOut(Exception? stepFailure) =>
            new VmQuiesceException("FreezeTimedOut", FailureKind.OperationTimeout,
                $"The freeze and snapshot did not finish within the freeze timeout of {_options.FreezeTimeout.TotalSeconds:0.###} s, so the watchdog thawed {_freezer.Target} at the deadline. " +
                "A snapshot finished after the thaw is not consistent and is not used.", _freezer.Target, stepFailure)
            {
                Remedy = "Give the freeze more time (-FreezeTimeout), or find what slows the snapshot (storage latency, a busy host).",
            };

        /// <summary>One freeze: the watchdog thread, the thaw-exactly-once logic and the clock.</summary>
        private sealed class Watch : IDisposable
        {
            private readonly IGuestFreezer _freezer;
            private readonly FreezeGuardOptions _options;
            private readonly CancellationTokenSource _abort;
            private readonly ManualResetEvent _finished = new ManualResetEvent(false);
            private readonly ManualResetEventSlim _thawDone = new ManualResetEventSlim(false);
            private readonly Stopwatch _frozenClock = new Stopwatch();
            private readonly Thread _watchdog;
            private readonly CancellationToken _cancel;
            private int _thawStarted;
            private bool _freezeAttempted;
            private VmQuiesceException? _thawFailure;
            private double _frozenMilliseconds;
            private volatile bool _timedOut;
            private volatile bool _cancelled;

            public Watch(IGuestFreezer freezer, FreezeGuardOptions options, CancellationToken cancel)
            {
                _freezer = freezer;
                _options = options;
                _cancel = cancel;
                _abort = CancellationTokenSource.CreateLinkedTokenSource(cancel);
                _watchdog = new Thread(WatchdogLoop) { IsBackground = true, Name = "VmQuiesce freeze watchdog" };
                _watchdog.Start();
            }

            public bool TimedOut => _timedOut;

            public bool Cancelled => _cancelled;

            public FrozenWindow<T> Run<T>(Func<CancellationToken, T> snapshot)
            {
                _freezeAttempted = true;
                IReadOnlyList<string> frozen = _freezer.Freeze(_abort.Token);
                _frozenClock.Start();
                _abort.Token.ThrowIfCancellationRequested();
                T result = snapshot(_abort.Token);
                VmQuiesceException? thawFailure = ThawOnce();
                if (thawFailure != null)
                {
                    throw thawFailure;
                }

                return new FrozenWindow<T>(result, frozen, _frozenMilliseconds);
            }

            /// <summary>Thaws unless another thread already did (then waits for it); returns the failure, if any.</summary>
            public VmQuiesceException? ThawOnce()
            {
                if (Interlocked.Exchange(ref _thawStarted, 1) != 0)
                {
                    _thawDone.Wait();
                    return _thawFailure;
                }

                try
                {
                    if (_freezeAttempted)
                    {
                        _thawFailure = ThawWithRetries();
                    }
                }
                finally
                {
                    _thawDone.Set();
                }

                return _thawFailure;
            }

            public void Dispose()
            {
                _finished.Set();
                _watchdog.Join();
                _abort.Dispose();
                _finished.Dispose();
                _thawDone.Dispose();
            }

            private VmQuiesceException? ThawWithRetries()
            {
                Exception? last = null;
                for (int attempt = 1; attempt <= _options.ThawAttempts; attempt++)
                {
                    try
                    {
                        _freezer.Thaw();
                        if (_frozenClock.IsRunning)
                        {
                            _frozenClock.Stop();
                            _frozenMilliseconds = _frozenClock.Elapsed.TotalMilliseconds;
                        }

                        if (attempt > 1)
                        {
                            _options.Warn?.Invoke($"Thawing {_freezer.Target} succeeded on attempt {attempt}.");
                        }

                        return null;
                    }
                    catch (Exception e)
                    {
                        last = e;
                        _options.Warn?.Invoke($"Thawing {_freezer.Target} failed (attempt {attempt} of {_options.ThawAttempts}): {e.Message}");
                        if (attempt < _options.ThawAttempts)
                        {
                            Thread.Sleep(_options.ThawRetryDelay);
                        }
                    }
                }

                var failure = new VmQuiesceException("ThawFailed", FailureKind.InvalidOperation,
                    $"THE GUEST MAY STILL BE FROZEN: thawing {_freezer.Target} failed {_options.ThawAttempts} times; the last error was: {last!.Message} " +
                    "Every program that writes to disk in the guest is blocked until it is thawed.", _freezer.Target, last)
                {
                    Remedy = "Thaw it now: " + _freezer.ManualThawCommand,
                };
                _options.Warn?.Invoke(failure.Message + " " + failure.Remedy);
                return failure;
            }

            private void WatchdogLoop()
            {
                int which = WaitHandle.WaitAny(new[] { _finished, _cancel.WaitHandle }, _options.FreezeTimeout);
                if (which == 0)
                {
                    return;
                }

                if (which == WaitHandle.WaitTimeout)
                {
                    _timedOut = true;
                    _options.Warn?.Invoke($"The freeze timeout of {_options.FreezeTimeout.TotalSeconds:0.###} s passed: thawing {_freezer.Target} now.");
                }
                else
                {
                    _cancelled = true;
                }

                _abort.Cancel();
                ThawOnce();
            }
        }
    }
}
