using System;
using System.Collections.Generic;
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

        /// <summary>
        /// When the run succeeds, <see cref="PostThaw"/> is left to the caller (<see cref="FrozenWindow{T}.RunPostThaw"/>), which
        /// runs it while it goes on with its work (the copy need not wait for it); a run that fails still runs it itself.
        /// </summary>
        public bool DeferPostThaw { get; init; }

        /// <summary>How often a failing thaw is tried before the guard gives up and reports it.</summary>
        public int ThawAttempts { get; init; } = 3;

        public TimeSpan ThawRetryDelay { get; init; } = TimeSpan.FromSeconds(1);

        /// <summary>Receives loud warnings (watchdog fired, thaw failing); may be called from the watchdog thread.</summary>
        public Action<string>? Warn { get; init; }

        /// <summary>Called at each step boundary (tests inject a cancel or the deadline there); may run on the watchdog thread.</summary>
        internal Action<FreezeStep>? OnStep { get; init; }

        /// <summary>Starts the deadline's clock when the freeze is about to be sent; returns a token cancelled at the deadline (tests fire it at will).</summary>
        internal Func<TimeSpan, CancellationToken>? StartDeadline { get; init; }

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

        private Action? _postThaw;

        /// <summary>Whether the guard left the post-thaw hook to the caller (<see cref="FreezeGuardOptions.DeferPostThaw"/>) and it has not run yet.</summary>
        public bool PostThawLeft => Volatile.Read(ref _postThaw) != null;

        /// <summary>Runs the post-thaw hook the guard left to the caller, once; nothing when none was left. Throws what the hook threw.</summary>
        public void RunPostThaw() => Interlocked.Exchange(ref _postThaw, null)?.Invoke();

        internal void LeavePostThaw(Action hook) => _postThaw = hook;
    }

    /// <summary>
    /// Runs pre-freeze hook -> freeze -> snapshot step -> thaw -> post-thaw hook so that a frozen guest is
    /// always thawed: on success, on an exception, on cancellation (at once, even while the step still
    /// runs) and at the deadline, by a watchdog on its own thread, even when the step hangs; and so that
    /// nothing is frozen once a cancel or the deadline came first (see <see cref="FreezeStateMachine"/>).
    /// A failing thaw is retried; if it keeps failing the run ends with ThawFailed naming the command to run.
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
            _options.OnStep?.Invoke(FreezeStep.PreFreezeStarting);
            _options.PreFreeze?.Invoke(cancel);
            _options.OnStep?.Invoke(FreezeStep.PreFreezeDone);

            Exception? failure = null;
            FrozenWindow<T>? window = null;
            using (var machine = new FreezeStateMachine(_freezer, _options, cancel))
            {
                try
                {
                    window = machine.Run(snapshot);
                }
                catch (Exception e)
                {
                    failure = e;
                }

                VmQuiesceException? thawFailure = machine.ThawIfOwed();
                if (thawFailure != null)
                {
                    failure = failure == null ? thawFailure : WithEarlierFailure(thawFailure, failure);
                }
                else if (machine.TimedOut)
                {
                    // The deadline is the cause even when the step then failed for it (e.g. cancelled).
                    failure = FreezeTimedOut(machine.DescribeDeadline(), failure);
                }
                else if (machine.Cancelled && !(failure is OperationCanceledException))
                {
                    failure = new OperationCanceledException(cancel);
                }
            }

            if (_options.PostThaw is Action<CancellationToken> hook)
            {
                // After a cancellation too: the hook resumes what the pre-freeze hook paused.
                void PostThaw()
                {
                    hook(CancellationToken.None);
                    _options.OnStep?.Invoke(FreezeStep.PostThawDone);
                }

                if (failure == null && _options.DeferPostThaw)
                {
                    window!.LeavePostThaw(PostThaw);
                }
                else
                {
                    try
                    {
                        PostThaw();
                    }
                    catch (Exception e) when (failure != null)
                    {
                        _options.Warn?.Invoke(PostThawFailedAfterFailure(e));
                    }
                }
            }

            if (failure != null)
            {
                ExceptionDispatchInfo.Capture(failure).Throw();
            }

            return window!;
        }

        /// <summary>The warning for a post-thaw hook that failed once the run (or what followed it) had already failed.</summary>
        internal static string PostThawFailedAfterFailure(Exception hookFailure) => $"The post-thaw hook failed after an earlier failure: {hookFailure.Message}";

        private static VmQuiesceException WithEarlierFailure(VmQuiesceException thawFailure, Exception earlier) =>
            new VmQuiesceException(thawFailure.ErrorId, thawFailure.Kind, thawFailure.Message + " (Before that, the snapshot step failed: " + earlier.Message + ")",
                thawFailure.Target, thawFailure.InnerException)
            {
                Remedy = thawFailure.Remedy,
            };

        private VmQuiesceException FreezeTimedOut(string whatHappened, Exception? stepFailure) =>
            new VmQuiesceException("FreezeTimedOut", FailureKind.OperationTimeout, whatHappened, _freezer.Target, stepFailure)
            {
                Remedy = "Give the freeze more time (-FreezeTimeout), or find what slows the freeze and the snapshot (storage latency, a busy host or guest).",
            };
    }
}
