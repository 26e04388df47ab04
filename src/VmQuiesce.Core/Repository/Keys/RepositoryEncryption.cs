using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// How a repository's chunks and manifests are protected, as its repository file says, and the key once it is
    /// known. An encrypted repository (format 2) names chunks by HMAC-SHA256 of their content under its key and
    /// seals every chunk and manifest with its AEAD (AES-256-GCM or ChaCha20-Poly1305, <see cref="RepositoryCipher"/>),
    /// bound to what it claims to be (repository id plus chunk id or restore point id), so a changed, swapped, planted
    /// or foreign file fails to open. The repository file's check (a MAC under the key) covers which AEAD it records,
    /// so that cannot be changed without the key either. A repository made before keys (format 1) is
    /// <see cref="None"/>: SHA-256 chunk ids, plaintext, still read.
    /// </summary>
    public sealed class RepositoryEncryption
    {
        internal const string MarkerMember = "encryption";
        internal const int EncryptedFormatVersion = 2;
        internal const string ChunkIdAlgorithm = "HMAC-SHA256";
        internal const string SealedManifestFormat = "VmQuiesceSealedManifest";
        private static readonly Regex RepositoryIdPattern = new Regex("^[0-9a-f]{32}$", RegexOptions.CultureInvariant);
        private static readonly Regex KeyIdPattern = new Regex("^[0-9a-f]{16}$", RegexOptions.CultureInvariant);

        /// <summary>The sealed manifest's last member's name as its envelope's bytes hold it.</summary>
        private static readonly byte[] SealedMember = Encoding.ASCII.GetBytes("\"sealed\"");

        private readonly string _repositoryPath;
        private readonly int _chunkSize;
        private readonly byte[]? _check;
        private readonly RepositoryCipher _cipher;
        private VmQuiesceException? _hostKeyProblem;

        private RepositoryEncryption(string? repositoryId, string? keyId, byte[]? check, int chunkSize, string repositoryPath, RepositoryCipher cipher = RepositoryCipher.Aes256Gcm)
        {
            _cipher = cipher;
            RepositoryId = repositoryId;
            KeyId = keyId;
            _check = check;
            _chunkSize = chunkSize;
            _repositoryPath = repositoryPath;
        }

        /// <summary>A repository made before keys: nothing is encrypted or authenticated.</summary>
        public static RepositoryEncryption None { get; } = new RepositoryEncryption(null, null, null, 0, string.Empty);

        public bool IsEncrypted => RepositoryId != null;

        /// <summary>"AES-256-GCM" or "ChaCha20-Poly1305", or "None" for a repository made before keys.</summary>
        public string Algorithm => IsEncrypted ? Aead.NameOf(_cipher) : "None";

        /// <summary>The repository's random id (32 hex digits): what host key files are named by. Null when not encrypted.</summary>
        public string? RepositoryId { get; }

        /// <summary>The id of the repository's key (see <see cref="RepositoryKey.KeyId"/>). Null when not encrypted.</summary>
        public string? KeyId { get; }

        /// <summary>True when the key is known: chunks and manifests can be read and written.</summary>
        public bool HasKey => Key != null;

        internal RepositoryKey? Key { get; private set; }

        /// <summary>
        /// The protection of a new repository, keyed with <paramref name="key"/>, under a new random id, sealed with
        /// <paramref name="cipher"/> (null: <see cref="Aead.Preferred"/>, what this CPU runs fastest).
        /// </summary>
        internal static RepositoryEncryption New(RepositoryKey key, int chunkSize, string repositoryPath, RepositoryCipher? cipher = null)
        {
            RepositoryCipher chosen = cipher ?? Aead.Preferred;
            Aead.RequireSupported(chosen, repositoryPath);
            string id = ChunkStore.ToHex(Random.Bytes(16));
            var encryption = new RepositoryEncryption(id, key.KeyId, null, chunkSize, repositoryPath, chosen);
            encryption.Key = key;
            return encryption;
        }

        /// <summary>Adds the format version and the encryption member to a new repository file.</summary>
        internal JsonObject AddTo(JsonObject marker)
        {
            if (!IsEncrypted)
            {
                return marker;
            }

            return marker
                .With("formatVersion", EncryptedFormatVersion)
                .With("chunkHash", ChunkIdAlgorithm)
                .With(MarkerMember, new JsonObject()
                    .With("algorithm", Algorithm)
                    .With("chunkIds", ChunkIdAlgorithm)
                    .With("repositoryId", RepositoryId)
                    .With("keyId", KeyId)
                    .With("check", Convert.ToBase64String(Check(Key!))));
        }

        /// <summary>What the repository file says; the key is looked up by <see cref="UnlockFromHost"/> or given to <see cref="Unlock"/>.</summary>
        internal static RepositoryEncryption FromMarker(JsonObject config, long formatVersion, int chunkSize, string repositoryPath)
        {
            JsonObject? member = config.GetOptionalObject(MarkerMember);
            if (formatVersion < EncryptedFormatVersion)
            {
                if (member != null)
                {
                    throw new JsonFormatException($"The member '{MarkerMember}' needs format version {EncryptedFormatVersion}; the file says {formatVersion}.");
                }

                return None;
            }

            if (member == null)
            {
                throw new JsonFormatException($"Format version {formatVersion} needs the member '{MarkerMember}'.");
            }

            string algorithm = member.GetString("algorithm");
            string chunkIds = member.GetString("chunkIds");
            if (!(Aead.FromName(algorithm) is RepositoryCipher cipher) || chunkIds != ChunkIdAlgorithm)
            {
                throw new JsonFormatException($"The encryption is '{algorithm}' with '{chunkIds}' chunk ids; this VmQuiesce knows '{Aead.AesGcmName}' or '{Aead.ChaChaName}' with '{ChunkIdAlgorithm}'.");
            }

            string repositoryId = member.GetString("repositoryId");
            string keyId = member.GetString("keyId");
            if (!RepositoryIdPattern.IsMatch(repositoryId) || !KeyIdPattern.IsMatch(keyId))
            {
                throw new JsonFormatException("The repository id must be 32 and the key id 16 lowercase hex digits.");
            }

            byte[] check = Convert.FromBase64String(member.GetString("check"));
            return new RepositoryEncryption(repositoryId, keyId, check, chunkSize, repositoryPath, cipher);
        }

        /// <summary>Takes <paramref name="key"/> as this repository's key, once it proves to be (its id, and the repository file's check).</summary>
        public void Unlock(RepositoryKey key)
        {
            if (!IsEncrypted)
            {
                throw new VmQuiesceException("RepositoryNotEncrypted", FailureKind.InvalidOperation,
                    $"The repository '{_repositoryPath}' was made before repository keys: it has no key to add, export or remove.", _repositoryPath)
                {
                    Remedy = "Copy its restore points into a new repository (New-VmBackupRepository) to have them encrypted.",
                };
            }

            if (key.KeyId != KeyId)
            {
                throw new VmQuiesceException("RepositoryKeyMismatch", FailureKind.SecurityError,
                    $"The key {key.KeyId} is not the key of the repository '{_repositoryPath}', which is {KeyId}.", _repositoryPath)
                {
                    Remedy = "Use the key file or passphrase of this repository.",
                };
            }

            if (!Opens(key))
            {
                throw NotAuthentic("RepositoryNotAuthentic", $"The repository file of '{_repositoryPath}' was changed by someone without its key: its check does not match.", _repositoryPath);
            }

            Key = key;
        }

        /// <summary>Whether <paramref name="key"/> is this repository's key: its id, and the repository file's check verifies under it.</summary>
        internal bool Opens(RepositoryKey key) => key.KeyId == KeyId && (_check == null || FixedTimeEquals(_check, Check(key)));

        /// <summary>
        /// Takes the key from this host's key file for the repository, when there is one. A key file that cannot be
        /// used (damaged, or another key) leaves the repository open without its key, so that it can still be
        /// described and the key imported over it; reading then names the file and what is wrong with it.
        /// </summary>
        internal void UnlockFromHost()
        {
            try
            {
                if (IsEncrypted && HostKeyStore.TryRead(RepositoryId!) is RepositoryKey key)
                {
                    Unlock(key);
                }
            }
            catch (VmQuiesceException e) when (e.ErrorId == "RepositoryKeyFileInvalid" || e.ErrorId == "RepositoryKeyMismatch")
            {
                _hostKeyProblem = e;
            }
        }

        /// <summary>The key, or RepositoryKeyNotFound saying how to bring it to this host. Null for a repository that is not encrypted.</summary>
        public RepositoryKey? RequireKey() => IsEncrypted ? Key ?? throw KeyNotFound() : null;

        private RepositoryKey SealingKey()
        {
            RepositoryKey key = Key ?? throw KeyNotFound();
            Aead.RequireSupported(_cipher, _repositoryPath);
            return key;
        }

        private VmQuiesceException KeyNotFound() => new VmQuiesceException(_hostKeyProblem?.ErrorId ?? "RepositoryKeyNotFound", FailureKind.SecurityError,
            _hostKeyProblem == null
                ? $"The repository '{_repositoryPath}' is encrypted with key {KeyId}, and this host has no key file for it ({HostKeyStore.PathOf(RepositoryId!)})."
                : $"The repository '{_repositoryPath}' is encrypted with key {KeyId}, and this host's key file for it ({HostKeyStore.PathOf(RepositoryId!)}) cannot be used: {_hostKeyProblem.Message}",
            _repositoryPath, _hostKeyProblem)
        {
            Remedy = $"Bring the key to this host (an import replaces the key file): Import-VmBackupRepositoryKey -Repository '{_repositoryPath}' -Passphrase (Read-Host -AsSecureString), or -KeyFile <exported key file>.",
        };

        /// <summary>The hash that names chunks: HMAC-SHA256 under the chunk-id key, or SHA-256 in a repository made before keys.</summary>
        internal HashAlgorithm NewChunkIdHash() => IsEncrypted ? new HMACSHA256(SealingKey().ChunkIdKey) : (HashAlgorithm)SHA256.Create();

        /// <summary>The bytes sealing adds to a chunk's payload: header, inner codec, nonce and tag.</summary>
        internal const int SealedChunkOverhead = ChunkStore.HeaderLength + 1 + Aead.Overhead;

        /// <summary>
        /// Writes chunk <paramref name="hash"/> sealed: header with codec E, then nonce, (inner codec, payload) encrypted,
        /// tag. It is sealed in place in <paramref name="workspace"/> (at least payload + <see cref="SealedChunkOverhead"/>
        /// bytes; the payload may already be in it, from offset 0), so sealing needs no buffer beyond the caller's two.
        /// </summary>
        internal long WriteSealedChunk(Stream stream, string hash, byte codec, byte[] payload, int length, byte[] workspace)
        {
            int storedLength = SealChunk(hash, codec, payload, length, workspace);
            stream.Write(workspace, 0, storedLength);
            return storedLength;
        }

        /// <summary>
        /// Seals chunk <paramref name="hash"/> as <see cref="WriteSealedChunk"/> writes it, into <paramref name="workspace"/>
        /// from offset 0; returns its stored length.
        /// </summary>
        internal int SealChunk(string hash, byte codec, byte[] payload, int length, byte[] workspace)
        {
            byte[] key = SealingKey().ChunkKey;
            const int InnerOffset = ChunkStore.HeaderLength + Aead.NonceLength;
            // Overlapping when the payload is the workspace itself: BlockCopy moves it like memmove.
            Buffer.BlockCopy(payload, 0, workspace, InnerOffset + 1, length);
            ChunkStore.WriteHeader(workspace, ChunkStore.CodecSealed);
            workspace[InnerOffset] = codec;
            int sealedLength = Aead.Seal(_cipher, key, workspace, InnerOffset, length + 1, ChunkAssociated(hash), workspace, ChunkStore.HeaderLength);
            return ChunkStore.HeaderLength + sealedLength;
        }

        /// <summary>Throws <see cref="InvalidDataException"/> unless <paramref name="length"/> bytes can be the sealed part of a chunk of this repository.</summary>
        internal void CheckSealedChunkLength(long length)
        {
            if (length < Aead.Overhead + 1 || length > _chunkSize + 1 + Aead.Overhead)
            {
                throw new InvalidDataException($"The sealed chunk is {length} bytes; a chunk of this repository seals into {Aead.Overhead + 1} to {_chunkSize + 1 + Aead.Overhead}.");
            }
        }

        /// <summary>
        /// Opens the sealed part of chunk <paramref name="hash"/> (after its header), <paramref name="length"/> bytes of
        /// <paramref name="stored"/> from <paramref name="offset"/>, in place: returns the inner codec and where in
        /// <paramref name="stored"/> its payload now lies in clear. Throws <see cref="InvalidDataException"/> when it does
        /// not open with this repository's key as that chunk.
        /// </summary>
        internal (byte Codec, int PayloadOffset, int PayloadLength) OpenSealedChunk(string hash, byte[] stored, int offset, int length)
        {
            byte[] key = SealingKey().ChunkKey;
            CheckSealedChunkLength(length);
            int inner = offset + Aead.NonceLength;
            int innerLength;
            try
            {
                innerLength = Aead.Open(_cipher, key, stored, offset, length, ChunkAssociated(hash), stored, inner);
            }
            catch (CryptographicException e)
            {
                throw new InvalidDataException($"It does not open with the repository's key as chunk {hash}: it was changed, swapped or planted ({e.Message})", e);
            }

            if (stored[inner] == ChunkStore.CodecSealed)
            {
                throw new InvalidDataException("The sealed chunk holds another sealed chunk.");
            }

            return (stored[inner], inner + 1, innerLength - 1);
        }

        /// <summary>The file a folder or a bucket publishes <paramref name="point"/> as: its manifest, indented, sealed as <see cref="SealManifest"/> does.</summary>
        internal byte[] ManifestFile(RestorePoint point) => SealManifest(point.Id, JsonText.SerializeUtf8(point.ToJson(), indented: true));

        /// <summary>
        /// The manifest of restore point <paramref name="id"/>, its JSON as UTF-8 <paramref name="plain"/>, as the bytes of
        /// the file it is published as: the JSON itself, or sealed in an encrypted repository. The envelope is written as
        /// <see cref="JsonText"/> writes it, with the sealed bytes' Base64 put straight into the file's bytes (a megabyte
        /// for a large disk, kept out of strings).
        /// </summary>
        internal byte[] SealManifest(string id, byte[] plain)
        {
            if (!IsEncrypted)
            {
                return plain;
            }

            var output = new byte[plain.Length + Aead.Overhead];
            Aead.Seal(_cipher, SealingKey().ManifestKey, plain, 0, plain.Length, ManifestAssociated(id), output, 0);
            // "sealed" is the envelope's last member, so its empty value is the text's last "": the Base64 goes between.
            string envelope = JsonText.Serialize(new JsonObject()
                .With("format", SealedManifestFormat)
                .With("algorithm", Algorithm)
                .With("keyId", KeyId)
                .With("id", id)
                .With("sealed", string.Empty), indented: true);
            int split = envelope.LastIndexOf("\"\"", StringComparison.Ordinal) + 1;
            var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
            byte[] head = utf8.GetBytes(envelope.Substring(0, split));
            byte[] tail = utf8.GetBytes(envelope.Substring(split));
            var file = new byte[head.Length + Base64Ascii.EncodedLength(output.Length) + tail.Length];
            Buffer.BlockCopy(head, 0, file, 0, head.Length);
            int written = Base64Ascii.Encode(output, output.Length, file, head.Length);
            Buffer.BlockCopy(tail, 0, file, head.Length + written, tail.Length);
            return file;
        }

        /// <summary>
        /// The manifest JSON of the file <paramref name="file"/> (restore point <paramref name="id"/>, its file name).
        /// In an encrypted repository anything but a manifest sealed with its key as that very point is refused with
        /// RestorePointNotAuthentic: a plaintext manifest someone planted, one changed, renamed, or from another repository.
        /// </summary>
        internal string OpenManifest(string file, string id, ArraySegment<byte> content)
        {
            if (!IsEncrypted)
            {
                return RegularFile.DecodeText(content);
            }

            RepositoryKey key = SealingKey();
            JsonObject envelope;
            byte[] sealedBytes;
            int offset;
            int length;
            try
            {
                (envelope, sealedBytes, offset, length) = ReadSealedInPlace(content) ?? ReadEnvelope(content);
            }
            catch (JsonFormatException e)
            {
                throw NotAuthentic("RestorePointNotAuthentic", $"The restore point manifest '{file}' is not a sealed manifest ({e.Message}); every manifest of the encrypted repository '{_repositoryPath}' is sealed with its key.", file, e);
            }
            catch (FormatException e)
            {
                throw NotAuthentic("RestorePointNotAuthentic", $"The restore point manifest '{file}' does not open with the repository's key as restore point '{id}': it was changed, renamed or planted.", file, e);
            }

            if (envelope.GetOptionalString("format") != SealedManifestFormat)
            {
                throw NotAuthentic("RestorePointNotAuthentic", $"The restore point manifest '{file}' is not sealed: the encrypted repository '{_repositoryPath}' never writes a plaintext manifest, so someone without its key put it there.", file);
            }

            string? keyId = envelope.GetOptionalString("keyId");
            if (keyId != KeyId)
            {
                throw NotAuthentic("RestorePointNotAuthentic", $"The restore point manifest '{file}' is sealed with the key {keyId}, not this repository's key {KeyId}: it comes from another repository.", file);
            }

            try
            {
                // Sealed as the point it names: a copy under another file name opens as that point, and the repository
                // reports it as a stray (its id is not its file name), never as the point its name claims. Opened in place.
                int plainLength = Aead.Open(_cipher, key.ManifestKey, sealedBytes, offset, length, ManifestAssociated(envelope.GetOptionalString("id") ?? id), sealedBytes, offset + Aead.NonceLength);
                return new UTF8Encoding(false, true).GetString(sealedBytes, offset + Aead.NonceLength, plainLength);
            }
            catch (Exception e) when (e is CryptographicException || e is DecoderFallbackException)
            {
                throw NotAuthentic("RestorePointNotAuthentic", $"The restore point manifest '{file}' does not open with the repository's key as restore point '{id}': it was changed, renamed or planted.", file, e);
            }
        }

        /// <summary>
        /// The envelope as <see cref="SealManifest"/> writes it, read without making its megabyte of Base64 a string: the
        /// last member, "sealed", is cut out of the bytes and decoded where it is (to the start of <paramref name="content"/>),
        /// the rest parsed as JSON with "sealed" empty. Null, with nothing changed, for an envelope written any other way.
        /// </summary>
        private static (JsonObject Envelope, byte[] Sealed, int Offset, int Length)? ReadSealedInPlace(ArraySegment<byte> content)
        {
            byte[] bytes = content.Array ?? Array.Empty<byte>();
            int first = content.Offset;
            int close = SkipWhitespaceBack(bytes, first, content.Offset + content.Count - 1);
            if (close < first || bytes[close] != '}')
            {
                return null;
            }

            close = SkipWhitespaceBack(bytes, first, close - 1);
            int open = close - 1;
            while (open >= first && bytes[open] != '"')
            {
                open--;
            }

            int colon = SkipWhitespaceBack(bytes, first, open - 1);
            int name = SkipWhitespaceBack(bytes, first, colon - 1) - SealedMember.Length + 1;
            if (close < first || bytes[close] != '"' || open < first || colon < first || bytes[colon] != ':' || name < first || !ByteRanges.StartsWith(bytes, name, content.Offset + content.Count, SealedMember))
            {
                return null;
            }

            JsonObject envelope;
            try
            {
                envelope = JsonText.ParseObject(RegularFile.DecodeText(new ArraySegment<byte>(bytes, first, open + 1 - first)) + Encoding.UTF8.GetString(bytes, close, content.Offset + content.Count - close));
            }
            catch (JsonFormatException)
            {
                return null;
            }

            if (envelope.GetOptionalString("sealed") != string.Empty || !Base64Ascii.TryDecodeInPlace(bytes, open + 1, close - open - 1, first, out int written))
            {
                return null;
            }

            return (envelope, bytes, first, written);
        }

        /// <summary>Any envelope: parsed whole, "sealed" decoded from its string (none when it has none, which then does not open).</summary>
        private static (JsonObject Envelope, byte[] Sealed, int Offset, int Length) ReadEnvelope(ArraySegment<byte> content)
        {
            JsonObject envelope = JsonText.ParseObject(RegularFile.DecodeText(content));
            byte[] sealedBytes = Convert.FromBase64String(envelope.GetOptionalString("sealed") ?? string.Empty);
            return (envelope, sealedBytes, 0, sealedBytes.Length);
        }

        /// <summary>The last index at or before <paramref name="at"/> (not before <paramref name="first"/>) that is not JSON whitespace; first - 1 when none is.</summary>
        private static int SkipWhitespaceBack(byte[] bytes, int first, int at)
        {
            while (at >= first && (bytes[at] == ' ' || bytes[at] == '\t' || bytes[at] == '\n' || bytes[at] == '\r'))
            {
                at--;
            }

            return at;
        }

        private static VmQuiesceException NotAuthentic(string errorId, string message, string target, Exception? inner = null) =>
            new VmQuiesceException(errorId, FailureKind.SecurityError, message, target, inner)
            {
                Remedy = "Nothing is read from it. Find out who can write the repository; restore another restore point, or from a copy of the repository kept elsewhere.",
            };

        private byte[] ChunkAssociated(string hash) => Encoding.ASCII.GetBytes("VmQuiesce chunk\n" + RepositoryId + "\n" + hash);

        private byte[] ManifestAssociated(string id) => Encoding.UTF8.GetBytes("VmQuiesce manifest\n" + RepositoryId + "\n" + id);

        private byte[] Check(RepositoryKey key) => RepositoryKey.Mac(key.MarkerKey, $"{RepositoryId}\n{KeyId}\n{_chunkSize}\n{Algorithm}\n{ChunkIdAlgorithm}");

        private static bool FixedTimeEquals(byte[] a, byte[] b)
        {
            int difference = a.Length ^ b.Length;
            for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
            {
                difference |= a[i] ^ b[i];
            }

            return difference == 0;
        }
    }
}
