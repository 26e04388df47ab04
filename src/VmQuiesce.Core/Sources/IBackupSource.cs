using System;
using System.Collections.Generic;
using System.Threading;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// One hypervisor plus quiesce method. A source knows how to make a VM's files stable and how to
    /// release them; it knows nothing of copying, hashing or storing (that is the engine's job).
    /// </summary>
    public interface IBackupSource
    {
        /// <summary>"Qemu", "VMware", "HostVss": stored in each restore point.</summary>
        string Kind { get; }

        /// <summary>The VM's name as the user knows it.</summary>
        string VmName { get; }

        /// <summary>
        /// Snapshots, overlays or freezes left behind by an earlier failed run, each with what to run to release it.
        /// </summary>
        IReadOnlyList<string> FindLeftovers(CancellationToken cancel);

        /// <summary>
        /// Quiesces the guest, makes the VM's files stable, releases the guest and returns the stable view. Before it
        /// touches the VM it refuses while <see cref="FindLeftovers"/> names anything (<see cref="Leftovers.Refuse"/>).
        /// Throws <see cref="VmQuiesceException"/> when the reached consistency is below what the options accept.
        /// </summary>
        IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel);
    }

    /// <summary>
    /// A set of stable, readable files plus what consistency was reached. Dispose without Complete
    /// means failure: whatever the source created is released or reported with what to run.
    /// </summary>
    public interface IConsistentView : IDisposable
    {
        Consistency Reached { get; }

        IReadOnlyList<ViewFile> Files { get; }

        /// <summary>The snapshot the restore's second step reverts to, or null where the files themselves are the point in time.</summary>
        CapturedSnapshot? Snapshot { get; }

        /// <summary>How the guest was quiesced. May wait for what the view finishes beside the copy (a post-thaw hook), and throws what failed there.</summary>
        QuiesceRecord Quiesce { get; }

        /// <summary>Releases snapshots/overlays made for the backup; <paramref name="success"/> says whether the copy finished.</summary>
        void Complete(bool success, CancellationToken cancel);
    }

    /// <summary>A view whose release can get ready while the copy's last reads are still under way.</summary>
    internal interface IReleasePreparation
    {
        /// <summary>The copy has queued its last reads: what the release needs (a monitor connection) may be made ready now.</summary>
        void PrepareRelease();

        /// <summary>
        /// The copy's workers have ended (a failed copy's too): nothing reads the view any more, so what it reads through
        /// (NBD connections) may close while the copy's data is made durable and its point is made.
        /// </summary>
        void ReadsEnded();
    }

    /// <summary>
    /// A view that knows the VM's own stable identity (QEMU's query-uuid), which restore points record so that
    /// one VM's points group together whatever the VM was called, and the machine it runs as.
    /// </summary>
    public interface IIdentifiedView
    {
        /// <summary>The VM's UUID, or null when the hypervisor reports none.</summary>
        Guid? VmUuid { get; }

        /// <summary>The machine the VM runs as (allowlisted values only), or null when unknown.</summary>
        Repository.VmMachine? Machine { get; }
    }

    /// <summary>A file of the view: where to read it now, and the path it is stored and restored under.</summary>
    public sealed class ViewFile
    {
        public ViewFile(string relativePath, string readPath, string originalPath)
        {
            RelativePath = relativePath;
            ReadPath = readPath;
            OriginalPath = originalPath;
        }

        /// <summary>Path inside the restore point, with '/' separators.</summary>
        public string RelativePath { get; }

        /// <summary>Where the stable bytes can be read during the backup (a base image, a shadow-copy path).</summary>
        public string ReadPath { get; }

        /// <summary>Where the file lives on the VM's host: the default restore location.</summary>
        public string OriginalPath { get; }

        /// <summary>
        /// The disk image format ("raw", "qcow2", "vmdk": QEMU's names) when the source knows it for certain,
        /// from the hypervisor rather than the file's own bytes (which a guest may control); null otherwise.
        /// </summary>
        public string? Format { get; init; }

        /// <summary>Set for a change-tracked disk: the engine reads it here, not at <see cref="ReadPath"/>.</summary>
        public TrackedDisk? Tracked { get; init; }

        /// <summary>For content stored as the guest sees it: the image a restore writes (<see cref="Repository.RestorePointFile.RestoreAs"/>).</summary>
        public Repository.DiskImageLayout? RestoreAs { get; init; }

        /// <summary>
        /// Who owns the original and its permissions (Unix), which the restore gives back, when the source took them from
        /// the descriptor it reads the file through; null: the engine looks them up by <see cref="OriginalPath"/>, which
        /// follows a link that someone who can write the folder may have swapped in since.
        /// </summary>
        public Repository.FileOwner? Owner { get; init; }

        /// <summary>This file, read through <paramref name="tracked"/> instead.</summary>
        public ViewFile WithTracked(TrackedDisk tracked) =>
            new ViewFile(RelativePath, ReadPath, OriginalPath) { Format = Format, Tracked = tracked, RestoreAs = RestoreAs, Owner = Owner };
    }

    /// <summary>What the caller accepts and how long the guest may stay frozen.</summary>
    public sealed class QuiesceOptions
    {
        public Consistency Required { get; init; } = Consistency.FileSystem;

        /// <summary>When true, a result below <see cref="Required"/> is a warning, not an error.</summary>
        public bool AllowLower { get; init; }

        public TimeSpan FreezeTimeout { get; init; } = TimeSpan.FromSeconds(10);

        /// <summary>
        /// Runs right before the source captures the point in time (before any freeze): e.g. -PreFreezeScript.
        /// A throw fails the backup before anything is frozen.
        /// </summary>
        public Action<CancellationToken>? PreFreeze { get; init; }

        /// <summary>
        /// Runs once the guest is thawed (or would have been, when nothing was frozen), on every path on
        /// which <see cref="PreFreeze"/> ran: e.g. -PostThawScript.
        /// </summary>
        public Action<CancellationToken>? PostThaw { get; init; }

        /// <summary>
        /// -KeepSnapshot: the snapshot the backup took stays on the VM after the copy instead of being released in
        /// Complete, and the point records it (SnapshotReleased False). A source that takes no snapshot it could keep
        /// refuses it (<see cref="RefuseKeepSnapshot"/>) before anything changes.
        /// </summary>
        public bool KeepSnapshot { get; init; }

        /// <summary>Throws KeepSnapshotNotSupported when -KeepSnapshot was asked of a source that has no snapshot to keep.</summary>
        /// <param name="why">Why, about the VM: "its backup snapshots nothing: ...".</param>
        public void RefuseKeepSnapshot(string vmName, string why)
        {
            if (KeepSnapshot)
            {
                throw new VmQuiesceException("KeepSnapshotNotSupported", FailureKind.NotSupported,
                    $"-KeepSnapshot cannot keep a snapshot of '{vmName}': {why}. Nothing was changed.", vmName)
                {
                    Remedy = "Run the backup without -KeepSnapshot; the restore point is whole without a snapshot.",
                };
            }
        }
    }
}
