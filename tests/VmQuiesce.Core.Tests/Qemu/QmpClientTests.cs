using System;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    public sealed class QmpClientTests : IDisposable
    {
        private readonly TempFolder _folder = new TempFolder();
        private readonly FakeQemu _qemu;

        public QmpClientTests()
        {
            _qemu = new FakeQemu(_folder.File("qmp.sock"));
        }

        public void Dispose()
        {
            _qemu.Dispose();
            _folder.Dispose();
        }

        [Fact]
        public void Connect_reads_the_greeting_and_negotiates_capabilities()
        {
            _qemu.Start();

            using var qmp = QmpClient.Connect(_qemu.SocketPath, TimeSpan.FromSeconds(30));

            Assert.Equal("7.2.22", qmp.QemuVersion);
            Assert.Equal(new[] { "qmp_capabilities" }, _qemu.Commands);
        }

        [Fact]
        public void Replies_are_matched_by_id_while_events_are_queued_for_waiting()
        {
            _qemu.Override = (command, request, fake) =>
            {
                if (command != "query-name")
                {
                    return false;
                }

                fake.SendEvent("BLOCK_JOB_READY", new JsonObject().With("device", "job1"));
                fake.Answer(new JsonObject().With("id", 999999L), "a reply for nobody");
                fake.Answer(request, new JsonObject().With("name", "vm1"));
                return true;
            };
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            JsonObject name = qmp.ExecuteObject("query-name");
            QmpEvent ready = qmp.WaitForEvent("BLOCK_JOB_READY", data => data.GetOptionalString("device") == "job1", TimeSpan.FromSeconds(30));

            Assert.Equal("vm1", name.GetString("name"));
            Assert.Equal("job1", ready.Data.GetString("device"));
            Assert.NotNull(ready.Timestamp);
            Assert.Null(qmp.TryWaitForEvent("BLOCK_JOB_READY", null, TimeSpan.FromMilliseconds(50)));
        }

        [Fact]
        public void A_query_asked_ahead_is_sent_once_and_the_command_naming_it_takes_its_answer()
        {
            _qemu.Start();
            _qemu.AddDrive("disk0", _folder.File("a.qcow2"));
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            qmp.AskAhead(new[] { new QemuCommand("query-block"), new QemuCommand("query-jobs"), new QemuCommand("qom-get", new JsonObject().With("path", "/machine").With("property", "type")) });
            JsonArray disks = qmp.ExecuteArray("query-block");
            JsonArray jobs = qmp.ExecuteArray("query-jobs");
            // The same query with other arguments is a question of its own: asked now, answered by QEMU.
            _qemu.Override = (command, request, fake) =>
            {
                fake.Answer(request, request.GetObject("arguments").GetString("path"));
                return true;
            };
            object? other = qmp.Execute("qom-get", new JsonObject().With("path", "/machine/unattached").With("property", "type"));

            Assert.Equal("disk0", Assert.IsType<JsonObject>(Assert.Single(disks)).GetString("device"));
            Assert.Empty(jobs);
            Assert.Equal("/machine/unattached", other);
            lock (_qemu.Commands)
            {
                Assert.Equal(new[] { "qmp_capabilities", "query-block", "query-jobs", "qom-get", "qom-get" }, _qemu.Commands);
            }
        }

        [Fact]
        public void A_command_that_changes_something_drops_the_answers_asked_before_it()
        {
            _qemu.Start();
            FakeQemu.FakeDrive drive = _qemu.AddDrive("disk0", _folder.File("a.qcow2"));
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            qmp.AskAhead(new[] { new QemuCommand("query-block") });
            var snapshot = new JsonObject().With("type", "blockdev-snapshot-sync")
                .With("data", new JsonObject().With("device", "disk0").With("snapshot-file", _folder.File("a.overlay.qcow2")).With("format", "qcow2"));
            qmp.Execute("transaction", new JsonObject().With("actions", new JsonArray { snapshot }));
            JsonArray disks = qmp.ExecuteArray("query-block");

            // Asked again after the change: the answer has the overlay the transaction put on top.
            Assert.Equal(_folder.File("a.overlay.qcow2"), drive.Chain[0]);
            Assert.Contains("a.overlay.qcow2", JsonText.Serialize(disks, indented: false));
            lock (_qemu.Commands)
            {
                Assert.Equal(new[] { "qmp_capabilities", "query-block", "transaction", "query-block" }, _qemu.Commands);
            }
        }

        [Theory]
        [InlineData("transaction")]
        [InlineData("blockdev-add")]
        [InlineData("qom-set")]
        public void Only_queries_are_asked_ahead(string command)
        {
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            Assert.Throws<ArgumentException>(() => qmp.AskAhead(new[] { new QemuCommand(command) }));
            lock (_qemu.Commands)
            {
                Assert.Equal(new[] { "qmp_capabilities" }, _qemu.Commands);
            }
        }

        [Fact]
        public void Commands_from_several_threads_each_get_their_own_reply()
        {
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);
            _qemu.AddDrive("disk0", _folder.File("a.qcow2"));

            Parallel.For(0, 20, i =>
            {
                object? reply = i % 2 == 0 ? qmp.Execute("query-block") : qmp.Execute("query-jobs");
                Assert.IsType<JsonArray>(reply);
                if (i % 2 == 0)
                {
                    Assert.Single((JsonArray)reply!);
                }
                else
                {
                    Assert.Empty((JsonArray)reply!);
                }
            });
        }

        [Theory]
        [InlineData("GenericError", "QmpGenericError", FailureKind.InvalidOperation)]
        [InlineData("CommandNotFound", "QmpCommandNotFound", FailureKind.NotSupported)]
        [InlineData("DeviceNotFound", "QmpDeviceNotFound", FailureKind.ObjectNotFound)]
        [InlineData("DeviceNotActive", "QmpDeviceNotActive", FailureKind.ResourceUnavailable)]
        [InlineData("SomethingNew", "QmpCommandFailed", FailureKind.InvalidOperation)]
        public void Qmp_error_classes_become_stable_ids_and_kinds(string errorClass, string errorId, FailureKind kind)
        {
            _qemu.Override = (command, request, fake) =>
            {
                if (command != "block-commit")
                {
                    return false;
                }

                fake.AnswerError(request, errorClass, "Device 'disk9' not found");
                return true;
            };
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            var error = Assert.Throws<QemuCommandException>(() => qmp.Execute("block-commit", new JsonObject().With("device", "disk9")));

            Assert.Equal(errorId, error.ErrorId);
            Assert.Equal(kind, error.Kind);
            Assert.Equal(errorClass, error.ErrorClass);
            Assert.Equal("block-commit", error.Command);
            Assert.Contains(_qemu.SocketPath, error.Message, StringComparison.Ordinal);
            Assert.Contains("disk9", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_command_without_an_answer_times_out_naming_the_socket()
        {
            _qemu.Override = (command, _, _) => command == "query-block";
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            var error = Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-block", timeout: TimeSpan.FromMilliseconds(200)));

            Assert.Equal("QmpTimeout", error.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, error.Kind);
            Assert.Contains(_qemu.SocketPath, error.Message, StringComparison.Ordinal);
            Assert.Contains("query-block", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_monitor_that_sends_no_greeting_times_out_and_says_why()
        {
            _qemu.SendGreeting = false;
            _qemu.Start();

            var error = Assert.Throws<VmQuiesceException>(() => QmpClient.Connect(_qemu.SocketPath, TimeSpan.FromMilliseconds(300)));

            Assert.Equal("QmpTimeout", error.ErrorId);
            Assert.Contains("greeting", error.Message, StringComparison.Ordinal);
            Assert.Contains(_qemu.SocketPath, error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_missing_socket_is_a_connection_error_naming_the_path()
        {
            string path = _folder.File("nothing-here.sock");

            var error = Assert.Throws<VmQuiesceException>(() => QmpClient.Connect(path, TimeSpan.FromSeconds(5)));

            Assert.Equal("QmpConnectFailed", error.ErrorId);
            Assert.Equal(FailureKind.ConnectionError, error.Kind);
            Assert.Contains(path, error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_socket_that_dies_mid_command_fails_the_call_at_once_naming_the_socket()
        {
            _qemu.Override = (command, _, fake) =>
            {
                if (command != "query-block")
                {
                    return false;
                }

                fake.DropClient();
                return true;
            };
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);

            var error = Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-block", timeout: TimeSpan.FromSeconds(60)));

            Assert.Equal("QmpConnectionClosed", error.ErrorId);
            Assert.Contains(_qemu.SocketPath, error.Message, StringComparison.Ordinal);
            var again = Assert.Throws<VmQuiesceException>(() => qmp.Execute("query-jobs"));
            Assert.Equal("QmpConnectionClosed", again.ErrorId);
        }

        [Fact]
        public void Waiting_for_an_event_observes_cancellation()
        {
            _qemu.Start();
            using var qmp = QmpClient.Connect(_qemu.SocketPath);
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

            Assert.ThrowsAny<OperationCanceledException>(() => qmp.WaitForEvent("NEVER", null, TimeSpan.FromMinutes(5), cancel.Token));
        }

        [Fact]
        public void Qmp_and_the_agent_also_work_over_tcp()
        {
            using var qemu = new FakeQemu(null);
            using var agent = new FakeGuestAgent(null);
            qemu.Start();
            agent.Start();

            using var qmp = QmpClient.Connect(qemu.SocketPath);
            using var guest = GuestAgentClient.Connect(agent.SocketPath.Substring(4));

            Assert.Equal("7.2.22", qmp.QemuVersion);
            Assert.Equal("thawed", guest.GetFreezeStatus());
            Assert.Equal($"Repair-BackupVm -AgentSocket '{agent.SocketPath}' -Thaw", QemuRepairCommands.Thaw(agent.SocketPath));
        }

        [Theory]
        [InlineData("tcp:localhost:4444", true)]
        [InlineData("127.0.0.1:4444", true)]
        [InlineData("/run/vm/qmp.sock", false)]
        [InlineData("unix:/run/vm/qmp.sock", false)]
        public void Addresses_are_unix_paths_or_tcp_host_port(string address, bool isTcp)
        {
            var endPoint = JsonLineConnection.ParseEndPoint(address, "QMP monitor", "Qmp");

            Assert.Equal(isTcp, endPoint.AddressFamily != System.Net.Sockets.AddressFamily.Unix);
        }

        [Fact]
        public void A_socket_path_longer_than_unix_allows_is_rejected_before_connecting()
        {
            var error = Assert.Throws<VmQuiesceException>(() => QmpClient.Connect("/tmp/" + new string('x', 120) + ".sock"));

            Assert.Equal("QmpAddressInvalid", error.ErrorId);
        }
    }
}
