using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>Checks, without changing anything, whether a QEMU VM can be backed up consistently.</summary>
    public static class QemuReadiness
    {
        /// <summary>Overlays start small and grow with what the guest writes during the copy: ask for this much at least.</summary>
        internal const long MinimumOverlaySpace = 256L * 1024 * 1024;

        public static IReadOnlyList<ReadinessCheck> Check(QemuSourceOptions options, CancellationToken cancel)
        {
            var checks = new List<ReadinessCheck>();
            string vm = options.Name;
            var source = new QemuSource(options);
            QmpClient qmp;
            try
            {
                qmp = source.ConnectQmp(cancel);
            }
            catch (VmQuiesceException e)
            {
                checks.Add(new ReadinessCheck(vm, "QmpReachable", ReadinessStatus.Failed, e.Message,
                    e.ErrorId == "QemuProcessUntrusted" ? e.Remedy : "Start the VM with -qmp unix:<path>,server=on,wait=off and give that path; QEMU serves one QMP client at a time, so close other clients."));
                checks.AddRange(new[] { "AgentAnswering", "FreezeSupported", "DisksSnapshotable", "OverlaySpace", "NoLeftovers" }
                    .Select(name => new ReadinessCheck(vm, name, ReadinessStatus.Skipped, "Needs the QMP monitor.")));
                return checks;
            }

            using (qmp)
            {
                checks.Add(new ReadinessCheck(vm, "QmpReachable", ReadinessStatus.Passed, $"QEMU {qmp.QemuVersion} answers on '{options.QmpSocket}'."));
                checks.AddRange(CheckAgent(source, qmp.VerifiedPeer, options, cancel));
                IReadOnlyList<QemuDisk> disks = QemuBlockOperations.QueryDisks(qmp, cancel);
                checks.Add(CheckDisks(vm, disks, options.Mode, qmp.VerifiedPeer));
                checks.Add(CheckSpace(vm, disks));
                checks.Add(CheckLeftovers(source, qmp, disks, options, cancel));
            }

            return checks;
        }

        private static IEnumerable<ReadinessCheck> CheckAgent(QemuSource source, QemuPeer? peer, QemuSourceOptions options, CancellationToken cancel)
        {
            string vm = options.Name;
            if (options.AgentSocket == null)
            {
                yield return new ReadinessCheck(vm, "AgentAnswering", ReadinessStatus.Warning, "No guest agent socket was given: backups reach only Crash consistency.",
                    "Add a guest agent channel (-chardev socket,id=qga0,path=<path>,server=on,wait=off -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0), run qemu-guest-agent in the guest and give -AgentSocket.");
                yield return new ReadinessCheck(vm, "FreezeSupported", ReadinessStatus.Skipped, "Needs the guest agent.");
                yield break;
            }

            GuestAgentInfo? info = null;
            GuestOsInfo? os = null;
            string? freezeStatus = null;
            string? failure = null;
            string? remedy = null;
            try
            {
                using GuestAgentClient agent = source.ConnectAgent(options.AgentSocket, peer, cancel);
                agent.Sync(options.AgentTimeout, cancel);
                info = agent.GetInfo(cancel);
                os = info.IsEnabled("guest-get-osinfo") ? agent.GetOsInfo(cancel) : null;
                // Asked whatever guest-info says: a frozen qemu-ga reports the freeze itself as disabled.
                freezeStatus = QemuSource.FreezeStatus(agent, cancel);
            }
            catch (VmQuiesceException e)
            {
                failure = e.Message;
                remedy = e.Remedy ?? "Check that qemu-guest-agent runs in the guest and that this is the host side of its channel.";
            }

            if (info == null)
            {
                yield return new ReadinessCheck(vm, "AgentAnswering", ReadinessStatus.Failed, failure!, remedy);
                yield return new ReadinessCheck(vm, "FreezeSupported", ReadinessStatus.Skipped, "Needs the guest agent.");
                yield break;
            }

            string guest = os?.Describe() ?? "the guest";
            yield return new ReadinessCheck(vm, "AgentAnswering", ReadinessStatus.Passed, $"qemu-ga {info.Version} answers on '{options.AgentSocket}' for {guest}.");
            if (freezeStatus == "frozen")
            {
                yield return FrozenNow(options);
            }
            else if (!info.IsEnabled("guest-fsfreeze-freeze") || !info.IsEnabled("guest-fsfreeze-thaw"))
            {
                yield return new ReadinessCheck(vm, "FreezeSupported", ReadinessStatus.Failed,
                    "The agent does not offer guest-fsfreeze-freeze and guest-fsfreeze-thaw (disabled or unsupported): backups reach only Crash consistency.",
                    "Enable the freeze commands in qemu-ga (remove them from --block-rpcs / the allow list in /etc/qemu/qemu-ga.conf).");
            }
            else
            {
                Consistency level = os?.IsWindows == true ? Consistency.Application : Consistency.FileSystem;
                yield return new ReadinessCheck(vm, "FreezeSupported", ReadinessStatus.Passed, $"The agent can freeze the guest: backups reach {level} consistency.");
            }
        }

        /// <summary>Who froze the guest, by the run records: a backup now, a dead run VmQuiesce repairs, or someone else.</summary>
        private static ReadinessCheck FrozenNow(QemuSourceOptions options)
        {
            QemuRunRecord? run = QemuRunRecord.Load(options.QmpSocket);
            if (run != null && run.MayBeFrozen && run.WriterIsAlive())
            {
                return new ReadinessCheck(options.Name, "FreezeSupported", ReadinessStatus.Warning, $"The guest is frozen right now by {run}.", "Wait for that backup to end.");
            }

            return run != null && run.MayBeFrozen
                ? new ReadinessCheck(options.Name, "FreezeSupported", ReadinessStatus.Failed, $"The guest is frozen: {QemuLeftoverRecovery.Describe(run)}.",
                    "The next backup of this VM thaws it first; to thaw it now: " + QemuRepairCommands.Repair(options.QmpSocket, options.AgentSocket))
                : new ReadinessCheck(options.Name, "FreezeSupported", ReadinessStatus.Failed, "The guest is frozen, and no VmQuiesce backup is recorded as having frozen it (another tool or an administrator did).",
                    "If nothing needs it frozen, thaw it: " + QemuRepairCommands.Repair(options.QmpSocket, options.AgentSocket, thaw: true));
        }

        /// <summary>Overlays, jobs and files from earlier backups, and the record of one whose process died.</summary>
        private static ReadinessCheck CheckLeftovers(QemuSource source, QmpClient qmp, IReadOnlyList<QemuDisk> disks, QemuSourceOptions options, CancellationToken cancel)
        {
            var found = new List<string>(source.FindLeftovers(qmp, disks, cancel));
            QemuRunRecord? run = QemuRunRecord.Load(options.QmpSocket);
            if (run != null && run.WriterIsAlive())
            {
                return new ReadinessCheck(options.Name, "NoLeftovers", ReadinessStatus.Warning, $"A backup runs right now: {run}.", "Wait for it to end.");
            }

            if (run != null)
            {
                found.Insert(0, QemuLeftoverRecovery.Describe(run));
            }

            if (found.Count == 1 && run != null && run.Overlays.All(o => !File.Exists(o.OverlayPath)) && !run.MayBeFrozen)
            {
                // Only the record of a run that left nothing behind: the next backup drops it.
                return new ReadinessCheck(options.Name, "NoLeftovers", ReadinessStatus.Warning, found[0] + "; nothing of it is left on the VM.",
                    "Nothing to do: the next backup removes the record (or run " + QemuRepairCommands.Repair(options.QmpSocket, options.AgentSocket) + ").");
            }

            return found.Count == 0
                ? new ReadinessCheck(options.Name, "NoLeftovers", ReadinessStatus.Passed, "No overlay, job or file from an earlier backup.")
                : new ReadinessCheck(options.Name, "NoLeftovers", ReadinessStatus.Failed, string.Join("; ", found),
                    (run != null ? "The next backup repairs it first; to repair it now: " : "Repair it: ") + QemuRepairCommands.Repair(options.QmpSocket, options.AgentSocket));
        }

        private static ReadinessCheck CheckDisks(string vm, IReadOnlyList<QemuDisk> disks, QemuSnapshotMode mode, QemuPeer? peer)
        {
            if (disks.Count == 0)
            {
                return new ReadinessCheck(vm, "DisksSnapshotable", ReadinessStatus.Failed, "The VM has no writable disk with an image.", "Attach the disks to back up.");
            }

            var problems = disks.Select(d => d.WhyNotSnapshotable() is string why ? $"{d.Name}: {why}" : null).Where(p => p != null).ToList();
            if (mode == QemuSnapshotMode.Internal)
            {
                problems.AddRange(disks.Where(d => d.Format != "qcow2").Select(d => $"{d.Name}: '{d.Format}' cannot hold an internal snapshot (qcow2 only)"));
            }

            if (problems.Count == 0)
            {
                try
                {
                    // The same checks a backup makes before it reads the images: not a link, a regular file, one QEMU has open,
                    // in a folder no one else may put a link in where QEMU makes the overlay.
                    QemuDiskFiles.Open(disks, peer, vm).Dispose();
                    QemuDiskFiles.RefuseSharedFolders(disks, peer, vm);
                }
                catch (VmQuiesceException e)
                {
                    problems.Add(e.Message);
                }
            }

            return problems.Count == 0
                ? new ReadinessCheck(vm, "DisksSnapshotable", ReadinessStatus.Passed, string.Join("; ", disks.Select(d => d.ToString())))
                : new ReadinessCheck(vm, "DisksSnapshotable", ReadinessStatus.Failed, string.Join("; ", problems),
                    "Keep VM disks as local image files (qcow2 for internal snapshots).");
        }

        private static ReadinessCheck CheckSpace(string vm, IReadOnlyList<QemuDisk> disks)
        {
            var rows = new List<string>();
            bool enough = true;
            foreach (var folder in disks.Where(d => d.WhyNotSnapshotable() == null).GroupBy(d => Path.GetDirectoryName(d.File) ?? "."))
            {
                long needed = Math.Max(MinimumOverlaySpace, folder.Sum(d => d.VirtualSize) / 10);
                long? free = FreeSpace(folder.Key);
                if (free == null)
                {
                    rows.Add($"'{folder.Key}': free space unknown");
                    continue;
                }

                enough &= free >= needed;
                rows.Add($"'{folder.Key}': {ByteText.Of(free.Value)} free, overlays want at least {ByteText.Of(needed)}");
            }

            return enough
                ? new ReadinessCheck(vm, "OverlaySpace", ReadinessStatus.Passed, string.Join("; ", rows))
                : new ReadinessCheck(vm, "OverlaySpace", ReadinessStatus.Failed, string.Join("; ", rows),
                    "Free space next to the disk images: the overlays grow with what the guest writes while the backup copies.");
        }

        private static long? FreeSpace(string folder)
        {
            try
            {
                // On Unix .NET's DriveInfo takes any path and asks statvfs; on Windows it wants the root.
                return new DriveInfo(HostPlatform.IsWindows ? Path.GetPathRoot(Path.GetFullPath(folder))! : folder).AvailableFreeSpace;
            }
            catch (Exception e) when (e is IOException || e is ArgumentException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }
    }
}
