using System;
using System.Collections.Generic;
using System.Threading;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>How the disks are made stable for the copy.</summary>
    public enum QemuSnapshotMode
    {
        /// <summary>One atomic transaction of external qcow2 overlays; the base images are the view; overlays are committed back afterwards.</summary>
        External,

        /// <summary>
        /// An internal snapshot with RAM state (snapshot-save, qcow2 only) for a "revert to the captured
        /// snapshot" restore, plus the external overlays so the images can be copied while the VM runs.
        /// </summary>
        Internal,
    }

    /// <summary>Where a QEMU VM is reached and how its backup source behaves.</summary>
    public sealed class QemuSourceOptions
    {
        public QemuSourceOptions(string name, string qmpSocket)
        {
            Name = name;
            QmpSocket = qmpSocket;
        }

        public string Name { get; }

        /// <summary>The QMP monitor: a unix socket path, or tcp:host:port.</summary>
        public string QmpSocket { get; }

        /// <summary>The host side of the guest agent's channel; null: nothing can be frozen (Crash consistency).</summary>
        public string? AgentSocket { get; init; }

        public QemuSnapshotMode Mode { get; init; } = QemuSnapshotMode.External;

        public TimeSpan QmpTimeout { get; init; } = TimeSpan.FromSeconds(30);

        /// <summary>Every guest-agent call, including the sync before the first one.</summary>
        public TimeSpan AgentTimeout { get; init; } = TimeSpan.FromSeconds(10);

        /// <summary>How long committing one overlay back may take (it grows with what the guest wrote meanwhile).</summary>
        public TimeSpan CommitTimeout { get; init; } = TimeSpan.FromMinutes(30);

        /// <summary>A program (and its arguments) run in the guest through the agent before the freeze.</summary>
        public IReadOnlyList<string>? PreFreezeHook { get; init; }

        /// <summary>A program (and its arguments) run in the guest through the agent after the thaw.</summary>
        public IReadOnlyList<string>? PostThawHook { get; init; }

        public TimeSpan HookTimeout { get; init; } = TimeSpan.FromMinutes(2);

        /// <summary>The guardian that thaws the guest should this process die while it is frozen (null: none; tests start their own).</summary>
        internal Func<FreezeGuardian?>? Guardian { get; init; } = FreezeGuardian.ForThisProcess;

        /// <summary>Which QEMU processes are believed (tests trust their own stand-in).</summary>
        internal QemuProcessTrust Trust { get; init; } = QemuProcessTrust.FromEnvironment();

        /// <summary>
        /// Runs inside the frozen window just before the snapshot transaction: lets integration tests make
        /// the snapshot step throw, hang or cancel against a real guest.
        /// </summary>
        internal Action<CancellationToken>? BeforeSnapshot { get; init; }

        /// <summary>Called at each step boundary of the freeze (tests inject a cancel or the deadline there).</summary>
        internal Action<Quiesce.FreezeStep>? OnFreezeStep { get; init; }

        /// <summary>Replaces the freeze deadline's clock with a token the test cancels.</summary>
        internal Func<TimeSpan, CancellationToken>? FreezeDeadline { get; init; }
    }
}
