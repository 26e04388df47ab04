using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Quiesce;
using Xunit;

namespace VmQuiesce.Core.Tests.Quiesce
{
    public sealed class FreezeGuardTests
    {
        private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

        [Fact]
        public void Success_runs_every_step_in_order_and_records_the_window()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, Options(freezer));

            FrozenWindow<string> window = guard.Run(_ =>
            {
                freezer.Log.Enqueue("snapshot");
                Assert.True(freezer.IsFrozen);
                return "snap1";
            }, CancellationToken.None);

            Assert.Equal("snap1", window.Result);
            Assert.Equal(new[] { "/", "/data" }, window.Frozen);
            Assert.True(window.FrozenMilliseconds >= 0);
            Assert.False(freezer.IsFrozen);
            Assert.Equal(new[] { "pre-freeze", "freeze", "snapshot", "thaw", "post-thaw" }, freezer.Log.ToArray());
        }

        [Fact]
        public void An_exception_in_the_snapshot_step_thaws_and_is_rethrown()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, Options(freezer));

            var thrown = Assert.Throws<InvalidOperationException>(() => guard.Run<int>(_ => throw new InvalidOperationException("transaction refused"), CancellationToken.None));

            Assert.Equal("transaction refused", thrown.Message);
            Assert.False(freezer.IsFrozen);
            Assert.Equal(new[] { "pre-freeze", "freeze", "thaw", "post-thaw" }, freezer.Log.ToArray());
        }

        [Fact]
        public void A_deferred_post_thaw_hook_is_left_to_the_caller_once_after_a_run_that_went_well_and_run_by_the_guard_after_one_that_failed()
        {
            var freezer = new ScriptedFreezer();
            var deferred = new FreezeGuardOptions
            {
                FreezeTimeout = TimeSpan.FromSeconds(30),
                PreFreeze = _ => freezer.Log.Enqueue("pre-freeze"),
                PostThaw = _ => freezer.Log.Enqueue("post-thaw"),
                DeferPostThaw = true,
            };

            FrozenWindow<int> window = new FreezeGuard(freezer, deferred).Run(_ => 1, CancellationToken.None);

            Assert.Equal(new[] { "pre-freeze", "freeze", "thaw" }, freezer.Log.ToArray());
            Assert.True(window.PostThawLeft);
            window.RunPostThaw();
            window.RunPostThaw();
            Assert.False(window.PostThawLeft);
            Assert.Equal(new[] { "pre-freeze", "freeze", "thaw", "post-thaw" }, freezer.Log.ToArray());

            while (freezer.Log.TryDequeue(out _))
            {
            }

            Assert.Throws<InvalidOperationException>(() => new FreezeGuard(freezer, deferred).Run<int>(_ => throw new InvalidOperationException("transaction refused"), CancellationToken.None));
            Assert.Equal(new[] { "pre-freeze", "freeze", "thaw", "post-thaw" }, freezer.Log.ToArray());
        }

        [Fact]
        public void A_failing_freeze_is_still_followed_by_a_thaw()
        {
            var freezer = new ScriptedFreezer { FreezeFailure = new TimeoutException("agent did not answer") };
            var guard = new FreezeGuard(freezer, Options(freezer));

            Assert.Throws<TimeoutException>(() => guard.Run(_ => 1, CancellationToken.None));

            Assert.Contains("thaw", freezer.Log);
        }

        [Fact]
        public void A_failing_pre_freeze_hook_stops_before_anything_is_frozen()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { PreFreeze = _ => throw new InvalidOperationException("hook exit 3") });

            Assert.Throws<InvalidOperationException>(() => guard.Run(_ => 1, CancellationToken.None));

            Assert.Empty(freezer.Log);
        }

        [Fact]
        public void Cancellation_thaws_at_once_even_while_the_snapshot_step_ignores_it()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, Options(freezer, TimeSpan.FromMinutes(5)));
            using var cancel = new CancellationTokenSource();
            using var release = new ManualResetEventSlim(false);

            Task<FrozenWindow<int>> run = Task.Run(() => guard.Run(_ =>
            {
                cancel.Cancel();
                // A step that does not observe cancellation: the guard must thaw without its help.
                Assert.True(freezer.Thawed.Wait(Generous), "the guest was not thawed while the step still ran");
                release.Wait(Generous);
                return 1;
            }, cancel.Token));

            Assert.True(freezer.Thawed.Wait(Generous));
            release.Set();
            var error = Assert.ThrowsAny<OperationCanceledException>(() => run.GetAwaiter().GetResult());
            Assert.NotNull(error);
            Assert.False(freezer.IsFrozen);
            Assert.Equal(1, freezer.ThawCalls);
            Assert.Contains("post-thaw", freezer.Log);
        }

        [Fact]
        public void Cancellation_before_the_start_freezes_nothing()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, Options(freezer));
            using var cancel = new CancellationTokenSource();
            cancel.Cancel();

            Assert.ThrowsAny<OperationCanceledException>(() => guard.Run(_ => 1, cancel.Token));

            Assert.Empty(freezer.Log);
        }

        [Fact]
        public void A_hung_snapshot_step_is_thawed_by_the_watchdog_at_the_deadline()
        {
            var freezer = new ScriptedFreezer();
            var warnings = new ConcurrentQueue<string>();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions
            {
                FreezeTimeout = TimeSpan.FromMilliseconds(300),
                Warn = warnings.Enqueue,
            });
            using var release = new ManualResetEventSlim(false);
            int watchdogThread = -1;
            freezer.OnThaw = () => watchdogThread = Environment.CurrentManagedThreadId;
            int stepThread = -1;

            Task<FrozenWindow<int>> run = Task.Run(() => guard.Run(_ =>
            {
                stepThread = Environment.CurrentManagedThreadId;
                release.Wait(Generous); // hangs, ignoring its token
                return 1;
            }, CancellationToken.None));

            Assert.True(freezer.Thawed.Wait(Generous), "the watchdog did not thaw the guest");
            Assert.False(run.IsCompleted);
            Assert.NotEqual(stepThread, watchdogThread);
            release.Set();

            var error = Assert.Throws<VmQuiesceException>(() => run.GetAwaiter().GetResult());
            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, error.Kind);
            Assert.Equal(1, freezer.ThawCalls);
            Assert.Contains(warnings, w => w.Contains("freeze timeout", StringComparison.Ordinal));
        }

        [Fact]
        public void A_step_that_observes_its_token_is_stopped_at_the_deadline()
        {
            var freezer = new ScriptedFreezer();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { FreezeTimeout = TimeSpan.FromMilliseconds(200) });

            var error = Assert.Throws<VmQuiesceException>(() => guard.Run(token =>
            {
                token.WaitHandle.WaitOne(Generous);
                token.ThrowIfCancellationRequested();
                return 1;
            }, CancellationToken.None));

            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.IsAssignableFrom<OperationCanceledException>(error.InnerException);
            Assert.False(freezer.IsFrozen);
        }

        [Fact]
        public void A_thaw_that_fails_once_is_retried_and_succeeds()
        {
            var freezer = new ScriptedFreezer { ThawFailuresLeft = 1 };
            var warnings = new ConcurrentQueue<string>();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { ThawRetryDelay = TimeSpan.FromMilliseconds(10), Warn = warnings.Enqueue });

            FrozenWindow<int> window = guard.Run(_ => 7, CancellationToken.None);

            Assert.Equal(7, window.Result);
            Assert.Equal(2, freezer.ThawCalls);
            Assert.False(freezer.IsFrozen);
            Assert.Contains(warnings, w => w.Contains("attempt 1 of 3", StringComparison.Ordinal));
        }

        [Fact]
        public void A_thaw_that_always_fails_is_reported_loudly_with_the_command_to_run()
        {
            var freezer = new ScriptedFreezer { ThawFailuresLeft = int.MaxValue };
            var warnings = new ConcurrentQueue<string>();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { ThawAttempts = 3, ThawRetryDelay = TimeSpan.FromMilliseconds(10), Warn = warnings.Enqueue });

            var error = Assert.Throws<VmQuiesceException>(() => guard.Run(_ => 1, CancellationToken.None));

            Assert.Equal("ThawFailed", error.ErrorId);
            Assert.Equal(3, freezer.ThawCalls);
            Assert.Contains("MAY STILL BE FROZEN", error.Message, StringComparison.Ordinal);
            Assert.Contains(freezer.ManualThawCommand, error.Remedy, StringComparison.Ordinal);
            Assert.Contains(warnings, w => w.Contains(freezer.ManualThawCommand, StringComparison.Ordinal));
            Assert.True(freezer.IsFrozen);
        }

        [Fact]
        public void A_failing_thaw_after_a_failed_step_reports_both()
        {
            var freezer = new ScriptedFreezer { ThawFailuresLeft = int.MaxValue };
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { ThawAttempts = 2, ThawRetryDelay = TimeSpan.Zero });

            var error = Assert.Throws<VmQuiesceException>(() => guard.Run<int>(_ => throw new InvalidOperationException("disk full"), CancellationToken.None));

            Assert.Equal("ThawFailed", error.ErrorId);
            Assert.Contains("disk full", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_non_positive_timeout_is_rejected_before_anything_happens()
        {
            var error = Assert.Throws<VmQuiesceException>(() => new FreezeGuard(new ScriptedFreezer(), new FreezeGuardOptions { FreezeTimeout = TimeSpan.Zero }));

            Assert.Equal("FreezeTimeoutInvalid", error.ErrorId);
        }

        /// <summary>Where a stop is injected: each step boundary, plus inside the hook, the freeze's answer and the step.</summary>
        public static TheoryData<string, string> StopPoints() => FreezeStopPoints.With("InPreFreeze", "WhileFreezeAnswers", "InSnapshotObserving", "InSnapshotIgnoring");

        [Theory]
        [MemberData(nameof(StopPoints))]
        public void A_cancel_or_the_deadline_at_any_step_leaves_nothing_frozen_and_sends_no_freeze_after_it(string point, string stop)
        {
            const int Runs = 100;
            int leftFrozen = 0;
            for (int run = 0; run < Runs; run++)
            {
                using var cancel = new CancellationTokenSource();
                using var deadline = new CancellationTokenSource();
                Action fire = stop == "Cancel" ? cancel.Cancel : deadline.Cancel;
                var freezer = new ScriptedFreezer();
                // Up to the moment the freeze may leave, a stop means it never does.
                bool stoppedBeforeFreeze = point is "InPreFreeze" or nameof(FreezeStep.PreFreezeStarting) or nameof(FreezeStep.PreFreezeDone) or nameof(FreezeStep.FreezeSending);
                Action fireNow = fire;
                if (point == "WhileFreezeAnswers")
                {
                    freezer.WhileFreezeAnswers = token =>
                    {
                        fire();
                        token.WaitHandle.WaitOne(Generous);
                        token.ThrowIfCancellationRequested();
                    };
                }

                var guard = new FreezeGuard(freezer, new FreezeGuardOptions
                {
                    PreFreeze = _ =>
                    {
                        freezer.Log.Enqueue("pre-freeze");
                        if (point == "InPreFreeze")
                        {
                            fireNow();
                        }
                    },
                    PostThaw = _ => freezer.Log.Enqueue("post-thaw"),
                    OnStep = step =>
                    {
                        if (step.ToString() == point)
                        {
                            fireNow();
                        }
                    },
                    StartDeadline = _ => deadline.Token,
                    ThawRetryDelay = TimeSpan.Zero,
                });

                Exception? failure = Record.Exception(() => guard.Run(token =>
                {
                    if (point.StartsWith("InSnapshot", StringComparison.Ordinal))
                    {
                        fire();
                        if (point == "InSnapshotObserving")
                        {
                            token.WaitHandle.WaitOne(Generous);
                            token.ThrowIfCancellationRequested();
                        }
                        else
                        {
                            Assert.True(freezer.Thawed.Wait(Generous), "the watchdog did not thaw while the step ignored its token");
                        }
                    }

                    return 1;
                }, cancel.Token));

                if (freezer.IsFrozen)
                {
                    leftFrozen++;
                }

                string[] log = freezer.Log.ToArray();
                Assert.True(freezer.ThawCalls == (log.Contains("freeze") ? 1 : 0), $"{point}/{stop}: {freezer.ThawCalls} thaw(s) for [{string.Join(", ", log)}]");
                Assert.Equal("post-thaw", log.Last());
                if (stoppedBeforeFreeze)
                {
                    Assert.DoesNotContain("freeze", log);
                    Assert.True(stop == "Cancel" ? failure is OperationCanceledException : failure is VmQuiesceException { ErrorId: "FreezeTimedOut" }, $"{point}/{stop}: {failure}");
                }
                else if (failure != null)
                {
                    Assert.True(stop == "Cancel" ? failure is OperationCanceledException : failure is VmQuiesceException { ErrorId: "FreezeTimedOut" }, $"{point}/{stop}: {failure}");
                }
            }

            Assert.Equal(0, leftFrozen);
        }

        [Fact]
        public void A_cancel_from_another_thread_at_any_moment_never_leaves_the_guest_frozen()
        {
            // Not a boundary this time but whatever moment the scheduler gives: the invariant must hold for all.
            const int Runs = 2000;
            int leftFrozen = 0;
            var random = new Random(20261125);
            for (int run = 0; run < Runs; run++)
            {
                using var cancel = new CancellationTokenSource();
                var freezer = new ScriptedFreezer();
                var guard = new FreezeGuard(freezer, new FreezeGuardOptions { ThawRetryDelay = TimeSpan.Zero });
                int spins = random.Next(0, 20_000);
                var canceller = new Thread(() =>
                {
                    Thread.SpinWait(spins);
                    cancel.Cancel();
                });
                canceller.Start();
                Record.Exception(() => guard.Run(_ => 1, cancel.Token));
                canceller.Join();
                if (freezer.IsFrozen)
                {
                    leftFrozen++;
                }
            }

            Assert.Equal(0, leftFrozen);
        }

        [Fact]
        public void A_freeze_that_answers_after_the_deadline_is_thawed_at_once_and_the_message_says_how_long_it_really_was()
        {
            using var deadline = new CancellationTokenSource();
            var freezer = new ScriptedFreezer();
            // The answer comes after the deadline; the thaw can only follow it, as with a real agent.
            freezer.WhileFreezeAnswers = _ => deadline.Cancel();
            var guard = new FreezeGuard(freezer, new FreezeGuardOptions { StartDeadline = _ => deadline.Token, FreezeTimeout = TimeSpan.FromSeconds(10) });

            var error = Assert.Throws<VmQuiesceException>(() => guard.Run(_ => 1, CancellationToken.None));

            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.Contains("had not answered the freeze when the freeze timeout of 10.0 s passed", error.Message, StringComparison.Ordinal);
            Assert.Matches(@"frozen \(or freezing\) for up to \d+\.\d+ s", error.Message);
            Assert.False(freezer.IsFrozen);
            Assert.Equal(new[] { "freeze", "thaw" }, freezer.Log.ToArray());
        }

        private static FreezeGuardOptions Options(ScriptedFreezer freezer, TimeSpan? timeout = null) => new FreezeGuardOptions
        {
            FreezeTimeout = timeout ?? TimeSpan.FromSeconds(30),
            PreFreeze = _ => freezer.Log.Enqueue("pre-freeze"),
            PostThaw = _ => freezer.Log.Enqueue("post-thaw"),
            ThawRetryDelay = TimeSpan.FromMilliseconds(10),
        };

        /// <summary>
        /// A freezer whose behaviour each test scripts; it records every call. Like the agent client, it sends
        /// one command at a time: a thaw waits until the freeze call before it has its answer or gives up.
        /// </summary>
        private sealed class ScriptedFreezer : IGuestFreezer
        {
            private readonly object _callLock = new object();
            private int _thawCalls;

            public ConcurrentQueue<string> Log { get; } = new ConcurrentQueue<string>();

            public ManualResetEventSlim Thawed { get; } = new ManualResetEventSlim(false);

            public Exception? FreezeFailure { get; init; }

            public int ThawFailuresLeft { get; set; }

            public Action? OnThaw { get; set; }

            /// <summary>Runs once the freeze left, before its answer: e.g. waits, observing the token, as for a slow answer.</summary>
            public Action<CancellationToken>? WhileFreezeAnswers { get; set; }

            public volatile bool IsFrozen;

            public int ThawCalls => Volatile.Read(ref _thawCalls);

            public string Target => "the scripted freezer";

            public string ManualThawCommand => "thaw-it --now";

            public IReadOnlyList<string> Freeze(Action beforeSend, CancellationToken cancel)
            {
                lock (_callLock)
                {
                    cancel.ThrowIfCancellationRequested();
                    beforeSend();
                    Log.Enqueue("freeze");
                    IsFrozen = true;
                    WhileFreezeAnswers?.Invoke(cancel);
                    if (FreezeFailure != null)
                    {
                        throw FreezeFailure;
                    }

                    return new[] { "/", "/data" };
                }
            }

            public void Thaw()
            {
                lock (_callLock)
                {
                    Interlocked.Increment(ref _thawCalls);
                    OnThaw?.Invoke();
                    if (ThawFailuresLeft > 0)
                    {
                        ThawFailuresLeft--;
                        throw new TimeoutException("agent not answering");
                    }

                    IsFrozen = false;
                    Log.Enqueue("thaw");
                    Thawed.Set();
                }
            }
        }
    }
}
