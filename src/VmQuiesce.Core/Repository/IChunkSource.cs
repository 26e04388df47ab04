using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository
{
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
        /// <paramref name="expectedLength"/> bytes that hash to its name (once per hash when <paramref name="good"/>
        /// remembers verified chunks). Null when whole; otherwise what is wrong.
        /// </summary>
        string? ReadVerifiedChunk(string hash, byte[] buffer, int expectedLength, ConcurrentDictionary<string, bool>? good, out bool missing);

        /// <summary>
        /// A shared lock, held while the repository is written or read (a backup, a served restore point): prune waits
        /// for it, so no chunk the holder needs is removed meanwhile. A lock file in a folder, a lock object on object storage.
        /// </summary>
        IDisposable LockShared(string purpose, Action<string> warn);
    }
}
