using System;
using System.Diagnostics;
using System.IO;
using System.IO.Pipes;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;
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

        [LinuxFact]
        public void The_standby_shell_starts_the_guardian_only_when_its_input_ends_with_a_guest_still_armed()
        {
            string a = NewRunId(), b = NewRunId();

            Assert.Equal(string.Empty, RunStandby(ArmLine(a), Disarm(a)));
            Assert.Equal(string.Empty, RunStandby(ArmLine(a), ArmLine(b), Disarm(b), Disarm(a)));

            // What the guardian reads: every instruction since nothing was armed, in order.
            Assert.Equal(Lines(GuardianStarted, ArmLine(b)), RunStandby(ArmLine(a), Disarm(a), ArmLine(b)));
            Assert.Equal(Lines(GuardianStarted, ArmLine(a), ArmLine(b), Disarm(a)), RunStandby(ArmLine(a), ArmLine(b), Disarm(a)));

            // A disarm of a run it never saw armed (one an earlier guardian had) leaves the armed run armed.
            Assert.Equal(Lines(GuardianStarted, ArmLine(a), Disarm(b)), RunStandby(ArmLine(a), Disarm(b)));
        }

        [LinuxFact]
        public void The_standby_shell_starts_the_guardian_on_a_thaw_instruction_while_its_input_is_still_open_and_passes_on_the_rest()
        {
            string a = NewRunId(), b = NewRunId();
            using Process standby = StartStandby();
            standby.StandardInput.WriteLine(ArmLine(a));
            standby.StandardInput.WriteLine(new JsonObject().With("thaw", a));
            standby.StandardInput.Flush();

            Assert.Equal(GuardianStarted, ReadLine(standby));
            Assert.Equal(ArmLine(a), ReadLine(standby));
            Assert.Equal(new JsonObject().With("thaw", a).ToString(), ReadLine(standby));
            standby.StandardInput.WriteLine(ArmLine(b));
            standby.StandardInput.Flush();
            Assert.Equal(ArmLine(b), ReadLine(standby));

            standby.StandardInput.Close();
            Assert.True(standby.WaitForExit((int)Generous.TotalMilliseconds), "the guardian did not end with its input");
        }

        [Fact]
        public void A_test_host_is_no_powershell_and_starts_no_guardian()
        {
            Assert.Null(FreezeGuardian.FindPowerShellHost());
        }

        /// <summary>The stand-in guardian's first line: it started.</summary>
        private const string GuardianStarted = "GUARDIAN STARTED";

        private static string NewRunId() => Guid.NewGuid().ToString("N");

        private static string ArmLine(string runId) => new JsonObject().With("arm", runId).With("agent", "/run/vm \"1\"/qga.sock").With("record", "/run/vmquiesce/" + runId + ".json").ToString();

        private static string Disarm(string runId) => new JsonObject().With("disarm", runId).ToString();

        private static string Lines(params string[] lines) => string.Join("\n", lines) + "\n";

        /// <summary>The standby shell with a guardian that says it started, then echoes what it reads.</summary>
        private static Process StartStandby()
        {
            // Quoted as the guardian's own command line is.
            string[] arguments = { "-c", FreezeGuardian.Standby, "guardian-test", "/bin/sh", "-c", "echo '" + GuardianStarted + "'; exec cat" };
            return Process.Start(new ProcessStartInfo(FreezeGuardian.Shell, string.Join(" ", Array.ConvertAll(arguments, ToolCommand.Quote)))
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            })!;
        }

        /// <summary>Feeds the lines to the standby shell, ends its input, and returns what the guardian printed (empty when it never started).</summary>
        private static string RunStandby(params string[] lines)
        {
            using Process standby = StartStandby();
            Task<string> output = standby.StandardOutput.ReadToEndAsync();
            standby.StandardInput.Write(Lines(lines));
            standby.StandardInput.Close();
            Assert.True(standby.WaitForExit((int)Generous.TotalMilliseconds), "the standby shell did not end with its input");
            Assert.True(output.Wait(Generous));
            return output.Result;
        }

        private static string? ReadLine(Process process)
        {
            var line = process.StandardOutput.ReadLineAsync();
            Assert.True(line.Wait(Generous), "no line from the guardian");
            return line.Result;
        }

        private static string Arm(QemuRunRecord run) =>
            new JsonObject().With("arm", run.RunId).With("agent", run.AgentSocket).With("record", run.Path).ToString();

        private QemuRunRecord Record() =>
            QemuRunRecord.Begin("vm1", _vm.Qemu.SocketPath, _vm.Agent.SocketPath, null, Array.Empty<RecordedOverlay>(), null);
    }
}
