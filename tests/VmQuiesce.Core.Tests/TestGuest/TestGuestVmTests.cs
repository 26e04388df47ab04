using System;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using Xunit;

namespace VmQuiesce.Core.Tests.TestGuest
{
    public class TestGuestVmTests
    {
        private static readonly TimeSpan s_agentTimeout = TimeSpan.FromSeconds(30);

        [GuestFact]
        public void BootsWithItsAgentAnsweringAndIsGoneAfterDispose()
        {
            string folder;
            using (TestGuestVm vm = TestGuestVm.Boot())
            {
                folder = vm.WorkFolder;
                Assert.StartsWith(TestGuestVm.ReadyMarker + " disks=1 ", vm.ReadyLine, StringComparison.Ordinal);
                Assert.True(File.Exists(vm.QmpSocketPath), "QMP socket missing");
                using (var agent = RawAgent.Connect(vm.AgentSocketPath))
                {
                    Assert.Equal("{}", agent.Execute("{\"execute\": \"guest-ping\"}").GetObject("return").ToString());
                }
                vm.Kill();
                Assert.True(vm.Process.HasExited);
            }
            Assert.False(Directory.Exists(folder), $"{folder} was not deleted");
        }

        [GuestFact]
        public void TwoGuestsBootInParallel()
        {
            using TestGuestVm first = TestGuestVm.Start();
            using TestGuestVm second = TestGuestVm.Start();
            Parallel.Invoke(first.WaitUntilReady, second.WaitUntilReady);

            Assert.NotEqual(first.AgentSocketPath, second.AgentSocketPath);
            foreach (TestGuestVm vm in new[] { first, second })
            {
                using var agent = RawAgent.Connect(vm.AgentSocketPath);
                Assert.True(agent.Execute("{\"execute\": \"guest-ping\"}").Contains("return"));
            }
        }

        [GuestFact]
        public void DataWrittenInTheGuestIsReadOfflineAfterGuestShutdown()
        {
            using TestGuestVm vm = TestGuestVm.Boot(new TestGuestOptions { DiskCount = 2 });
            Assert.Contains(" disks=2 ", vm.ReadyLine, StringComparison.Ordinal);
            using (var agent = RawAgent.Connect(vm.AgentSocketPath))
            {
                agent.Exec("echo first > /mnt/data/marker.txt && echo second > /mnt/data1/marker.txt");
                // The guest can do what backups need: freeze and thaw every data disk.
                Assert.Equal(2, agent.Execute("{\"execute\": \"guest-fsfreeze-freeze\"}").GetInt64("return"));
                Assert.Equal(2, agent.Execute("{\"execute\": \"guest-fsfreeze-thaw\"}").GetInt64("return"));
                // No reply on success: the guest's /sbin/shutdown syncs, unmounts and powers off.
                agent.Send("{\"execute\": \"guest-shutdown\"}");
            }
            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(60)), "QEMU did not exit after guest-shutdown");
            Assert.Equal(0, vm.Process.ExitCode);

            Assert.Equal("first\n", GuestDiskImage.ReadFile(vm.DiskPaths[0], "/marker.txt"));
            Assert.Equal("second\n", GuestDiskImage.ReadFile(vm.DiskPaths[1], "/marker.txt"));
            Assert.Null(GuestDiskImage.ReadFile(vm.DiskPaths[0], "/absent.txt"));
            foreach (string disk in vm.DiskPaths)
            {
                Assert.False(GuestDiskImage.NeedsRecovery(disk), $"{disk} needs journal recovery after a clean shutdown");
                Assert.Equal(0, GuestDiskImage.Fsck(disk));
            }
        }

        [GuestFact]
        public void AKilledAgentIsRestartedAndAnswersAgain()
        {
            using TestGuestVm vm = TestGuestVm.Boot();
            using (var agent = RawAgent.Connect(vm.AgentSocketPath))
            {
                // Killed from a detached job, so the guest-exec that starts it can complete first.
                agent.Exec("(sleep 1; kill -9 $(pidof qemu-ga)) >/dev/null 2>&1 &");
            }
            Assert.StartsWith(TestGuestVm.AgentExitedMarker + " status=137", vm.WaitForConsoleLine(TestGuestVm.AgentExitedMarker, 1, TimeSpan.FromSeconds(60)), StringComparison.Ordinal);
            vm.WaitForConsoleLine(TestGuestVm.AgentRestartedMarker, 1, TimeSpan.FromSeconds(60));

            using var restarted = RawAgent.Connect(vm.AgentSocketPath);
            Assert.True(restarted.Execute("{\"execute\": \"guest-ping\"}").Contains("return"));
        }

        [GuestFact]
        public void ARawDiskIsCreatedCleanAndEmpty()
        {
            string folder = Directory.CreateTempSubdirectory("vmq-disk-").FullName;
            try
            {
                string disk = Path.Combine(folder, "disk.raw");
                GuestDiskImage.Create(disk, 32L * 1024 * 1024, GuestDiskFormat.Raw, "data0");

                Assert.Equal(32L * 1024 * 1024, new FileInfo(disk).Length);
                Assert.False(GuestDiskImage.NeedsRecovery(disk));
                Assert.Equal(0, GuestDiskImage.Fsck(disk));
                Assert.Null(GuestDiskImage.ReadFile(disk, "/marker.txt"));
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        /// <summary>
        /// Just enough of the guest-agent protocol to prove the guest answers; the real client lives in
        /// the core (Sources/Qemu). The sync: a 0xFF resets the agent's parser, which answers it with a
        /// parse error, then replies to guest-sync-delimited with 0xFF before the JSON.
        /// </summary>
        private sealed class RawAgent : IDisposable
        {
            private readonly Socket _socket;
            private readonly NetworkStream _stream;

            private RawAgent(Socket socket)
            {
                _socket = socket;
                _stream = new NetworkStream(socket, ownsSocket: true) { ReadTimeout = (int)s_agentTimeout.TotalMilliseconds };
            }

            public static RawAgent Connect(string socketPath)
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Connect(new UnixDomainSocketEndPoint(socketPath));
                var agent = new RawAgent(socket);
                agent.Sync();
                return agent;
            }

            public JsonObject Execute(string command)
            {
                Send(command);
                return JsonText.ParseObject(ReadLine());
            }

            /// <summary>Runs a shell command in the guest and waits for it to exit successfully.</summary>
            public void Exec(string shellCommand)
            {
                var arguments = new JsonObject()
                    .With("path", "/bin/sh")
                    .With("arg", new JsonArray(new object?[] { "-c", shellCommand }));
                string request = new JsonObject().With("execute", "guest-exec").With("arguments", arguments).ToString();
                long pid = Execute(request).GetObject("return").GetInt64("pid");
                var deadline = Stopwatch.StartNew();
                while (true)
                {
                    JsonObject status = Execute($"{{\"execute\": \"guest-exec-status\", \"arguments\": {{\"pid\": {pid}}}}}").GetObject("return");
                    if (status.GetBoolean("exited"))
                    {
                        Assert.Equal(0, status.GetInt64("exitcode"));
                        return;
                    }
                    Assert.True(deadline.Elapsed < s_agentTimeout, $"'{shellCommand}' did not exit in the guest within {s_agentTimeout.TotalSeconds} s");
                    Thread.Sleep(50); // the poll interval; the condition is the agent's exited flag
                }
            }

            public void Send(string command) => _stream.Write(Encoding.UTF8.GetBytes(command + "\n"));

            public void Dispose() => _stream.Dispose();

            private void Sync()
            {
                const int id = 4242;
                _stream.WriteByte(0xFF);
                Send($"{{\"execute\": \"guest-sync-delimited\", \"arguments\": {{\"id\": {id}}}}}");
                while (_stream.ReadByte() is int value && value != 0xFF)
                {
                    Assert.NotEqual(-1, value);
                }
                Assert.Equal(id, JsonText.ParseObject(ReadLine()).GetInt64("return"));
            }

            private string ReadLine()
            {
                var line = new StringBuilder();
                for (int value = _stream.ReadByte(); value != '\n'; value = _stream.ReadByte())
                {
                    Assert.NotEqual(-1, value);
                    line.Append((char)value);
                }
                return line.ToString();
            }
        }
    }
}
