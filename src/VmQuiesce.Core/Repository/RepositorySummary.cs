using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Repository
{
    /// <summary>What Get-VmBackupRepository shows: format, encryption and key, size, points, dedup and compression.</summary>
    public sealed class RepositorySummary
    {
        private RepositorySummary(IRestorePointSource repository, RepositoryKeys keys)
        {
            Path = repository.Location;
            ChunkSize = repository.ChunkSize;
            Encryption = repository.Encryption.Algorithm;
            IsEncrypted = repository.Encryption.IsEncrypted;
            FormatVersion = IsEncrypted ? RepositoryEncryption.EncryptedFormatVersion : BackupRepository.FormatVersion;
            RepositoryId = repository.Encryption.RepositoryId;
            KeyId = repository.Encryption.KeyId;
            KeyAvailable = repository.Encryption.HasKey;
            HostKeyFile = keys.HostKeyFile;
            PassphraseSlots = keys.PassphraseSlots;
        }

        /// <summary>The folder, or the s3://bucket/prefix address.</summary>
        public string Path { get; }

        /// <summary>1: made before repository keys (plaintext, SHA-256 chunk ids); 2: encrypted.</summary>
        public int FormatVersion { get; }

        public bool IsEncrypted { get; }

        /// <summary>"AES-256-GCM", or "None".</summary>
        public string Encryption { get; }

        public string? RepositoryId { get; }

        public string? KeyId { get; }

        /// <summary>True when this host has the key (or the repository is not encrypted): its points can be read.</summary>
        public bool KeyAvailable { get; }

        public string? HostKeyFile { get; }

        public IReadOnlyList<string> PassphraseSlots { get; }

        public int ChunkSize { get; }

        public long ChunkCount { get; private set; }

        /// <summary>Bytes the chunk files take.</summary>
        public long StoredBytes { get; private set; }

        /// <summary>How many restore points; null when the key is missing (their manifests cannot be read).</summary>
        public int? RestorePoints { get; private set; }

        /// <summary>Sum of the restore points' sizes: what restoring all of them would write. Null without the key.</summary>
        public long? LogicalBytes { get; private set; }

        /// <summary>Logical bytes per stored byte (dedup and compression together); null when nothing is stored or without the key.</summary>
        public double? DedupRatio => LogicalBytes is long logical && StoredBytes > 0 ? (double)logical / StoredBytes : (double?)null;

        /// <summary>The new chunks' data per byte they took, over every point that recorded it; null when none did.</summary>
        public double? CompressionRatio { get; private set; }

        public override string ToString() => Path;

        /// <summary>Reads the chunk folder's sizes and, when the key is known, every manifest (unreadable ones go to <paramref name="unreadable"/>).</summary>
        public static RepositorySummary Of(BackupRepository repository, System.Action<VmQuiesceException> unreadable) =>
            Of(repository, new RepositoryKeys(repository), repository.Chunks.EnumerateChunkPaths().Select(path => (System.IO.Path.GetFileName(path), new FileInfo(path).Length)), unreadable);

        /// <summary>The same for a repository on object storage: its chunk objects listed, not read.</summary>
        public static RepositorySummary Of(Storage.ObjectRepository repository, System.Action<VmQuiesceException> unreadable) =>
            Of(repository, new RepositoryKeys(repository), repository.ListChunkObjects().Select(chunk => (chunk.Key.Substring(chunk.Key.LastIndexOf('/') + 1), chunk.Size)), unreadable);

        private static RepositorySummary Of(IRestorePointSource repository, RepositoryKeys keys, IEnumerable<(string Name, long Length)> chunks, System.Action<VmQuiesceException> unreadable)
        {
            var summary = new RepositorySummary(repository, keys);
            foreach ((string name, long length) in chunks)
            {
                if (ChunkStore.IsChunkName(name))
                {
                    summary.ChunkCount++;
                    summary.StoredBytes += length;
                }
            }

            if (summary.KeyAvailable)
            {
                IReadOnlyList<RestorePoint> points = repository.ListRestorePoints(unreadable);
                summary.RestorePoints = points.Count;
                summary.LogicalBytes = points.Sum(point => point.Size);
                long data = points.Sum(point => point.NewChunkBytes);
                long stored = points.Where(point => point.NewChunkBytes > 0).Sum(point => point.StoredBytes);
                summary.CompressionRatio = data > 0 && stored > 0 ? (double)data / stored : (double?)null;
            }

            return summary;
        }
    }
}
