using System;
using System.Security.Cryptography;
using System.Text;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// A repository's secret: 32 random bytes from which every key it uses is derived (HMAC-SHA256 of the
    /// master key over a label, one key per purpose): the key of chunk ids, of chunks, of manifests, of the
    /// repository file's check, and the public key id that names it. Never written anywhere but a host key file
    /// (root/Administrators only) and passphrase-wrapped copies.
    /// </summary>
    public sealed class RepositoryKey
    {
        public const int Length = Aead.KeyLength;

        private RepositoryKey(byte[] master)
        {
            Master = master;
            ChunkIdKey = Derive("chunk ids");
            ChunkKey = Derive("chunks");
            ManifestKey = Derive("manifests");
            MarkerKey = Derive("repository file");
            KeyId = ChunkStore.ToHex(Derive("key id")).Substring(0, 16);
        }

        /// <summary>16 hex digits that name the key without revealing anything of it.</summary>
        public string KeyId { get; }

        internal byte[] Master { get; }

        /// <summary>HMAC-SHA256 key of chunk ids: equal chunks share an id within the repository, and nowhere else.</summary>
        internal byte[] ChunkIdKey { get; }

        internal byte[] ChunkKey { get; }

        internal byte[] ManifestKey { get; }

        internal byte[] MarkerKey { get; }

        public static RepositoryKey Generate() => new RepositoryKey(Random.Bytes(Length));

        internal static RepositoryKey FromBytes(byte[] master)
        {
            if (master.Length != Length)
            {
                throw new ArgumentException($"A repository key is {Length} bytes; this one has {master.Length}.", nameof(master));
            }

            return new RepositoryKey((byte[])master.Clone());
        }

        public override string ToString() => KeyId;

        /// <summary>HMAC-SHA256 of <paramref name="text"/> with <paramref name="key"/>, for checks over small text.</summary>
        internal static byte[] Mac(byte[] key, string text)
        {
            using var hmac = new HMACSHA256(key);
            return hmac.ComputeHash(Encoding.UTF8.GetBytes(text));
        }

        private byte[] Derive(string purpose) => Mac(Master, "VmQuiesce repository key: " + purpose);
    }
}
