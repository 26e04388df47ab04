using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Text;

namespace VmQuiesce.Core.Repository
{
    /// <summary>What a manifest's whole-file digest is computed over.</summary>
    public enum FileDigestKind
    {
        /// <summary>
        /// Schema 2 ("chunkListSha256"): SHA-256 of the file's chunk list as the manifest writes it, each
        /// entry (64 hex digits, or "zero" for an all-zero chunk) followed by a line feed. With every chunk
        /// checked against its own SHA-256 it pins the whole content, yet needs no serial pass over every
        /// byte, which would hold back backup, verify and restore. Reproducible with
        /// <c>jq -r '.files[0].chunks[]' manifest.json | sha256sum</c>.
        /// </summary>
        ChunkListSha256,

        /// <summary>Schema 1 ("sha256"): SHA-256 of the content itself, holes read as zeros.</summary>
        ContentSha256,
    }

    /// <summary>Computes a file's whole-file digest chunk by chunk, in order, to check it against the manifest.</summary>
    internal sealed class FileDigest : IDisposable
    {
        private static readonly byte[] LineFeed = { (byte)'\n' };
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private byte[]? _zeros;

        public FileDigest(FileDigestKind kind)
        {
            Kind = kind;
        }

        public FileDigestKind Kind { get; }

        /// <summary>True when <see cref="Append"/> needs each chunk's bytes, not only its hash.</summary>
        public bool NeedsContent => Kind == FileDigestKind.ContentSha256;

        /// <summary>The schema-2 digest of a chunk list, for a new manifest.</summary>
        public static string OfChunkList(IEnumerable<string?> chunks)
        {
            using var digest = new FileDigest(FileDigestKind.ChunkListSha256);
            foreach (string? chunk in chunks)
            {
                digest.Append(chunk, null, 0);
            }

            return digest.Finish();
        }

        /// <summary>Adds the next chunk: its hash (null when all zero) and, for <see cref="NeedsContent"/>, its bytes.</summary>
        public void Append(string? chunk, byte[]? data, int length)
        {
            if (Kind == FileDigestKind.ChunkListSha256)
            {
                byte[] entry = Encoding.ASCII.GetBytes(chunk ?? RestorePoint.ZeroChunk);
                _hash.AppendData(entry);
                _hash.AppendData(LineFeed);
                return;
            }

            if (data == null)
            {
                _zeros ??= new byte[length];
                if (_zeros.Length < length)
                {
                    _zeros = new byte[length];
                }

                data = _zeros;
            }

            _hash.AppendData(data, 0, length);
        }

        /// <summary>The digest in lowercase hex; the instance starts over.</summary>
        public string Finish() => ChunkStore.ToHex(_hash.GetHashAndReset());

        public void Dispose() => _hash.Dispose();
    }
}
