namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>Where one copy of a repository's key is.</summary>
    public enum KeyCopyKind
    {
        /// <summary>In the repository, sealed under a passphrase (keys/&lt;slot&gt;.json).</summary>
        Passphrase,

        /// <summary>This host's key file, which opening the repository reads.</summary>
        HostKeyFile,

        /// <summary>A key file exported for safekeeping.</summary>
        ExportedKeyFile,
    }

    /// <summary>A copy of a repository's key that Add-, Import- or Export-VmBackupRepositoryKey made. Never holds the key itself.</summary>
    public sealed class RepositoryKeyCopy
    {
        public RepositoryKeyCopy(string repository, string keyId, KeyCopyKind kind, string? slot, string? path)
        {
            Repository = repository;
            KeyId = keyId;
            KindValue = kind;
            Slot = slot;
            Path = path;
        }

        public string Repository { get; }

        public string KeyId { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="KindValue"/> is the typed value.</summary>
        public string Kind => KindValue.ToString();

        internal KeyCopyKind KindValue { get; }

        /// <summary>The passphrase copy's slot (8 hex digits); null for key files.</summary>
        public string? Slot { get; }

        /// <summary>The key file; null for a passphrase copy.</summary>
        public string? Path { get; }

        /// <summary>
        /// Where an import copied the host's key file it found for this repository's id whose key does not open it (kept,
        /// never deleted: it may be the only key of what was there before); null when there was none.
        /// </summary>
        public string? ReplacedKeyFile { get; internal set; }

        public override string ToString() => Slot ?? Path ?? KeyId;
    }
}
