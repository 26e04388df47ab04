using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Threading;

namespace VmQuiesce.Core.Quiesce
{
    /// <summary>The boundaries between a guarded freeze's steps: where tests inject a cancel or the deadline.</summary>
    internal enum FreezeStep
    {
        /// <summary>Before the pre-freeze hook (which runs only when nothing was cancelled yet).</summary>
        PreFreezeStarting,

        /// <summary>The pre-freeze hook returned; the deadline is armed next.</summary>
        PreFreezeDone,

        /// <summary>The freezer is about to send the freeze request: the last moment a stop keeps it from being sent.</summary>
        FreezeSending,

        /// <summary>The freeze request may now leave: a thaw is owed.</summary>
        ThawOwed,

        /// <summary>The freezer returned what it froze.</summary>
        FreezeAnswered,

        /// <summary>The snapshot step returned.</summary>
        SnapshotDone,

        /// <summary>The thaw returned.</summary>
        Thawed,

        /// <summary>The post-thaw hook returned.</summary>
        PostThawDone,
    }

    /// <summary>
    /// One guarded freeze as a state machine, so that what is sent to the guest follows from one state
    /// under one lock: Armed -> Freezing (the freeze request may have left: a thaw is owed) -> Frozen ->
    /// Thawing -> Thawed; or Armed -> Stopped when a cancel or the deadline comes before the freeze was
    /// sent, after which no freeze is ever sent. A cancel or the deadline (seen by a watchdog thread, even
    /// while the snapshot step hangs) thaws at once what may be frozen; the thaw runs exactly once, and
    /// every caller waits for that one.
    /// </summary>
    internal sealed class FreezeStateMachine : IDisposable
    {
        private readonly object _gate = new object();
        private readonly IGuestFreezer _freezer;
        private readonly FreezeGuardOptions _options;
        private readonly CancellationToken _cancel;
        private readonly CancellationTokenSource _abort;
        private readonly CancellationTokenSource? _ownDeadline;
        private readonly CancellationToken _deadline;
        private readonly ManualResetEvent _finished = new ManualResetEvent(false);
        private readonly ManualResetEventSlim _thawDone = new ManualResetEventSlim(false);
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Thread _watchdog;
        private State _state = State.Armed;
        private Stop _stop = Stop.None;
        private TimeSpan? _freezeSentAt;
        private TimeSpan? _freezeAnsweredAt;
        private TimeSpan? _thawReturnedAt;
        private VmQuiesceException? _thawFailure;
        private long _deadlineTicks = -1;
        private CancellationTokenRegistration _deadlineWatch;

        public FreezeStateMachine(IGuestFreezer freezer, FreezeGuardOptions options, CancellationToken cancel)
        {
            _freezer = freezer;
            _options = options;
            _cancel = cancel;
            _abort = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            if (options.StartDeadline != null)
            {
                _deadline = options.StartDeadline(options.FreezeTimeout);
            }
            else
            {
                _ownDeadline = new CancellationTokenSource(options.FreezeTimeout);
                _deadline = _ownDeadline.Token;
            }

            // When the deadline passed, on the clock of this run: tells a late answer from a slow snapshot.
            _deadlineWatch = _deadline.Register(() => Interlocked.CompareExchange(ref _deadlineTicks, _clock.Elapsed.Ticks, -1));
            _watchdog = new Thread(WatchdogLoop) { IsBackground = true, Name = "VmQuiesce freeze watchdog" };
            _watchdog.Start();
        }

        private enum State
        {
            Armed,
            Freezing,
            Frozen,
            Thawing,
            Thawed,
            Stopped,
        }

        private enum Stop
        {
            None,
            Cancelled,
            Deadline,
        }

        public bool TimedOut
        {
            get
            {
                lock (_gate)
                {
                    return _stop == Stop.Deadline;
                }
            }
        }

        public bool Cancelled
        {
            get
            {
                lock (_gate)
                {
                    return _stop == Stop.Cancelled;
                }
            }
        }

        /// <summary>Freeze -> snapshot step -> thaw on this thread; a stop from the watchdog cuts in at any point.</summary>
        public FrozenWindow<T> Run<T>(Func<CancellationToken, T> snapshot)
        {
            IReadOnlyList<string> frozen = _freezer.Freeze(BeforeFreezeSent, _abort.Token);
            bool stopped;
            lock (_gate)
            {
                _freezeAnsweredAt = _clock.Elapsed;
                if (_state == State.Freezing)
                {
                    _state = State.Frozen;
                }

                stopped = NoteStopLocked();
            }

            _options.OnStep?.Invoke(FreezeStep.FreezeAnswered);
            if (stopped)
            {
                throw new OperationCanceledException("The freeze answered after the run was stopped.", _abort.Token);
            }

            T result = snapshot(_abort.Token);
            lock (_gate)
            {
                // A snapshot that returns after the deadline is not consistent, whether or not the watchdog woke yet.
                NoteStopLocked();
            }

            _options.OnStep?.Invoke(FreezeStep.SnapshotDone);
            VmQuiesceException? thawFailure = ThawIfOwed();
            if (thawFailure != null)
            {
                throw thawFailure;
            }

            _options.OnStep?.Invoke(FreezeStep.Thawed);
            lock (_gate)
            {
                double window = _freezeAnsweredAt != null && _thawReturnedAt != null ? (_thawReturnedAt.Value - _freezeAnsweredAt.Value).TotalMilliseconds : 0;
                return new FrozenWindow<T>(result, frozen, window);
            }
        }

        /// <summary>
        /// Thaws when a freeze may have been sent and no thaw ran yet (waiting for one that runs on another
        /// thread); otherwise makes sure no freeze is sent from now on. Returns the thaw's failure, if any.
        /// </summary>
        public VmQuiesceException? ThawIfOwed()
        {
            bool waitForOther;
            lock (_gate)
            {
                if (_state == State.Armed || _state == State.Stopped)
                {
                    _state = State.Stopped;
                    return null;
                }

                if (_state == State.Thawed)
                {
                    return _thawFailure;
                }

                waitForOther = _state == State.Thawing;
                _state = State.Thawing;
            }

            if (waitForOther)
            {
                _thawDone.Wait();
                lock (_gate)
                {
                    return _thawFailure;
                }
            }

            try
            {
                VmQuiesceException? failure = ThawWithRetries();
                lock (_gate)
                {
                    _thawFailure = failure;
                    _thawReturnedAt = _clock.Elapsed;
                    _state = State.Thawed;
                }

                return failure;
            }
            finally
            {
                _thawDone.Set();
            }
        }

        /// <summary>What happened at the deadline, with how long the guest really was (or may have been) frozen.</summary>
        public string DescribeDeadline()
        {
            lock (_gate)
            {
                string timeout = Seconds(_options.FreezeTimeout);
                if (_freezeSentAt == null)
                {
                    return $"The freeze timeout of {timeout} passed before the freeze of {_freezer.Target} was sent, so nothing was frozen.";
                }

                string upTo = _thawReturnedAt == null ? "" : $"; the thaw returned {Seconds(_thawReturnedAt.Value - _freezeSentAt.Value)} after the freeze was sent, so the guest was frozen (or freezing) for up to {Seconds(_thawReturnedAt.Value - _freezeSentAt.Value)}";
                long deadlineTicks = Interlocked.Read(ref _deadlineTicks);
                bool answeredLate = _freezeAnsweredAt == null || (deadlineTicks >= 0 && _freezeAnsweredAt.Value.Ticks >= deadlineTicks);
                return answeredLate
                    ? $"{_freezer.Target} had not answered the freeze when the freeze timeout of {timeout} passed. The watchdog asked for the thaw at once, which the guest takes only after the freeze{upTo}."
                    : $"The freeze and snapshot did not finish within the freeze timeout of {timeout}, so the watchdog thawed {_freezer.Target} at the deadline{upTo}. A snapshot finished after the thaw is not consistent and is not used.";
            }
        }

        public void Dispose()
        {
            _finished.Set();
            _watchdog.Join();
            _deadlineWatch.Dispose();
            _abort.Dispose();
            _ownDeadline?.Dispose();
            _finished.Dispose();
            _thawDone.Dispose();
        }

        private static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.0##", CultureInfo.InvariantCulture) + " s";

        /// <summary>The freezer's last call before the freeze request leaves: past it a thaw is owed; a stop before it sends nothing.</summary>
        private void BeforeFreezeSent()
        {
            _options.OnStep?.Invoke(FreezeStep.FreezeSending);
            lock (_gate)
            {
                NoteStopLocked();
                if (_stop != Stop.None || _state != State.Armed)
                {
                    _state = State.Stopped;
                    throw new OperationCanceledException("The freeze was not sent: " + (_stop == Stop.Deadline ? "the freeze timeout passed first." : "the run was cancelled first."), _abort.Token);
                }

                _state = State.Freezing;
                _freezeSentAt = _clock.Elapsed;
            }

            _options.OnStep?.Invoke(FreezeStep.ThawOwed);
        }

        /// <summary>
        /// Records a cancel or the deadline from the tokens themselves, not from whether the watchdog has woken
        /// up to them yet; true when the run is stopped. Call with the lock held.
        /// </summary>
        private bool NoteStopLocked()
        {
            if (_stop == Stop.None && (_cancel.IsCancellationRequested || _deadline.IsCancellationRequested))
            {
                _stop = _deadline.IsCancellationRequested ? Stop.Deadline : Stop.Cancelled;
            }

            return _stop != Stop.None;
        }

        private VmQuiesceException? ThawWithRetries()
        {
            Exception? last = null;
            for (int attempt = 1; attempt <= _options.ThawAttempts; attempt++)
            {
                try
                {
                    _freezer.Thaw();
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
            int which = WaitHandle.WaitAny(new[] { _finished, _cancel.WaitHandle, _deadline.WaitHandle });
            if (which == 0)
            {
                return;
            }

            lock (_gate)
            {
                if (_stop != Stop.None || _state == State.Thawing || _state == State.Thawed)
                {
                    // The thaw is under way or done: the snapshot was taken in time.
                    return;
                }

                _stop = which == 2 ? Stop.Deadline : Stop.Cancelled;
            }

            if (which == 2)
            {
                _options.Warn?.Invoke($"The freeze timeout of {Seconds(_options.FreezeTimeout)} passed: thawing {_freezer.Target} now.");
            }

            _abort.Cancel();
            ThawIfOwed();
        }
    }
}
