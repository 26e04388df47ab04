using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// Where a repository's bytes live: a local folder (<see cref="FileObjectStorage"/>) or a bucket of
    /// S3-compatible object storage (<see cref="S3ObjectStorage"/>). Only the operations the repository's
    /// crash safety needs, each whole or not at all: an object is never seen half written.
    /// Keys are '/'-separated relative names checked by <see cref="ObjectKeys.Check"/>.
    /// </summary>
    public interface IObjectStorage : IDisposable
    {
        /// <summary>Where the storage is, for messages and remedies: a folder path or s3://bucket/prefix. Never holds a secret.</summary>
        string Location { get; }

        /// <summary>The endpoint the storage is reached through, for messages: an S3 endpoint's URL or "AWS S3"; null for a folder.</summary>
        string? Endpoint { get; }

        /// <summary>
        /// Reads the whole object <paramref name="key"/> into <paramref name="buffer"/> and returns its length. Throws
        /// <see cref="System.IO.FileNotFoundException"/> when it does not exist, and
        /// <see cref="System.IO.InvalidDataException"/> when it is longer than <paramref name="buffer"/>: what a
        /// repository reads is bounded before it is read.
        /// </summary>
        int Read(string key, byte[] buffer);

        /// <summary>Reads the whole object <paramref name="key"/>, at most <paramref name="maxLength"/> bytes: as <see cref="Read"/>, into an array of its length.</summary>
        byte[] ReadAll(string key, int maxLength);

        /// <summary>
        /// Creates <paramref name="key"/> holding <paramref name="parts"/> (in order) unless it exists: exclusive
        /// across hosts and processes. True when this call created it; false (nothing changed) when it existed.
        /// </summary>
        bool CreateIfAbsent(string key, IReadOnlyList<ArraySegment<byte>> parts);

        /// <summary>Creates or replaces <paramref name="key"/> at once: a reader sees the old content or the new, never a mix.</summary>
        void Replace(string key, IReadOnlyList<ArraySegment<byte>> parts);

        /// <summary>Whether <paramref name="key"/> exists.</summary>
        bool Exists(string key);

        /// <summary>Every object whose key starts with <paramref name="prefix"/> (a folder such as "points/" or ""), in no set order.</summary>
        IEnumerable<StoredObject> List(string prefix);

        /// <summary>Deletes <paramref name="key"/>; deleting what is not there is no error.</summary>
        void Delete(string key);

        /// <summary>
        /// Makes every object created so far durable before something that names them is written (a manifest):
        /// a folder's directory entries are synced; object storage has nothing to do.
        /// </summary>
        void Flush();
    }

    /// <summary>An object found by <see cref="IObjectStorage.List"/>.</summary>
    public sealed class StoredObject
    {
        public StoredObject(string key, long size, DateTime lastModifiedUtc)
        {
            Key = key;
            Size = size;
            LastModifiedUtc = lastModifiedUtc;
        }

        public string Key { get; }

        public long Size { get; }

        public DateTime LastModifiedUtc { get; }
    }
}
