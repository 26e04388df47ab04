using System;
using System.Linq;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// A monitor or an agent that sends what it should not, over real sockets: each fails its own
    /// connection with an error naming it, never the process, and costs the host a bounded amount.
    /// </summary>
    public sealed class HostilePeerTests : IDisposable
    {
        private readonly TempFolder _folder = new TempFolder();
        private readonly FakeQemu _qemu;
        private readonly FakeGuestAgent _agent;

        public HostilePeerTests()
        {
            _qemu = new FakeQemu(_folder.File("qmp.sock"));
            _agent = new FakeGuestAgent(_folder.File("qga.sock"));
        }

        public void Dispose()
        {
            _qemu.Dispose();
            _agent.Dispose();
            _folder.Dispose();
        }

        [Theory]
        [InlineData("{\"event\": 1}", "'event' is a number")]
        [InlineData("{\"event\": \"X\", \"timestamp\": {\"seconds\": \"soon\", \"microseconds\": 1}, \"data\": 5}", "'data' is a number")]
        [InlineData("not json at all", "Invalid JSON")]
        [InlineData("[1, 2, 3]", "Expected a JSON object")]
        [InlineData("{\"return\": {}, \"error\": \"no class\"}", "'error' is a string")]
        public void A_malformed_monitor_line_fails_that_connection_with_an_error_naming_it(string line, string why)
        {
            _qemu.Override = (command, request, fake) =>
            {
                if (command != "query-name")
                {
                    return false;
                }

                fake.SendRawLine(line);
                return true;
            };
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath, TimeSpan.FromSeconds(30));

            var error = Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-name"));

            Assert.Equal("QmpProtocolError", error.ErrorId);
            Assert.Equal(FailureKind.ProtocolError, error.Kind);
            Assert.Contains(_qemu.SocketPath, error.Message, StringComparison.Ordinal);
            Assert.Contains(why, error.Message, StringComparison.Ordinal);
            Assert.Contains("'query-name' got no answer", error.Message, StringComparison.Ordinal);
            // The connection is gone, the process is not: the next client gets its answers.
            Assert.Equal("QmpProtocolError", Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-block")).ErrorId);
            _qemu.Override = null;
            using var next = QmpClient.Connect(_qemu.SocketPath, TimeSpan.FromSeconds(30));
            Assert.Equal("fakevm", next.ExecuteObject("query-name").GetString("name"));
        }

        [Fact]
        public void A_greeting_of_the_wrong_shape_fails_the_connect()
        {
            using var server = new GreetingSender(_folder.File("bad.sock"), "{\"QMP\": 5}");
            server.Start();

            var error = Assert.Throws<VmQuiesceException>(() => QmpClient.Connect(server.SocketPath, TimeSpan.FromSeconds(30)));

            Assert.Equal("QmpProtocolError", error.ErrorId);
            Assert.Contains("'QMP' is a number", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_monitor_line_longer_than_the_monitor_limit_fails_the_connection()
        {
            _qemu.Override = (command, request, fake) =>
            {
                if (command != "query-name")
                {
                    return false;
                }

                fake.SendRawLine("{\"return\": \"" + new string('x', PeerLimits.Qmp.MaxLineBytes) + "\"}");
                return true;
            };
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath, TimeSpan.FromSeconds(30));

            var error = Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-name"));

            Assert.Equal("QmpProtocolError", error.ErrorId);
            Assert.Contains($"longer than {PeerLimits.Qmp.MaxLineBytes} bytes", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void An_agent_answer_that_nests_too_many_values_is_refused_before_it_is_built()
        {
            // Under the agent's line limit, but far over its value budget: the shape that took 1.9 GB.
            string bomb = "{\"return\": [" + string.Join(",", Enumerable.Repeat("{}", 200_000)) + "]}";
            Assert.True(bomb.Length < PeerLimits.GuestAgent.MaxLineBytes);
            _agent.Override = (command, request, fake) =>
            {
                if (command != "guest-info")
                {
                    return false;
                }

                fake.SendRawLine(bomb);
                return true;
            };
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            var error = Assert.Throws<VmQuiesceException>(() => client.GetInfo());

            Assert.Equal("GuestAgentProtocolError", error.ErrorId);
            Assert.Contains($"more than {PeerLimits.GuestAgent.Json.MaxValues} values", error.Message, StringComparison.Ordinal);
            Assert.Contains(_agent.SocketPath, error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void An_agent_line_longer_than_the_agent_limit_fails_the_connection()
        {
            _agent.Override = (command, request, fake) =>
            {
                if (command != "guest-ping")
                {
                    return false;
                }

                fake.SendRawLine("{\"return\": \"" + new string('x', PeerLimits.GuestAgent.MaxLineBytes) + "\"}");
                return true;
            };
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            var error = Assert.Throws<VmQuiesceException>(() => client.Ping());

            Assert.Equal("GuestAgentProtocolError", error.ErrorId);
            Assert.Contains($"longer than {PeerLimits.GuestAgent.MaxLineBytes} bytes", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void Agent_lines_nobody_waits_for_are_dropped_unread()
        {
            // Before the first sync nothing is awaited: lines that would fail the connection if parsed are skipped.
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));
            _agent.Override = (command, request, fake) =>
            {
                if (command == "guest-sync-delimited")
                {
                    fake.SendRawLine("garbage that is not JSON");
                    fake.SendRawLine("[" + string.Join(",", Enumerable.Repeat("[]", 100_000)) + "]");
                }

                return false;
            };

            client.Ping();

            Assert.Equal(new[] { "guest-sync-delimited", "guest-ping" }, _agent.Commands);
        }

        [Fact]
        public void Agent_text_reaches_messages_with_its_control_characters_escaped()
        {
            _agent.MountPoints = new[] { "/mnt/\u001b]0;owned\u0007data" };
            _agent.Override = (command, request, fake) =>
            {
                if (command != "guest-ping")
                {
                    return false;
                }

                fake.AnswerError(request, "GenericError", "boom \u001b[2J\u009b31m");
                return true;
            };
            _agent.Start();
            using var client = GuestAgentClient.Connect(_agent.SocketPath, TimeSpan.FromSeconds(30));

            var error = Assert.Throws<QemuCommandException>(() => client.Ping());
            GuestFileSystem fs = Assert.Single(client.GetFileSystems());

            Assert.Contains("boom \\x1b[2J\\x9b31m", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\u001b', error.Message);
            Assert.DoesNotContain('\u009b', error.Description);
            Assert.Equal("/mnt/\\x1b]0;owned\\x07data", fs.MountPoint);
        }

        /// <summary>A monitor that sends one greeting line and nothing else.</summary>
        private sealed class GreetingSender : FakeSocketServer
        {
            private readonly string _greeting;

            public GreetingSender(string path, string greeting)
                : base(path)
            {
                _greeting = greeting;
            }

            protected override void OnConnected() => SendRawLine(_greeting);

            protected override void OnLine(string line, bool afterReset)
            {
            }
        }
    }
}
