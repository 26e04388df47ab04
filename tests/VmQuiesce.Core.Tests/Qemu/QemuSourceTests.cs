using System.Collections.Generic;
using System;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>The QEMU source against a fake QMP monitor and a fake agent over real unix sockets.</summary>
    public sealed class QemuSourceTests : IDisposable
    {
        private readonly FakeVm _vm = new FakeVm();

        public void Dispose() => _vm.Dispose();

        [Fact]
        public void A_linux_guest_is_frozen_around_one_transaction_and_the_overlay_is_committed_back()
        {
            bool frozenDuringTransaction = false;
            _vm.Qemu.Override = (command, _, _) =>
            {
                if (command == "transaction")
                {
                    frozenDuringTransaction = _vm.Agent.IsFrozen;
                }

                return false;
            };
            Start();
            QemuSource source = Source();

            using (IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.True(frozenDuringTransaction);
                Assert.False(_vm.Agent.IsFrozen);
                Assert.Equal(Consistency.FileSystem, view.Reached);
                Assert.Equal("GuestAgent", view.Quiesce.Method);
                Assert.Equal(new[] { "/", "/mnt/data" }, view.Quiesce.Frozen);
                Assert.True(view.Quiesce.FrozenMilliseconds > 0);
                Assert.Null(view.Snapshot);
                ViewFile file = Assert.Single(view.Files);
                Assert.Equal(_vm.Folder.File("base.qcow2"), file.OriginalPath);
                Assert.Equal("base.qcow2", file.RelativePath);
                Assert.Equal("qcow2", file.Format); // as query-block reports it
                // Read through the descriptor opened and checked before the freeze.
                Assert.Equal("base image of disk0", File.ReadAllText(file.ReadPath));
                string overlay = Assert.Single(Directory.GetFiles(_vm.Folder.Path, "base.qcow2.vmquiesce-*.qcow2"));
                Assert.Equal(overlay, _vm.Qemu.Drives[0].Chain[0]);

                view.Complete(true, CancellationToken.None);

                Assert.False(File.Exists(overlay));
            }

            Assert.Equal(new[] { _vm.Folder.File("base.qcow2") }, _vm.Qemu.Drives[0].Chain);
            Assert.Single(_vm.Qemu.Commands, "transaction");
            Assert.Contains("block-job-complete", _vm.Qemu.Commands);
            Assert.Contains("job-dismiss", _vm.Qemu.Commands);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void What_was_frozen_is_named_after_the_thaw_so_the_freeze_waits_for_no_question_more()
        {
            Start();

            using (IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.Equal(new[] { "/", "/mnt/data" }, view.Quiesce.Frozen);
                view.Complete(true, CancellationToken.None);
            }

            lock (_vm.Agent.Commands)
            {
                List<string> commands = _vm.Agent.Commands;
                Assert.Single(commands, "guest-get-fsinfo");
                Assert.True(commands.IndexOf("guest-fsfreeze-thaw") < commands.IndexOf("guest-get-fsinfo"), string.Join(", ", commands));
            }
        }

        [Fact]
        public void The_view_is_there_before_the_agent_names_what_it_froze()
        {
            using var answer = new ManualResetEventSlim(false);
            _vm.Agent.Override = (command, request, agent) =>
            {
                if (command != "guest-get-fsinfo")
                {
                    return false;
                }

                // Answered only once the test has the view; an open that waited for the names would get this error instead.
                if (answer.Wait(TimeSpan.FromSeconds(10)))
                {
                    agent.Answer(request, new JsonArray { new JsonObject().With("name", "vda1").With("mountpoint", "/srv").With("type", "ext4") });
                }
                else
                {
                    agent.AnswerError(request, "GenericError", "the test never got the view");
                }

                return true;
            };
            Start();

            using (IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.False(_vm.Agent.IsFrozen);
                answer.Set();
                Assert.Equal(new[] { "/srv" }, view.Quiesce.Frozen);
                view.Complete(true, CancellationToken.None);
            }

            Assert.True(answer.IsSet);
        }

        [Theory]
        [InlineData("error")]
        [InlineData("not an array")]
        public void An_agent_that_cannot_name_what_it_froze_after_the_thaw_leaves_the_count(string answer)
        {
            _vm.Agent.Override = (command, request, agent) =>
            {
                if (command != "guest-get-fsinfo")
                {
                    return false;
                }

                if (answer == "error")
                {
                    agent.AnswerError(request, "GenericError", "fsinfo failed");
                }
                else
                {
                    agent.Answer(request, "/ and /mnt/data");
                }

                return true;
            };
            Start();

            using (IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.Equal(Consistency.FileSystem, view.Reached);
                Assert.Equal(new[] { "2 file system(s)" }, view.Quiesce.Frozen);
                Assert.True(view.Quiesce.FrozenMilliseconds > 0);
                view.Complete(true, CancellationToken.None);
            }

            Assert.False(_vm.Agent.IsFrozen);
        }

        [Fact]
        public void The_connections_started_ahead_are_the_ones_the_backup_uses()
        {
            Start();
            using var ahead = QemuAhead.Start(Source().Options);
            var source = new QemuSource(Source().Options) { Ahead = ahead };

            using (IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.Equal(Consistency.FileSystem, view.Reached);
                Assert.Equal(1, _vm.Qemu.Connections); // the release connects anew
                view.Complete(true, CancellationToken.None);
            }

            Assert.Equal(1, _vm.Agent.Connections);
            Assert.True(_vm.Agent.ReceivedCommand("guest-fsfreeze-freeze"));
            lock (_vm.Agent.Commands)
            {
                // Synchronised once, ahead; the open's questions followed on the same connection.
                Assert.Equal(new[] { "guest-sync-delimited", "guest-fsfreeze-status", "guest-info", "guest-get-osinfo" }, _vm.Agent.Commands.TakeWhile(c => c != "guest-fsfreeze-freeze"));
                Assert.Single(_vm.Agent.Commands, "guest-sync-delimited");
            }

            Assert.Null(ahead.TakeMonitor()); // the open took both
            Assert.Null(ahead.TakeAgent());
            lock (_vm.Qemu.Commands)
            {
                // What the open asks first was asked once, ahead, and the open took each answer: nothing more before the snapshot.
                Assert.Equal(new[] { "qmp_capabilities" }.Concat(QemuSource.OpenQueries(tracking: false).Select(q => q.Name)), _vm.Qemu.Commands.TakeWhile(c => c != "transaction"));
            }
        }

        [Fact]
        public void Connections_started_ahead_that_no_backup_took_are_closed_and_the_agent_was_sent_only_the_sync()
        {
            Start();
            QemuAhead ahead = QemuAhead.Start(Source().Options);
            string[] asked = new[] { "qmp_capabilities" }.Concat(QemuSource.OpenQueries(tracking: false).Select(q => q.Name)).ToArray();
            // Closed with answers unread, the connection is reset: what the fake had not read yet would be lost.
            Assert.True(_vm.Qemu.WaitForCommands(asked.Length, TimeSpan.FromSeconds(30)));
            Assert.True(_vm.Agent.WaitForCommands(1, TimeSpan.FromSeconds(30)));

            ahead.Dispose();

            lock (_vm.Agent.Commands)
            {
                // Once the monitor's verified QEMU was seen to serve the agent's channel: the sync, nothing else.
                Assert.Equal(new[] { "guest-sync-delimited" }, _vm.Agent.Commands);
            }

            lock (_vm.Qemu.Commands)
            {
                // The monitor was only asked what every open asks first.
                Assert.Equal(asked, _vm.Qemu.Commands);
                Assert.All(_vm.Qemu.Commands.Skip(1), command => Assert.True(QmpClient.IsQuery(command), command));
            }

            // Monitor and agent serve one client at a time: a connection left open would keep the next backup from it.
            using (IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None))
            {
                Assert.Equal(Consistency.FileSystem, view.Reached);
                view.Complete(true, CancellationToken.None);
            }

            Assert.Equal(2, _vm.Agent.Connections);
            Assert.True(_vm.Qemu.Connections >= 2);
        }

        [Theory]
        [InlineData("5f0c2a4e-8b7d-4e51-9a43-1c2d3e4f5a6b", "5f0c2a4e-8b7d-4e51-9a43-1c2d3e4f5a6b")]
        [InlineData("00000000-0000-0000-0000-000000000000", null)] // QEMU's answer for a VM started without -uuid
        public void The_view_carries_the_uuid_qemu_reports_so_restore_points_record_it(string reported, string? expected)
        {
            _vm.Qemu.Uuid = reported;
            Start();

            using IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            view.Complete(true, CancellationToken.None);

            Assert.Equal(expected == null ? (Guid?)null : Guid.Parse(expected), Assert.IsAssignableFrom<IIdentifiedView>(view).VmUuid);
        }

        [Fact]
        public void The_view_carries_the_machine_qemu_reports_allowlisted_and_an_answer_of_another_shape_leaves_its_value_out()
        {
            _vm.Qemu.Override = (command, request, fake) =>
            {
                string? path = request.GetOptionalObject("arguments")?.GetOptionalString("path");
                object? answer = command switch
                {
                    "qom-get" when path == "/machine" => "pc-q35-7.2-machine",
                    "qom-get" => "max-x86_64-cpu,kernel=x-x86_64-cpu", // a CPU model that would add an option: left out
                    "query-memory-size-summary" => new JsonObject().With("base-memory", 160L * 1024 * 1024),
                    "query-cpus-fast" => new JsonObject(), // not the array QEMU answers: left out, the backup goes on
                    _ => null,
                };
                if (answer != null)
                {
                    fake.Answer(request, answer);
                }

                return answer != null;
            };
            Start();

            using IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            view.Complete(true, CancellationToken.None);

            VmQuiesce.Core.Repository.VmMachine machine = Assert.IsAssignableFrom<IIdentifiedView>(view).Machine!;
            Assert.Equal("pc-q35-7.2", machine.Type);
            Assert.Equal(160, machine.MemoryMiB);
            Assert.Null(machine.Cpus);
            Assert.Null(machine.CpuModel);
        }

        [Fact]
        public void All_disks_switch_in_one_transaction()
        {
            _vm.Qemu.AddDrive("disk1", _vm.Folder.File("second.raw"), "raw");
            JsonObject? transaction = null;
            _vm.Qemu.Override = (command, request, _) =>
            {
                if (command == "transaction")
                {
                    transaction = request;
                }

                return false;
            };
            Start();

            using IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.Equal(2, transaction!.GetObject("arguments").GetArray("actions").Count);
            Assert.Equal(new[] { "base.qcow2", "second.raw" }, view.Files.Select(f => f.RelativePath));
            view.Complete(true, CancellationToken.None);
            Assert.All(_vm.Qemu.Drives, d => Assert.Single(d.Chain));
        }

        [Fact]
        public void A_windows_guest_reaches_application_consistency()
        {
            _vm.Agent.OsId = "mswindows";
            Start();

            using IConsistentView view = Source().OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None);

            Assert.Equal(Consistency.Application, view.Reached);
        }

        [Fact]
        public void Application_consistency_required_of_a_linux_guest_fails_before_anything_changes()
        {
            Start();

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions { Required = Consistency.Application }, CancellationToken.None));

            Assert.Equal("ConsistencyNotReached", error.ErrorId);
            Assert.DoesNotContain("transaction", _vm.Qemu.Commands);
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void Without_an_agent_a_required_file_system_consistency_is_an_error_and_nothing_is_created()
        {
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions { Required = Consistency.FileSystem }, CancellationToken.None));

            Assert.Equal("ConsistencyNotReached", error.ErrorId);
            Assert.Contains("Crash", error.Message, StringComparison.Ordinal);
            Assert.NotNull(error.Remedy);
            Assert.DoesNotContain("transaction", _vm.Qemu.Commands);
        }

        [Fact]
        public void Without_an_agent_and_a_lower_level_allowed_the_view_says_crash()
        {
            Start();
            var warnings = new System.Collections.Generic.List<string>();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess }, new OperationHost(warn: warnings.Add));

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { Required = Consistency.FileSystem, AllowLower = true }, CancellationToken.None);

            Assert.Equal(Consistency.Crash, view.Reached);
            Assert.Equal("None", view.Quiesce.Method);
            Assert.Empty(view.Quiesce.Frozen);
            Assert.Contains(warnings, w => w.Contains("Crash", StringComparison.Ordinal));
        }

        [Fact]
        public void An_agent_with_freeze_disabled_is_not_silently_used_as_crash()
        {
            _vm.Agent.FreezeEnabled = false;
            Start();

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("ConsistencyNotReached", error.ErrorId);
            Assert.Contains("guest-fsfreeze-freeze", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void An_agent_without_freeze_still_runs_the_hooks_when_a_lower_level_is_allowed()
        {
            _vm.Agent.FreezeEnabled = false;
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath)
            {
                Trust = FakeQemu.TrustThisProcess,
                AgentSocket = _vm.Agent.SocketPath,
                PreFreezeHook = new[] { "/usr/local/bin/db-pause" },
                PostThawHook = new[] { "/usr/local/bin/db-resume" },
            });

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions { AllowLower = true }, CancellationToken.None);

            Assert.Equal(Consistency.Crash, view.Reached);
            Assert.Equal("None", view.Quiesce.Method);
            Assert.Equal(0, view.Quiesce.FrozenMilliseconds);
            Assert.Equal(new[] { "/usr/local/bin/db-pause ", "/usr/local/bin/db-resume " }, _vm.Agent.ExecLog);
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void An_agent_that_does_not_answer_is_a_timeout_naming_its_socket_and_leaves_no_overlay()
        {
            _vm.Agent.Answers = false;
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, AgentTimeout = TimeSpan.FromMilliseconds(500) });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("GuestAgentTimeout", error.ErrorId);
            Assert.Contains(_vm.Agent.SocketPath, error.Message, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFiles(_vm.Folder.Path, "*.vmquiesce-*"));
            Assert.DoesNotContain("transaction", _vm.Qemu.Commands);
        }

        [Fact]
        public void A_refused_transaction_thaws_the_guest_and_leaves_nothing()
        {
            _vm.Qemu.Override = (command, request, fake) =>
            {
                if (command != "transaction")
                {
                    return false;
                }

                fake.AnswerError(request, "GenericError", "Could not create file: Permission denied");
                return true;
            };
            Start();

            var error = Assert.Throws<QemuCommandException>(() => Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("QmpGenericError", error.ErrorId);
            Assert.False(_vm.Agent.IsFrozen);
            Assert.True(_vm.Agent.Thawed.IsSet);
            Assert.Empty(Directory.GetFiles(_vm.Folder.Path, "*.vmquiesce-*"));
        }

        [Fact]
        public void A_hung_transaction_is_cut_off_by_the_watchdog_which_thaws_the_guest()
        {
            _vm.Qemu.Override = (command, _, _) => command == "transaction";
            Start();

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions { FreezeTimeout = TimeSpan.FromMilliseconds(500) }, CancellationToken.None));

            Assert.Equal("FreezeTimedOut", error.ErrorId);
            Assert.False(_vm.Agent.IsFrozen);
            Assert.Empty(Directory.GetFiles(_vm.Folder.Path, "*.vmquiesce-*"));
        }

        [Fact]
        public void Cancellation_during_the_snapshot_thaws_and_releases_the_overlay()
        {
            using var cancel = new CancellationTokenSource();
            _vm.Qemu.Override = (command, _, _) =>
            {
                if (command == "transaction")
                {
                    cancel.Cancel();
                }

                return false;
            };
            Start();

            Assert.ThrowsAny<OperationCanceledException>(() => Source().OpenConsistentView(new QuiesceOptions(), cancel.Token));

            Assert.False(_vm.Agent.IsFrozen);
            Assert.Equal(new[] { _vm.Folder.File("base.qcow2") }, _vm.Qemu.Drives[0].Chain);
            Assert.Empty(Directory.GetFiles(_vm.Folder.Path, "*.vmquiesce-*"));
        }

        [Fact]
        public void A_failed_commit_keeps_the_overlay_and_says_exactly_what_to_run()
        {
            Start();
            IConsistentView view = Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            _vm.Qemu.FailCommits = true;
            string overlay = _vm.Qemu.Drives[0].Chain[0];

            var error = Assert.Throws<VmQuiesceException>(() => view.Complete(true, CancellationToken.None));

            Assert.Equal("OverlayCommitFailed", error.ErrorId);
            Assert.Contains(overlay, error.Message, StringComparison.Ordinal);
            // VmQuiesce's own commands, for a running VM and for one whose QEMU has ended: no socat, no QMP by hand.
            Assert.Contains($"Repair-BackupVm -QmpSocket '{_vm.Qemu.SocketPath}'", error.Remedy, StringComparison.Ordinal);
            Assert.Contains($"Repair-BackupVm -Overlay '{overlay}'", error.Remedy, StringComparison.Ordinal);
            Assert.DoesNotContain("socat", error.Remedy, StringComparison.Ordinal);
            Assert.True(File.Exists(overlay));
            // The run's record stays for the next command, which repairs it (see QemuRecoveryTests); readiness names it.
            ReadinessCheck leftovers = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, CancellationToken.None)
                .Single(c => c.Check == "NoLeftovers");
            Assert.Equal(ReadinessStatus.Failed, leftovers.StatusValue);
            Assert.Contains(overlay, leftovers.Detail, StringComparison.Ordinal);
        }

        [Fact]
        public void Leftovers_from_an_earlier_run_block_a_new_backup_and_are_named()
        {
            string stale = _vm.Folder.File("base.qcow2.vmquiesce-20260101T000000000Z.qcow2");
            File.WriteAllText(stale, "old overlay");
            _vm.Qemu.Drives[0].Chain.Insert(0, stale);
            string unused = _vm.Folder.File("base.qcow2.vmquiesce-20250101T000000000Z.qcow2");
            File.WriteAllText(unused, "older overlay, no longer in use");
            Start();

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None));
            var leftovers = Source().FindLeftovers(CancellationToken.None);

            Assert.Equal("LeftoversFound", error.ErrorId);
            Assert.Contains(stale, error.Message, StringComparison.Ordinal);
            Assert.Equal(2, leftovers.Count);
            Assert.Contains(leftovers, l => l.Contains(stale, StringComparison.Ordinal) && l.Contains("Repair-BackupVm -QmpSocket", StringComparison.Ordinal));
            Assert.Contains($"Repair-BackupVm -QmpSocket '{_vm.Qemu.SocketPath}' -AgentSocket '{_vm.Agent.SocketPath}'", error.Remedy, StringComparison.Ordinal);
            Assert.Contains(leftovers, l => l.Contains(unused, StringComparison.Ordinal) && l.Contains("no longer in use", StringComparison.Ordinal));
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void Internal_mode_saves_a_snapshot_with_ram_and_records_it()
        {
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, Mode = QemuSnapshotMode.Internal });

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.NotNull(view.Snapshot);
            Assert.Equal("QemuInternal", view.Snapshot!.Kind);
            Assert.Equal(view.Snapshot.Name, Assert.Single(_vm.Qemu.InternalSnapshots));
            Assert.StartsWith("vmquiesce-", view.Snapshot.Name, StringComparison.Ordinal);
            Assert.True(_vm.Qemu.Commands.IndexOf("snapshot-save") < _vm.Qemu.Commands.IndexOf("transaction"));
            view.Complete(true, CancellationToken.None);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void Internal_mode_deletes_its_snapshot_when_the_backup_did_not_succeed()
        {
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, Mode = QemuSnapshotMode.Internal });
            IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None);
            Assert.Single(_vm.Qemu.InternalSnapshots);

            view.Complete(false, CancellationToken.None);

            Assert.Empty(_vm.Qemu.InternalSnapshots);
            Assert.Contains("snapshot-delete", _vm.Qemu.Commands);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void Internal_mode_deletes_its_snapshot_when_the_transaction_after_it_fails()
        {
            _vm.Qemu.Override = (command, request, fake) =>
            {
                if (command != "transaction")
                {
                    return false;
                }

                fake.AnswerError(request, "GenericError", "No space left on device");
                return true;
            };
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, Mode = QemuSnapshotMode.Internal });

            Assert.Throws<QemuCommandException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Empty(_vm.Qemu.InternalSnapshots);
            Assert.False(_vm.Agent.IsFrozen);
            Assert.Empty(source.FindLeftovers(CancellationToken.None));
        }

        [Fact]
        public void Internal_mode_refuses_a_raw_disk()
        {
            _vm.Qemu.AddDrive("disk1", _vm.Folder.File("data.raw"), "raw");
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, Mode = QemuSnapshotMode.Internal });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("InternalSnapshotNeedsQcow2", error.ErrorId);
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void Hooks_run_in_the_guest_before_the_freeze_and_after_the_thaw()
        {
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath)
            {
                Trust = FakeQemu.TrustThisProcess,
                AgentSocket = _vm.Agent.SocketPath,
                PreFreezeHook = new[] { "/usr/local/bin/db-pause", "--all" },
                PostThawHook = new[] { "/usr/local/bin/db-resume" },
            });

            using IConsistentView view = source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None);

            Assert.Equal(QuiesceMethod.GuestAgent, view.Quiesce.Method); // the record waits for the post-thaw hook
            Assert.Equal(new[] { "/usr/local/bin/db-pause --all", "/usr/local/bin/db-resume " }, _vm.Agent.ExecLog);
            int freeze = _vm.Agent.Commands.IndexOf("guest-fsfreeze-freeze");
            Assert.True(_vm.Agent.Commands.IndexOf("guest-exec") < freeze);
            Assert.True(_vm.Agent.Commands.LastIndexOf("guest-exec") > _vm.Agent.Commands.IndexOf("guest-fsfreeze-thaw"));
        }

        [Fact]
        public void The_hosts_hooks_wrap_the_guests_hooks_around_the_freeze()
        {
            Start();
            var order = new List<string>();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath)
            {
                Trust = FakeQemu.TrustThisProcess,
                AgentSocket = _vm.Agent.SocketPath,
                PreFreezeHook = new[] { "/usr/local/bin/db-pause" },
                PostThawHook = new[] { "/usr/local/bin/db-resume" },
            });
            var options = new QuiesceOptions
            {
                PreFreeze = _ => order.Add($"host pre-freeze after {_vm.Agent.ExecLog.Count} guest hooks"),
                PostThaw = _ => order.Add($"host post-thaw after {_vm.Agent.ExecLog.Count} guest hooks, thawed: {_vm.Agent.Commands.Contains("guest-fsfreeze-thaw")}"),
            };

            using IConsistentView view = source.OpenConsistentView(options, CancellationToken.None);

            Assert.Equal(QuiesceMethod.GuestAgent, view.Quiesce.Method); // the record waits for the post-thaw hooks
            Assert.Equal(new[] { "host pre-freeze after 0 guest hooks", "host post-thaw after 2 guest hooks, thawed: True" }, order);
        }

        [Fact]
        public void The_post_thaw_hooks_run_beside_the_copy_the_view_exists_before_they_end_and_its_quiesce_record_waits_for_them()
        {
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath)
            {
                Trust = FakeQemu.TrustThisProcess,
                AgentSocket = _vm.Agent.SocketPath,
                PostThawHook = new[] { "/usr/local/bin/db-resume" },
            });
            using var viewMade = new ManualResetEventSlim();
            bool hookSawTheView = false;
            // An open that waited for its post-thaw hooks would keep this one waiting its whole 30 s, and it would see no view.
            var options = new QuiesceOptions { PreFreeze = _ => { }, PostThaw = _ => hookSawTheView = viewMade.Wait(TimeSpan.FromSeconds(30)) };

            using IConsistentView view = source.OpenConsistentView(options, CancellationToken.None);
            viewMade.Set();

            Assert.Equal(QuiesceMethod.GuestAgent, view.Quiesce.Method);
            Assert.True(hookSawTheView);
            Assert.Equal(new[] { "/usr/local/bin/db-resume " }, _vm.Agent.ExecLog);
        }

        [Fact]
        public void A_post_thaw_hook_that_fails_after_the_thaw_fails_the_views_quiesce_record_and_one_after_an_open_that_failed_is_a_warning()
        {
            Start();
            var warnings = new List<string>();
            var failing = new QuiesceOptions { PreFreeze = _ => { }, PostThaw = _ => throw new InvalidOperationException("no service to resume") };
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath });

            using (IConsistentView view = source.OpenConsistentView(failing, CancellationToken.None))
            {
                Assert.Equal("no service to resume", Assert.Throws<InvalidOperationException>(() => view.Quiesce).Message);
                view.Complete(false, CancellationToken.None);
            }

            // The guest froze nothing, so the open fails on the consistency asked for; the hook's failure after the thaw is told.
            _vm.Agent.MountPoints = Array.Empty<string>();
            var host = new OperationHost(warn: warnings.Add);
            var lower = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, host);
            Assert.Throws<VmQuiesceException>(() => lower.OpenConsistentView(failing, CancellationToken.None));
            Assert.Contains(warnings, w => w.Contains("post-thaw hook failed after an earlier failure: no service to resume", StringComparison.Ordinal));
        }

        [Fact]
        public void A_failing_pre_freeze_hook_stops_the_backup_before_the_freeze()
        {
            _vm.Agent.OnExec = (_, _) => (2, "");
            Start();
            var source = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, PreFreezeHook = new[] { "/bin/false" } });

            var error = Assert.Throws<VmQuiesceException>(() => source.OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("PreFreezeHookFailed", error.ErrorId);
            Assert.Contains("exit code 2", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("guest-fsfreeze-freeze", _vm.Agent.Commands);
        }

        [Fact]
        public void A_hook_without_a_program_or_without_an_agent_is_rejected_before_anything_happens()
        {
            Start();
            var empty = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath, PreFreezeHook = Array.Empty<string>() });
            var noAgent = new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, PostThawHook = new[] { "/bin/true" } });

            Assert.Equal("HookInvalid", Assert.Throws<VmQuiesceException>(() => empty.OpenConsistentView(new QuiesceOptions(), CancellationToken.None)).ErrorId);
            Assert.Equal("HookNeedsAgent", Assert.Throws<VmQuiesceException>(() => noAgent.OpenConsistentView(new QuiesceOptions { AllowLower = true }, CancellationToken.None)).ErrorId);
            Assert.Empty(_vm.Qemu.Commands);
        }

        [Fact]
        public void A_guest_that_is_already_frozen_is_not_backed_up()
        {
            Start();
            using (var client = GuestAgentClient.Connect(_vm.Agent.SocketPath))
            {
                client.Freeze();
            }

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions(), CancellationToken.None));

            Assert.Equal("GuestAlreadyFrozen", error.ErrorId);
            Assert.Contains($"Repair-BackupVm -QmpSocket '{_vm.Qemu.SocketPath}' -AgentSocket '{_vm.Agent.SocketPath}' -Thaw", error.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void A_guest_frozen_by_someone_else_is_diagnosed_as_frozen_and_left_alone_even_when_a_lower_consistency_is_allowed()
        {
            // qemu-ga 7.2 reports the freeze itself as disabled while frozen: asked first, that looked like "no freeze support".
            Start();
            using (var client = GuestAgentClient.Connect(_vm.Agent.SocketPath))
            {
                client.Freeze();
                Assert.False(client.GetInfo().IsEnabled("guest-fsfreeze-freeze"));
            }

            var error = Assert.Throws<VmQuiesceException>(() => Source().OpenConsistentView(new QuiesceOptions { AllowLower = true }, CancellationToken.None));
            ReadinessCheck freeze = QemuReadiness.Check(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath }, CancellationToken.None)
                .Single(c => c.Check == "FreezeSupported");

            Assert.Equal("GuestAlreadyFrozen", error.ErrorId);
            Assert.DoesNotContain("transaction", _vm.Qemu.Commands);
            Assert.True(_vm.Agent.IsFrozen, "a guest VmQuiesce did not freeze is not thawed without -Thaw");
            Assert.Equal(ReadinessStatus.Failed, freeze.StatusValue);
            Assert.Contains("no VmQuiesce backup is recorded as having frozen it", freeze.Detail, StringComparison.Ordinal);
            Assert.Contains("-Thaw", freeze.Remedy, StringComparison.Ordinal);
            Assert.DoesNotContain("install", freeze.Remedy, StringComparison.OrdinalIgnoreCase);
        }

        private void Start()
        {
            _vm.Qemu.Start();
            _vm.Agent.Start();
        }

        private QemuSource Source() => new QemuSource(new QemuSourceOptions("vm1", _vm.Qemu.SocketPath) { Trust = FakeQemu.TrustThisProcess, AgentSocket = _vm.Agent.SocketPath });
    }
}
