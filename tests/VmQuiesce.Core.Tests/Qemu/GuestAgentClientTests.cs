using System;
using System.Collections.Generic;
using System.Linq;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    public sealed class GuestAgentClientTests : IDisposable
    {
        private readonly TempFolder _folder = new TempFolder();
        private readonly FakeGuestAgent _agent;

        public GuestAgentClientTests()
        {
            _agent = new FakeGuestAgent(_folder.File("qga.sock"));
        }

        public void Dispose()
        {
            _agent.Dispose();
            _folder.Dispose();
        }

        [Fact]
        public void The_first_call_synchronises_with_a_delimited_sync_then_runs()
        {
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            client.Ping();

            Assert.Equal(new[] { "guest-sync-delimited", "guest-ping" }, _agent.Commands);
        }

        [Fact]
        public void Sync_resends_while_the_guest_boots_and_ignores_stale_replies()
        {
            _agent.SyncsToIgnore = 2;
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            client.Sync(TimeSpan.FromSeconds(30));
            GuestOsInfo os = client.GetOsInfo();

            Assert.Equal(3, _agent.Commands.FindAll(c => c == "guest-sync-delimited").Count);
            Assert.Equal("debian", os.Id);
            Assert.False(os.IsWindows);
        }

        [Fact]
        public void ExecuteAll_sends_every_command_before_the_first_answer_and_returns_each_answer_or_error_in_order()
        {
            // The status is answered only once guest-get-fsinfo has arrived: a client waiting for each answer times out.
            JsonObject? status = null;
            _agent.Override = (command, request, fake) =>
            {
                if (command == "guest-fsfreeze-status")
                {
                    status = request;
                    return true;
                }

                if (command == "guest-get-fsinfo" && status != null)
                {
                    fake.Answer(status, "thawed");
                }

                return false;
            };
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(5));

            IReadOnlyList<CommandAnswer> answers = client.ExecuteAll(new[] { "guest-fsfreeze-status", "guest-no-such-command", "guest-get-fsinfo" });

            Assert.Equal("thawed", client.ReadFreezeStatus(answers[0].Result));
            Assert.Equal("CommandNotFound", answers[1].Error?.ErrorClass);
            Assert.Throws<QemuCommandException>(() => answers[1].Result);
            Assert.Equal(new[] { "/", "/mnt/data" }, client.ReadFileSystems(answers[2].Result).Select(f => f.MountPoint));
            client.Ping();
        }

        [Fact]
        public void Info_fsinfo_freeze_status_and_thaw_round_trip()
        {
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            GuestAgentInfo info = client.GetInfo();
            Assert.Equal("7.2.22", info.Version);
            Assert.True(info.IsEnabled("guest-fsfreeze-freeze"));
            Assert.Equal(new[] { "/", "/mnt/data" }, Array.ConvertAll(System.Linq.Enumerable.ToArray(client.GetFileSystems()), f => f.MountPoint));

            Assert.Equal(2, client.Freeze());
            Assert.Equal("frozen", client.GetFreezeStatus());
            var refused = Assert.Throws<QemuCommandException>(() => client.Exec("/bin/true", Array.Empty<string>(), TimeSpan.FromSeconds(30)));
            Assert.Equal("GuestAgentCommandNotFound", refused.ErrorId);
            Assert.Equal(2, client.Thaw());
            Assert.Equal("thawed", client.GetFreezeStatus());
        }

        [Fact]
        public void Exec_returns_the_exit_code_and_decoded_output()
        {
            _agent.OnExec = (path, args) => (3, $"ran {path} {string.Join(",", args)}\n");
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            GuestExecResult result = client.Exec("/bin/sh", new[] { "-c", "exit 3" }, TimeSpan.FromSeconds(30));

            Assert.Equal(3, result.ExitCode);
            Assert.False(result.Succeeded);
            Assert.Equal("ran /bin/sh -c,exit 3\n", result.StandardOutput);
        }

        [Fact]
        public void An_agent_that_does_not_answer_times_out_naming_the_socket()
        {
            _agent.Answers = false;
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromMilliseconds(300));

            var error = Assert.Throws<VmQuiesceException>(() => client.Ping());

            Assert.Equal("GuestAgentTimeout", error.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, error.Kind);
            Assert.Contains(_agent.SocketPath, error.Message, StringComparison.Ordinal);
            Assert.NotNull(error.Remedy);
        }

        [Fact]
        public void Sync_resends_once_a_second_and_no_faster_when_nothing_reads_the_channel()
        {
            // QEMU does not read a channel whose guest side is closed: every resend piles up in the socket.
            string path = _folder.File("unread.sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            using var client = GuestAgentClient.Connect(path, TimeSpan.FromSeconds(30));
            using Socket server = listener.Accept();

            var error = Assert.Throws<VmQuiesceException>(() => client.Sync(TimeSpan.FromMilliseconds(1500)));

            server.ReceiveTimeout = 5000;
            var received = new byte[1 << 20];
            int length = server.Receive(received);
            int syncs = Encoding.UTF8.GetString(received, 0, length).Split("guest-sync-delimited").Length - 1;
            Assert.Equal("GuestAgentTimeout", error.ErrorId);
            Assert.InRange(syncs, 1, 3);
        }

        [Fact]
        public void After_a_timeout_the_next_call_resynchronises_and_drops_the_late_reply()
        {
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));
            client.Ping();
            _agent.Answers = false;
            Assert.Throws<VmQuiesceException>(() => client.Ping(TimeSpan.FromMilliseconds(200)));
            _agent.Answers = true;

            Assert.Equal("thawed", client.GetFreezeStatus());

            Assert.Equal(2, _agent.Commands.FindAll(c => c == "guest-sync-delimited").Count);
        }

        [Fact]
        public void A_cancelled_call_stops_waiting()
        {
            _agent.Answers = false;
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromMinutes(5));
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

            Assert.ThrowsAny<OperationCanceledException>(() => client.Ping(cancel: cancel.Token));
        }

        [Fact]
        public void A_missing_agent_socket_is_a_connection_error_naming_the_path()
        {
            string path = _folder.File("no-agent.sock");

            var error = Assert.Throws<VmQuiesceException>(() => GuestAgentClient.Connect(path));

            Assert.Equal("GuestAgentConnectFailed", error.ErrorId);
            Assert.Contains(path, error.Message, StringComparison.Ordinal);
        }
    }
}
