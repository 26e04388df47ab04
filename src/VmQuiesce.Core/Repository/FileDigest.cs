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
        /// Schema 3 ("sizeAndChunksSha256"): SHA-256 of the file's size in decimal and then its chunk list as
        /// the manifest writes it, each line (the size; each entry, 64 hex digits or "zero" for an all-zero
        /// chunk) followed by a line feed. With every chunk checked against its own SHA-256 it pins the whole
        /// content and the length, yet needs no serial pass over every byte, which would hold back backup,
        /// verify and restore. Reproducible with
        /// <c>jq -r '.files[0] | (.size | tostring), .chunks[]' manifest.json | sha256sum</c>.
        /// </summary>
        SizeAndChunkListSha256,

        /// <summary>
        /// Schema 2 ("chunkListSha256"): as schema 3 without the size line. It does not pin the size within the
        /// last chunk (a lowered size over an all-zero last chunk went unnoticed); still read and verified.
        /// </summary>
        ChunkListSha256,

        /// <summary>Schema 1 ("sha256"): SHA-256 of the content itself, holes read as zeros.</summary>
        ContentSha256,
    }

    /// <summary>Computes a file's whole-file digest chunk by chunk, in order, to check it against the manifest.</summary>
    internal sealed class FileDigest : IDisposable
    {
        private static readonly byte[] LineFeed = { (byte)'\n' };

        /// <summary>
        /// Chunk-list lines gathered before they are hashed: a disk of 4 GiB in 512 KiB chunks lists 8192, and two calls
        /// into the native hash per line (with an array each) took milliseconds as every backup ends.
        /// </summary>
        private const int LineBufferLength = 16 * 1024;

        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private byte[]? _zeros;
        private byte[]? _lines;
        private int _linesLength;

        private FileDigest(FileDigestKind kind)
        {
            Kind = kind;
        }

        public FileDigestKind Kind { get; }

        /// <summary>True when <see cref="Append"/> needs each chunk's bytes, not only its hash.</summary>
        public bool NeedsContent => Kind == FileDigestKind.ContentSha256;

        /// <summary>A digest of <paramref name="file"/>'s kind, ready for its chunks in order.</summary>
        public static FileDigest For(RestorePointFile file) => Start(file.DigestKindValue, file.Size);

        /// <summary>The schema-3 digest of a file's size and chunk list, for a new manifest.</summary>
        public static string OfSizeAndChunks(long size, IEnumerable<string?> chunks) => OfChunks(FileDigestKind.SizeAndChunkListSha256, size, chunks);

        /// <summary>The digest of a file's chunk list (schema 2 or 3), as <paramref name="kind"/> computes it.</summary>
        public static string OfChunks(FileDigestKind kind, long size, IEnumerable<string?> chunks)
        {
            using FileDigest digest = Start(kind, size);
            foreach (string? chunk in chunks)
            {
                digest.Append(chunk, null, 0);
            }

            return digest.Finish();
        }

        private static FileDigest Start(FileDigestKind kind, long size)
        {
            var digest = new FileDigest(kind);
            if (kind == FileDigestKind.SizeAndChunkListSha256)
            {
                digest._hash.AppendData(Encoding.ASCII.GetBytes(size.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                digest._hash.AppendData(LineFeed);
            }

            return digest;
        }

        /// <summary>Adds the next chunk: its hash (null when all zero) and, for <see cref="NeedsContent"/>, its bytes.</summary>
        public void Append(string? chunk, byte[]? data, int length)
        {
            if (Kind != FileDigestKind.ContentSha256)
            {
                AppendLine(chunk ?? RestorePoint.ZeroChunk);
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

        /// <summary>The digest in lowercase hex.</summary>
        public string Finish()
        {
            HashLines();
            return ChunkStore.ToHex(_hash.GetHashAndReset());
        }

        /// <summary>
        /// Adds <paramref name="entry"/> and a line feed as Encoding.ASCII writes them (anything else becomes '?', so at most
        /// one byte a character) into the line buffer; a line longer than the buffer is hashed on its own.
        /// </summary>
        private void AppendLine(string entry)
        {
            _lines ??= new byte[LineBufferLength];
            if (_linesLength + entry.Length + 1 > _lines.Length)
            {
                HashLines();
                if (entry.Length + 1 > _lines.Length)
                {
                    _hash.AppendData(Encoding.ASCII.GetBytes(entry));
                    _hash.AppendData(LineFeed);
                    return;
                }
            }

            _linesLength += Encoding.ASCII.GetBytes(entry, 0, entry.Length, _lines, _linesLength);
            _lines[_linesLength++] = (byte)'\n';
        }

        private void HashLines()
        {
            if (_linesLength > 0)
            {
                _hash.AppendData(_lines!, 0, _linesLength);
                _linesLength = 0;
            }
        }

        public void Dispose() => _hash.Dispose();
    }
}
