using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    public class QemuBackupViewTests
    {
        [Fact]
        public void A_release_stopped_by_its_token_runs_again_when_the_view_is_disposed_and_only_then()
        {
            var warnings = new List<string>();
            var view = new RecordingView(new OperationHost(warn: warnings.Add));
            using (var stopped = new CancellationTokenSource())
            {
                stopped.Cancel();
                Assert.ThrowsAny<OperationCanceledException>(() => view.Complete(false, stopped.Token));
            }

            view.Dispose();
            view.Complete(true, CancellationToken.None);
            view.Dispose();

            Assert.Equal(new[] { "release success=False cancelled=True", "release success=False cancelled=False" }, view.Releases);
            Assert.Empty(warnings);
        }

        [Fact]
        public void A_release_that_fails_is_not_tried_again_and_dispose_reports_what_to_do_as_a_warning()
        {
            var warnings = new List<string>();
            var view = new RecordingView(new OperationHost(warn: warnings.Add)) { Failure = new VmQuiesceException("OverlayCommitFailed", FailureKind.InvalidOperation, "The overlay stays.", "vm") { Remedy = "Run Repair-VmBackupSource." } };

            view.Dispose();
            view.Dispose();

            Assert.Single(view.Releases);
            Assert.Equal(new[] { "The overlay stays. Run Repair-VmBackupSource." }, warnings);
        }

        private sealed class RecordingView : QemuBackupView
        {
            public RecordingView(IOperationHost host)
                : base(host, QemuDiskFiles.Open(Array.Empty<QemuDisk>(), null, "vm"), null, Consistency.Crash, System.Threading.Tasks.Task.FromResult(new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, "test")), Array.Empty<ViewFile>())
            {
            }

            public List<string> Releases { get; } = new List<string>();

            public VmQuiesceException? Failure { get; init; }

            protected override void Release(bool success, CancellationToken cancel)
            {
                Releases.Add($"release success={success} cancelled={cancel.IsCancellationRequested}");
                cancel.ThrowIfCancellationRequested();
                if (Failure != null)
                {
                    throw Failure;
                }
            }
        }
    }
}
