using System;
using System.IO;
using System.Linq;
using System.Net;
using System.Threading;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>The one process runner: arguments one by one, secrets masked, output bounded, deadlines and cancels that stop the whole tree.</summary>
    public sealed class ToolRunnerTests : IDisposable
    {
        private readonly string _root = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "vmq-tools-" + Guid.NewGuid().ToString("N"))).FullName;

        public void Dispose() => Directory.Delete(_root, recursive: true);

        [Theory]
        [InlineData("plain", "plain")]
        [InlineData("", "\"\"")]
        [InlineData("a b", "\"a b\"")]
        [InlineData("say \"hi\"", "\"say \\\"hi\\\"\"")]
        [InlineData(@"C:\Program Files\VMware\", "\"C:\\Program Files\\VMware\\\\\"")]
        [InlineData(@"C:\vms\a.vmx", @"C:\vms\a.vmx")]
        [InlineData(@"a\\""b", "\"a\\\\\\\\\\\"b\"")]
        public void Quoting_follows_the_windows_rules(string argument, string expected) =>
            Assert.Equal(expected, ToolCommand.Quote(argument));

        [UnixFact]
        public void Every_argument_arrives_whole_and_the_secret_only_in_the_process()
        {
            string[] odd = { "a b", "say \"hi\"", @"back\slash\", "", "semi;colon $(echo no) `x`", "new\nline" };
            const string password = "p@ss \"w\\";
            using var secret = new NetworkCredential("backup", password).SecurePassword;
            var command = new ToolCommand("/bin/sh", new[] { "-c", "printf '[%s]' \"$@\"", "sh" }.Concat(odd).Append(null)) { Secret = secret };

            ToolResult result = ToolProcess.Run(command, CancellationToken.None);

            Assert.Equal(string.Concat(odd.Append(password).Select(argument => $"[{argument}]")), result.StandardOutput);
            Assert.DoesNotContain("p@ss", result.CommandLine, StringComparison.Ordinal);
            Assert.Contains(ToolCommand.Mask, result.CommandLine, StringComparison.Ordinal);
        }

        [UnixFact]
        public void A_program_that_prints_without_end_is_kept_to_the_limit_and_never_blocks()
        {
            ToolResult result = ToolProcess.Run(new ToolCommand("/bin/sh", new[] { "-c", "head -c 20000000 /dev/zero | tr '\\0' x; echo done >&2" }) { OutputLimit = 1000 }, CancellationToken.None);

            Assert.Equal(0, result.ExitCode);
            Assert.StartsWith(new string('x', 1000) + "\n[output beyond 1000 characters was dropped]", result.StandardOutput, StringComparison.Ordinal);
            Assert.Equal("done\n", result.StandardError);
        }

        [LinuxFact]
        public void A_program_past_its_deadline_is_stopped_with_what_it_started()
        {
            string childPid = Path.Combine(_root, "child.pid");
            var command = new ToolCommand("/bin/sh", new[] { "-c", $"sleep 60 & echo $! > '{childPid}'; sleep 60" }) { Timeout = TimeSpan.FromSeconds(5) };

            var failure = Assert.Throws<VmQuiesceException>(() => ToolProcess.Run(command, CancellationToken.None));

            Assert.Equal("ToolTimedOut", failure.ErrorId);
            Assert.Contains("did not finish within 5 s", failure.Message, StringComparison.Ordinal);
            // The child holds the output pipe too: had it lived, the runner would have had to give up on it instead.
            Assert.DoesNotContain("output never ended", failure.Message, StringComparison.Ordinal);
            Assert.False(IsRunning(File.ReadAllText(childPid).Trim()), "the shell's child outlived the deadline");
        }

        /// <summary>Whether the process exists and is not a zombie (an orphan killed here may wait for a reaper that never comes).</summary>
        private static bool IsRunning(string pid)
        {
            string stat = Path.Combine("/proc", pid, "stat");
            if (!File.Exists(stat))
            {
                return false;
            }

            string text = File.ReadAllText(stat);
            return text.Substring(text.LastIndexOf(')') + 2, 1) != "Z";
        }

        [UnixFact]
        public void A_cancel_stops_the_program()
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
            Assert.ThrowsAny<OperationCanceledException>(() => ToolProcess.Run(new ToolCommand("/bin/sleep", new[] { "60" }), cancel.Token));
        }

        [UnixFact]
        public void Programs_start_in_the_root_folder_not_the_callers()
        {
            Assert.Equal("/\n", ToolProcess.Run(new ToolCommand("/bin/sh", new[] { "-c", "pwd" }), CancellationToken.None).StandardOutput);
        }

        [Fact]
        public void A_program_is_never_named_by_a_relative_path()
        {
            Assert.Throws<ArgumentException>(() => new ToolCommand("qemu-img", new[] { "info" }));
            Assert.Throws<ArgumentException>(() => new ToolCommand("./qemu-img", new[] { "info" }));
        }

        [Fact]
        public void Tools_are_found_only_in_the_given_directories()
        {
            string system = Directory.CreateDirectory(Path.Combine(_root, "system")).FullName;
            File.WriteAllText(Path.Combine(system, HostPlatform.IsWindows ? "tool.exe" : "tool"), string.Empty);
            var tools = new HostTools(new[] { Path.Combine(_root, "missing"), system }, setting => null, checkOwners: false);

            Assert.Equal(Path.Combine(system, HostPlatform.IsWindows ? "tool.exe" : "tool"), tools.Find("tool"));
            var missing = Assert.Throws<VmQuiesceException>(() => tools.Find("other"));
            Assert.Equal("ToolNotFound", missing.ErrorId);
            Assert.Contains("VMQUIESCE_TOOL_OTHER", missing.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void An_explicit_setting_wins_and_must_be_an_absolute_path_to_a_file()
        {
            string chosen = Path.Combine(_root, "my-qemu-img");
            File.WriteAllText(chosen, string.Empty);
            string? value = chosen;
            var tools = new HostTools(Array.Empty<string>(), setting => setting == "VMQUIESCE_TOOL_QEMU_IMG" ? value : null, checkOwners: false);

            Assert.Equal(chosen, tools.Find("qemu-img"));
            value = "my-qemu-img";
            Assert.Equal("ToolPathInvalid", Assert.Throws<VmQuiesceException>(() => tools.Find("qemu-img")).ErrorId);
            value = chosen + ".missing";
            Assert.Equal("ToolPathInvalid", Assert.Throws<VmQuiesceException>(() => tools.Find("qemu-img")).ErrorId);
        }

        [LinuxFact]
        public void A_program_others_could_replace_is_refused()
        {
            string open = Directory.CreateDirectory(Path.Combine(_root, "open")).FullName;
            File.WriteAllText(Path.Combine(open, "tool"), string.Empty);
            File.SetUnixFileMode(open, (UnixFileMode)0x1FF); // 0777, like a shared folder
            var tools = new HostTools(new[] { open }, setting => null, checkOwners: true);

            var failure = Assert.Throws<VmQuiesceException>(() => tools.Find("tool"));

            Assert.Equal("ToolNotTrusted", failure.ErrorId);
            Assert.Contains("writable by its group or by others", failure.Message, StringComparison.Ordinal);
            Assert.Equal("/usr/bin/sh", new HostTools(new[] { "/usr/bin" }, setting => null, checkOwners: true).Find("sh"));
        }
    }
}
