using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Quiesce;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// A cancel and the deadline at every step of a QEMU backup's freeze, against a scripted agent and
    /// monitor over real sockets: the agent is never left frozen, and no freeze is sent after a stop.
    /// </summary>
    public sealed class QemuFreezeStopTests
    {
        private const int Runs = 5;

        public static TheoryData<string, string> StopPoints() => Quiesce.FreezeStopPoints.With("InGuestPreFreezeHook", "WhileAgentFreezes", "InSnapshot");

        [Theory]
        [MemberData(nameof(StopPoints))]
        public void A_stop_at_any_step_leaves_the_agent_thawed_and_no_overlay(string point, string stop)
        {
            int leftFrozen = 0;
            for (int run = 0; run < Runs; run++)
            {
                using var vm = new FakeVm();
                using var cancel = new CancellationTokenSource();
                using var deadline = new CancellationTokenSource();
                Action fire = stop == "Cancel" ? cancel.Cancel : deadline.Cancel;
                int freezesBeforeStop = -1;
                void FireNow()
                {
                    freezesBeforeStop = vm.Agent.Commands.Count(c => c == "guest-fsfreeze-freeze");
                    fire();
                }

                vm.Agent.OnExec = (_, _) =>
                {
                    if (point == "InGuestPreFreezeHook")
                    {
                        FireNow();
                    }

                    return (0, "");
                };
                vm.Agent.OnFreeze = () =>
                {
                    if (point == "WhileAgentFreezes")
                    {
                        fire();
                    }
                };
                vm.Qemu.Start();
                vm.Agent.Start();
                var source = new QemuSource(new QemuSourceOptions("vm1", vm.Qemu.SocketPath)
                {
                    Trust = FakeQemu.TrustThisProcess,
                    AgentSocket = vm.Agent.SocketPath,
                    PreFreezeHook = new[] { "/usr/local/bin/db-pause" },
                    OnFreezeStep = step =>
                    {
                        if (step.ToString() == point)
                        {
                            FireNow();
                        }
                    },
                    FreezeDeadline = _ => deadline.Token,
                    BeforeSnapshot = token =>
                    {
                        if (point == "InSnapshot")
                        {
                            fire();
                            token.ThrowIfCancellationRequested();
                        }
                    },
                });

                Exception? failure = Record.Exception(() =>
                {
                    using IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), cancel.Token);
                    view.Complete(true, CancellationToken.None);
                });

                if (vm.Agent.IsFrozen)
                {
                    leftFrozen++;
                }

                Assert.True(failure == null || failure is OperationCanceledException || failure is VmQuiesceException { ErrorId: "FreezeTimedOut" }, $"{point}/{stop}: {failure}");
                Assert.Empty(Directory.GetFiles(vm.Folder.Path, "*.vmquiesce-*"));
                if (freezesBeforeStop == 0 && point != nameof(FreezeStep.ThawOwed))
                {
                    Assert.DoesNotContain("guest-fsfreeze-freeze", vm.Agent.Commands);
                }
            }

            Assert.Equal(0, leftFrozen);
        }

        [Fact]
        public void A_freeze_the_agent_answers_after_the_deadline_is_thawed_next_and_the_error_says_so()
        {
            using var vm = new FakeVm();
            using var deadline = new CancellationTokenSource();
            // The agent answers only after the deadline passed: it reads the thaw only after that answer.
            vm.Agent.OnFreeze = deadline.Cancel;
            vm.Qemu.Start();
            vm.Agent.Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = vm.Agent.SocketPath, FreezeDeadline = _ => deadline.Token });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { FreezeTimeout = TimeSpan.FromSeconds(10) }, CancellationToken.None));

            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.Contains("had not answered the freeze when the freeze timeout of 10.0 s passed", error.Message, StringComparison.Ordinal);
            Assert.Matches(@"frozen \(or freezing\) for up to \d+\.\d+ s", error.Message);
            Assert.False(vm.Agent.IsFrozen);
            string[] afterFreeze = vm.Agent.Commands.SkipWhile(c => c != "guest-fsfreeze-freeze").ToArray();
            Assert.Equal("guest-fsfreeze-thaw", afterFreeze.Last());
            Assert.DoesNotContain("transaction", vm.Qemu.Commands);
        }
    }
}
