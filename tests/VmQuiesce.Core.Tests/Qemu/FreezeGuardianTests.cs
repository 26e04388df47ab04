using System;
using System.IO;
using System.IO.Pipes;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// The guardian's side, in this process against a scripted agent over a real socket (the real process is
    /// killed with SIGKILL against the real guest in GuestFaults.Tests.ps1).
    /// </summary>
    public sealed class FreezeGuardianTests : IDisposable
    {
        private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);
        private readonly FakeVm _vm = new FakeVm();
        private readonly StringWriter _log = new StringWriter();

        public FreezeGuardianTests()
        {
            _vm.Agent.Start();
            using var client = GuestAgentClient.Connect(_vm.Agent.SocketPath);
            client.Freeze();
        }

        public void Dispose() => _vm.Dispose();

        [Fact]
        public void When_its_input_ends_the_guardian_thaws_every_armed_guest_and_notes_it_in_the_run_record()
        {
            QemuRunRecord run = Record();

            int exit = FreezeGuardian.Serve(new StringReader(Arm(run) + "\n"), _log);

            Assert.Equal(0, exit);
            Assert.False(_vm.Agent.IsFrozen);
            QemuRunRecord after = QemuRunRecord.LoadFile(run.Path)!;
            Assert.False(after.MayBeFrozen);
            Assert.StartsWith("the VmQuiesce guardian, at ", after.ThawedAfterwards, StringComparison.Ordinal);
            Assert.Contains("is thawed", _log.ToString(), StringComparison.Ordinal);
        }

        [Fact]
        public void A_disarmed_guest_is_left_as_it_is()
        {
            QemuRunRecord run = Record();

            FreezeGuardian.Serve(new StringReader(Arm(run) + "\n" + new JsonObject().With("disarm", run.RunId) + "\n"), _log);

            Assert.True(_vm.Agent.IsFrozen);
            Assert.DoesNotContain("guest-fsfreeze-thaw", _vm.Agent.Commands);
        }

        [Fact]
        public void Thaw_now_thaws_while_the_backup_still_runs_and_lines_that_are_not_instructions_are_ignored()
        {
            QemuRunRecord run = Record();
            using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
            using var input = new StreamReader(new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle));
            int exit = -1;
            var guardian = new Thread(() => exit = FreezeGuardian.Serve(input, _log));
            guardian.Start();
            using (var writer = new StreamWriter(pipe) { AutoFlush = true })
            {
                writer.WriteLine(Arm(run));
                writer.WriteLine("not json [[[[");
                writer.WriteLine(new string('x', 100_000));
                writer.WriteLine(new JsonObject().With("thaw", run.RunId));

                // The pipe is still open: only the thaw instruction can have done it.
                Assert.True(_vm.Agent.Thawed.Wait(Generous), "the guardian did not thaw on the thaw instruction");
            }

            guardian.Join();
            Assert.Equal(0, exit);
        }

        [Fact]
        public void A_test_host_is_no_powershell_and_starts_no_guardian()
        {
            Assert.Null(FreezeGuardian.FindPowerShellHost());
        }

        private static string Arm(QemuRunRecord run) =>
            new JsonObject().With("arm", run.RunId).With("agent", run.AgentSocket).With("record", run.Path).ToString();

        private QemuRunRecord Record() =>
            QemuRunRecord.Begin("vm1", _vm.Qemu.SocketPath, _vm.Agent.SocketPath, null, Array.Empty<RecordedOverlay>(), null);
    }
}
