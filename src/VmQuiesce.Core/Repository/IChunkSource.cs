using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository
{
    /// <summary>How a chunk read from a repository is proved to be the chunk its name says.</summary>
    public enum ChunkCheck
    {
        /// <summary>
        /// Its content hashed to its name, sealed or not: verification, which is also there to find a chunk written
        /// wrong, and copies, which prove each chunk before it goes to another repository.
        /// </summary>
        Hash,

        /// <summary>
        /// In an encrypted repository, opening its seal: the seal (AES-GCM) binds the content to the repository and
        /// the chunk's name, and whoever could seal other content under that name holds the key that names chunks
        /// too, so hashing it again proves nothing more against tampering. A plain repository's chunk is hashed.
        /// Restores and exports read this way.
        /// </summary>
        SealOrHash,
    }

    /// <summary>
    /// A repository restore points are read from: a folder (<see cref="BackupRepository"/>) or object storage
    /// (<see cref="Storage.ObjectRepository"/>). Verification, restore reads and copies need only this.
    /// </summary>
    public interface IRestorePointSource
    {
        /// <summary>A folder path or s3://bucket/prefix, for messages and remedies.</summary>
        string Location { get; }

        int ChunkSize { get; }

        /// <summary>How its chunks are named and sealed, and with which key: the same in a folder and in object storage.</summary>
        RepositoryEncryption Encryption { get; }

        IReadOnlyList<RestorePoint> ListRestorePoints(Action<VmQuiesceException>? problem = null);

        RestorePoint GetRestorePoint(string id);

        /// <summary>
        /// Reads chunk <paramref name="hash"/> into <paramref name="buffer"/> and checks it decodes to
        /// <paramref name="expectedLength"/> bytes that are the chunk its name says, as <paramref name="check"/> says
        /// (hashed once per hash when <paramref name="good"/> remembers verified chunks). Null when whole; otherwise
        /// what is wrong.
        /// </summary>
        string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ChunkCheck check, ConcurrentDictionary<string, bool>? good, out bool missing);

        /// <summary>
        /// A shared lock, held while the repository is written or read (a backup, a served restore point): prune waits
        /// for it, so no chunk the holder needs is removed meanwhile. A lock file in a folder, a lock object on object storage.
        /// </summary>
        IDisposable LockShared(string purpose, Action<string> warn);
    }
}
