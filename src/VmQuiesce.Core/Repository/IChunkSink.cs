using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Threading;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Where a backup stores chunks: a folder's <see cref="ChunkStore"/> or object storage
    /// (<see cref="Storage.ObjectChunkSink"/>). Storing is in two halves, so the worker that hashed a chunk is free
    /// again while another thread waits for the disk or the network: <see cref="Write"/> encodes it,
    /// <see cref="Publish"/> makes it durable under its name.
    /// </summary>
    internal interface IChunkSink
    {
        /// <summary>The hash that names chunks here, one per thread.</summary>
        HashAlgorithm NewIdHash();

        /// <summary>
        /// Encodes chunk <paramref name="hash"/> unless it is already stored (sound): null then. The caller's
        /// buffers are free again when this returns.
        /// </summary>
        /// <param name="scratch">
        /// The caller's scratch buffer for compression and sealing, empty at first: the sink puts one in when it needs
        /// one. It may keep it with the pending chunk and put an empty one in its place.
        /// </param>
        /// <param name="cancel">Stops a wait for a buffer that only a <see cref="Publish"/> frees.</param>
        PendingChunk? Write(string hash, byte[] data, int length, ref byte[] scratch, CancellationToken cancel);

        /// <summary>How many chunks from <see cref="Write"/> may wait for <see cref="Publish"/>: each holds what Write made.</summary>
        int WaitingCapacity { get; }

        /// <summary>How many threads call <see cref="Publish"/> at once.</summary>
        int Publishers { get; }

        /// <summary>Stores a chunk from <see cref="Write"/> under its name. Returns the bytes stored, 0 when another writer stored it first.</summary>
        long Publish(PendingChunk pending);

        /// <summary>Drops a chunk from <see cref="Write"/> that will not be published (the backup failed or was cancelled).</summary>
        void Abandon(PendingChunk pending);

        /// <summary>Reads and decodes stored chunk <paramref name="hash"/> into <paramref name="buffer"/>; returns its length.</summary>
        /// <param name="scratch">The caller's scratch buffer, as <see cref="Write"/>'s: the sink may read the stored chunk into it (putting one in when empty).</param>
        int Read(string hash, byte[] buffer, ref byte[] scratch);

        /// <summary>
        /// Whether <see cref="Read"/> itself proves the chunk is the one its name says: in an encrypted repository a
        /// chunk opens only with the repository's key as that very chunk (see <see cref="Keys.RepositoryEncryption.OpenSealedChunk"/>).
        /// </summary>
        bool ReadAuthenticates { get; }

        /// <summary>Whether chunk <paramref name="hash"/> is stored.</summary>
        bool Contains(string hash);
    }

    /// <summary>
    /// A repository a backup writes into: a folder (<see cref="BackupRepository"/>) or object storage
    /// (<see cref="Storage.ObjectRepository"/>); the backup engine needs only this.
    /// </summary>
    internal interface IBackupTarget : IRestorePointSource
    {
        IChunkSink ChunkSink { get; }

        /// <summary>
        /// Makes the chunks stored so far durable under their names (a folder's renames synced): a point may name them
        /// only after. The backup does it while the snapshot is released, so neither waits for the other.
        /// </summary>
        void MakeChunksDurable();

        /// <summary>
        /// The ids the manifests' names give, valid ones only, without reading them: a name says nothing of the content
        /// until <see cref="IRestorePointSource.GetRestorePoint"/> reads and checks it.
        /// </summary>
        IReadOnlyList<string> ListRestorePointIds();

        /// <summary>
        /// Publishes a restore point whose chunks are all stored and made durable (<see cref="MakeChunksDurable"/>): it
        /// exists from now on, whole.
        /// </summary>
        void Publish(RestorePoint point);

        /// <summary>
        /// Does all of <see cref="Publish"/> that does not make the point exist (its manifest serialised, sealed and, in
        /// a folder, written and flushed under a temp name), so that a backup does it while the snapshot is released;
        /// <see cref="IPreparedManifest.Publish"/> then only names it. Checks what Publish checks.
        /// </summary>
        IPreparedManifest PrepareManifest(RestorePoint point);
    }

    /// <summary>A restore point's manifest ready to publish (<see cref="IBackupTarget.PrepareManifest"/>); disposed unpublished, it leaves nothing.</summary>
    internal interface IPreparedManifest : IDisposable
    {
        /// <summary>Makes the point exist, whole; the chunks must be durable by now (<see cref="IBackupTarget.MakeChunksDurable"/>).</summary>
        void Publish();
    }
}
