using System;
using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using VmQuiesce.Core.Platform;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Threading;
using System.Text;
using VmQuiesce.Core.Repository.Keys;
using ZstdSharp;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Content-addressed chunks: each distinct chunk is stored once, under its SHA-256 in a fan-out
    /// folder (chunks/ab/abcd...), behind a 4-byte header that says how it is encoded.
    /// </summary>
    internal sealed class ChunkStore : IChunkSink
    {
        internal const string FolderName = "chunks";
        internal const string TempPrefix = ".tmp-";

        /// <summary>"VQC" then the codec byte.</summary>
        internal const int HeaderLength = 4;
        internal const byte CodecRaw = (byte)'R';
        /// <summary>Deflate: what compressible chunks were stored as before zstd; still read, no longer written.</summary>
        internal const byte CodecDeflate = (byte)'D';
        internal const byte CodecZeroBlocks = (byte)'Z';
        /// <summary>One zstd frame (RFC 8878) holding the chunk.</summary>
        internal const byte CodecZstd = (byte)'S';
        /// <summary>An encrypted repository's chunk: one of the codecs above, sealed (see <see cref="RepositoryEncryption"/>).</summary>
        internal const byte CodecSealed = (byte)'E';

        /// <summary>zstd's fastest standard level: a backup is bound by hashing and the disk, not by a better ratio.</summary>
        internal const int ZstdLevel = 1;

        /// <summary>Folders synced at once before a manifest is written (see <see cref="SyncStoredFolders"/>).</summary>
        private const int FolderSyncThreads = 16;

        /// <summary>The block size of the zero-block codec: the file system's, so restores stay sparse.</summary>
        internal const int ZeroBlockLength = 4096;

        /// <summary>Blocks sampled across a chunk to estimate its entropy, and their length.</summary>
        private const int SampleBlocks = 16;
        private const int SampleBlockLength = 4096;

        /// <summary>
        /// Compression must save 1/8, so content above 7 bits of entropy per byte is stored raw. The estimate
        /// ignores repeats that a compressor would find, so the bar is set a little lower.
        /// </summary>
        private const double IncompressibleBitsPerByte = 7.2;

        private static readonly ConcurrentBag<Compressor> s_compressors = new ConcurrentBag<Compressor>();
        private static readonly ConcurrentBag<Decompressor> s_decompressors = new ConcurrentBag<Decompressor>();

        private readonly RepositoryFileOps _ops;
        // A set (each folder maps to itself): bool values would be compiled at run time, as a backup stores its first chunk.
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _touchedFolders = new System.Collections.Concurrent.ConcurrentDictionary<string, string>(StringComparer.Ordinal);

        public ChunkStore(string repositoryPath, int chunkSize, RepositoryFileOps ops)
        {
            Root = Path.Combine(repositoryPath, FolderName);
            ChunkSize = chunkSize;
            _ops = ops;
            Damaged = new DamagedChunks(repositoryPath);
        }

        /// <summary>Chunks a verification found damaged: a backup stores them anew instead of deduplicating against them.</summary>
        public DamagedChunks Damaged { get; }

        public string Root { get; }

        /// <summary>How chunks are named and sealed; set once when the repository is opened.</summary>
        public RepositoryEncryption Encryption { get; set; } = RepositoryEncryption.None;

        public int ChunkSize { get; }

        public static string ToHex(byte[] hash)
        {
            var text = new StringBuilder(hash.Length * 2);
            foreach (byte b in hash)
            {
                text.Append(b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            }

            return text.ToString();
        }

        public static bool IsChunkName(string name)
        {
            if (name.Length != 64)
            {
                return false;
            }

            foreach (char c in name)
            {
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>
        /// The scratch buffer a writer of chunks owns: room to encode a chunk and to seal it, or to hold any stored chunk
        /// whole (<see cref="MaxFileLength"/>), so a backup that reads chunks back needs no buffer more.
        /// </summary>
        public int ScratchLength => (int)Math.Max(ChunkSize + RepositoryEncryption.SealedChunkOverhead, MaxFileLength);

        private void RequireScratch(byte[] scratch)
        {
            if (scratch.Length < ScratchLength)
            {
                throw new ArgumentException($"The scratch buffer is {scratch.Length} bytes; writing chunks of {ChunkSize} bytes needs {ScratchLength} (ScratchLength).", nameof(scratch));
            }
        }

        /// <summary>The longest a chunk file can be: the chunk plus its header and any codec's overhead, generously.</summary>
        public long MaxFileLength => ChunkSize + (64L * 1024);

        public string PathOf(string hash) => Path.Combine(Root, hash.Substring(0, 2), hash);

        public bool Contains(string hash) => File.Exists(PathOf(hash));

        /// <summary>The 256 fan-out folders' names, 00 to ff.</summary>
        public static IEnumerable<string> FanOutNames
        {
            get
            {
                for (int i = 0; i < 256; i++)
                {
                    yield return i.ToString("x2", System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }

        /// <summary>
        /// Stores a chunk unless it is already there, in two halves so a chunk under its final name is always
        /// whole: this one writes it under a temp name and returns it still open, not yet durable, so the caller's
        /// buffers are free again while another thread waits for the disk in <see cref="Publish"/>. Null when the
        /// chunk is already stored and sound (see <see cref="CheckStored"/>); a stored chunk that is not is written
        /// anew and replaces it.
        /// </summary>
        /// <param name="scratch">The worker's buffer for compression and sealing: one of <see cref="ScratchLength"/> bytes is put in the first time, and stays the worker's.</param>
        /// <param name="cancel">Unused: nothing here waits for a buffer.</param>
        PendingChunk? IChunkSink.Write(string hash, byte[] data, int length, ref byte[] scratch, CancellationToken cancel) =>
            Write(hash, data, length, WorkerScratch(ref scratch));

        /// <summary>The stored chunk is read whole into the worker's scratch (see <see cref="Read"/>).</summary>
        int IChunkSink.Read(string hash, byte[] buffer, ref byte[] scratch)
        {
            using FileStream file = RegularFile.OpenRead(PathOf(hash), MaxFileLength, _ops.ReparseTags);
            return DecodeStored(hash, file, file.Length, buffer, WorkerScratch(ref scratch));
        }

        private byte[] WorkerScratch(ref byte[] scratch)
        {
            if (scratch.Length < ScratchLength)
            {
                scratch = new byte[ScratchLength];
            }

            return scratch;
        }

        /// <summary>A waiting chunk holds an open temp file, no buffer: enough wait that the flushers never starve.</summary>
        int IChunkSink.WaitingCapacity => 8;

        /// <summary>
        /// Threads that wait for the disk (fsync, then rename) so the workers keep hashing meanwhile; several at once
        /// also keep the disk's queue full. They hold no chunk buffers.
        /// </summary>
        int IChunkSink.Publishers => 4;

        public PendingChunk? Write(string hash, byte[] data, int length, byte[] scratch)
        {
            string final = PathOf(hash);
            string? damage = CheckStored(hash, length, out bool missing);
            if (!missing && damage == null)
            {
                return null;
            }

            RequireScratch(scratch);
            (byte codec, int encodedLength) = Encode(data, length, scratch);
            bool encoded = codec != CodecRaw;
            string temp = Path.Combine(Path.GetDirectoryName(final)!, TempPrefix + hash + "." + Guid.NewGuid().ToString("N"));
            Stream stream = _ops.CreateNewBulk(temp);
            long fileLength;
            try
            {
                fileLength = WriteStored(stream, hash, codec, encoded ? scratch : data, encodedLength, scratch);
            }
            catch
            {
                stream.Dispose();
                throw;
            }

            return new PendingChunkFile(hash, stream, temp, final, fileLength, length) { Repairs = damage };
        }

        /// <summary>
        /// Writes chunk <paramref name="hash"/> as it is stored, in a folder or an object alike: the VQC header and
        /// the <paramref name="codec"/> payload, sealed in an encrypted repository (in <paramref name="scratch"/>, of at least
        /// <see cref="ScratchLength"/> bytes, which may hold the payload). Returns the bytes written.
        /// </summary>
        internal long WriteStored(Stream stream, string hash, byte codec, byte[] payload, int length, byte[] scratch)
        {
            RequireScratch(scratch);
            if (Encryption.IsEncrypted)
            {
                return Encryption.WriteSealedChunk(stream, hash, codec, payload, length, scratch);
            }

            var header = new byte[HeaderLength];
            WriteHeader(header, codec);
            stream.Write(header, 0, HeaderLength);
            stream.Write(payload, 0, length);
            return HeaderLength + length;
        }

        /// <summary>
        /// Encodes chunk <paramref name="hash"/> as it is stored (what <see cref="WriteStored"/> writes) into
        /// <paramref name="buffer"/> itself, of at least <see cref="ScratchLength"/> bytes, from offset 0; returns its
        /// length. An upload then needs no second buffer.
        /// </summary>
        internal int EncodeStored(string hash, byte[] data, int length, byte[] buffer)
        {
            RequireScratch(buffer);
            (byte codec, int encodedLength) = Encode(data, length, buffer);
            byte[] payload = codec == CodecRaw ? data : buffer;
            if (Encryption.IsEncrypted)
            {
                return Encryption.SealChunk(hash, codec, payload, encodedLength, buffer);
            }

            // Overlapping when the payload is the buffer itself: BlockCopy moves it like memmove.
            Buffer.BlockCopy(payload, 0, buffer, HeaderLength, encodedLength);
            WriteHeader(buffer, codec);
            return HeaderLength + encodedLength;
        }

        /// <summary>A stored chunk's header, "VQC" and its codec, at the start of <paramref name="buffer"/>.</summary>
        internal static void WriteHeader(byte[] buffer, byte codec)
        {
            buffer[0] = (byte)'V';
            buffer[1] = (byte)'Q';
            buffer[2] = (byte)'C';
            buffer[3] = codec;
        }

        /// <summary>
        /// Whether the stored chunk <paramref name="hash"/> of <paramref name="length"/> bytes can be deduplicated
        /// against, cheaply: a verification did not record it damaged, and it is a regular file whose header and
        /// length fit its codec (its content is not re-hashed: that is Test-VmBackup's work, which records what it
        /// finds). Null when it looks sound or is missing; otherwise what is wrong with it.
        /// </summary>
        public string? CheckStored(string hash, int length, out bool missing)
        {
            missing = false;
            if (Damaged.Contains(hash))
            {
                return "Test-VmBackup found it damaged";
            }

            FileStream? file;
            try
            {
                // Most chunks a backup writes are new: no exception for each of them.
                file = RegularFile.TryOpenRead(PathOf(hash), MaxFileLength, _ops.ReparseTags);
            }
            catch (IOException e)
            {
                return e.Message;
            }

            if (file == null)
            {
                missing = true;
                return null;
            }

            using (file)
            {
                var head = new byte[HeaderLength + 4];
                int read = file.ReadFully(head, head.Length);
                long size = file.Length;
                if (read < HeaderLength || head[0] != 'V' || head[1] != 'Q' || head[2] != 'C')
                {
                    return "it has no VQC header";
                }

                if ((head[3] == CodecSealed) != Encryption.IsEncrypted)
                {
                    return Encryption.IsEncrypted ? "it is not sealed with the repository's key" : "it is sealed, but the repository is not encrypted";
                }

                bool fits = head[3] switch
                {
                    CodecRaw => size == HeaderLength + length,
                    CodecZeroBlocks => read == head.Length && (head[4] | (head[5] << 8) | (head[6] << 16) | (head[7] << 24)) == length && size <= HeaderLength + 4 + ((((length + ZeroBlockLength - 1) / ZeroBlockLength) + 7) / 8) + length,
                    CodecDeflate => size > HeaderLength && size <= HeaderLength + length,
                    _ => true, // a codec whose length cannot be told from its header: verification reads it whole
                };
                return fits ? null : $"its {size:N0} bytes do not fit a chunk of {length:N0} bytes with codec '{(char)head[3]}'";
            }
        }

        /// <summary>
        /// The second half of <see cref="Write"/>: flushes the chunk to disk, closes it and renames it to its
        /// final name. Returns the bytes written, or 0 when another writer published the same chunk first.
        /// </summary>
        public long Publish(PendingChunk chunk)
        {
            var pending = (PendingChunkFile)chunk;
            try
            {
                _ops.FlushToDisk(pending.Stream);
            }
            finally
            {
                pending.Stream.Dispose();
            }

            if (pending.Repairs != null)
            {
                // The damaged file is replaced in one rename: readers see the old file or the new one.
                _ops.Replace(pending.TempPath, pending.FinalPath);
                Damaged.Clear(pending.Hash);
            }
            else if (!_ops.MoveNew(pending.TempPath, pending.FinalPath))
            {
                _ops.Delete(pending.TempPath);
                return 0;
            }

            string folder = Path.GetDirectoryName(pending.FinalPath)!;
            _touchedFolders.TryAdd(folder, folder);
            return pending.Length;
        }

        /// <summary>Closes and deletes a written chunk that will not be published (the backup failed or was cancelled).</summary>
        public void Abandon(PendingChunk chunk)
        {
            var pending = (PendingChunkFile)chunk;
            pending.Stream.Dispose();
            try
            {
                _ops.Delete(pending.TempPath);
            }
            catch (IOException)
            {
                // A temp name is never referenced; prune removes what is left.
            }
        }

        /// <summary>
        /// Reads and decodes a chunk into <paramref name="buffer"/> (at least ChunkSize bytes). Returns the
        /// decoded length; throws <see cref="InvalidDataException"/> when the file is not a valid chunk.
        /// </summary>
        public int Read(string hash, byte[] buffer)
        {
            using FileStream file = RegularFile.OpenRead(PathOf(hash), MaxFileLength, _ops.ReparseTags);
            return DecodeStored(hash, file, file.Length, buffer);
        }

        public bool ReadAuthenticates => Encryption.IsEncrypted;

        /// <summary>
        /// Decodes stored chunk <paramref name="hash"/>, <paramref name="storedLength"/> bytes with its header, from
        /// <paramref name="file"/> (a folder's file): see <see cref="Read"/>. Raw and Deflate chunks stream from the
        /// file; the others (sealed, zstd, zero blocks) are read whole into <paramref name="scratch"/> (when it holds them;
        /// otherwise a rented buffer) and decoded from there, as an object's bytes are.
        /// </summary>
        internal int DecodeStored(string hash, Stream file, long storedLength, byte[] buffer, byte[]? scratch = null)
        {
            var header = new byte[HeaderLength];
            if (file.ReadFully(header, HeaderLength) != HeaderLength)
            {
                throw new InvalidDataException("The chunk file has no VQC header.");
            }

            byte codec = CheckHeader(header);
            long payloadLength = storedLength - HeaderLength;
            if (codec == CodecRaw || codec == CodecDeflate)
            {
                return Decode(codec, file, payloadLength, buffer);
            }

            if (payloadLength > MaxFileLength)
            {
                throw new InvalidDataException($"The chunk's payload is {payloadLength} bytes; a chunk file holds at most {MaxFileLength}.");
            }

            int wholeLength = HeaderLength + (int)payloadLength;
            bool rented = scratch == null || scratch.Length < wholeLength;
            byte[] stored = rented ? ArrayPool<byte>.Shared.Rent(wholeLength) : scratch!;
            try
            {
                if (file.ReadFully(stored, HeaderLength, (int)payloadLength) != payloadLength)
                {
                    throw new InvalidDataException("The chunk is shorter than its file.");
                }

                return DecodeChecked(hash, codec, stored, wholeLength, buffer);
            }
            finally
            {
                if (rented)
                {
                    ArrayPool<byte>.Shared.Return(stored);
                }
            }
        }

        /// <summary>
        /// Decodes stored chunk <paramref name="hash"/>, the first <paramref name="storedLength"/> bytes of
        /// <paramref name="stored"/> with its header (an object's bytes), into <paramref name="buffer"/>; a sealed chunk
        /// is opened in place, so <paramref name="stored"/> is overwritten. See <see cref="Read"/>.
        /// </summary>
        internal int DecodeStored(string hash, byte[] stored, int storedLength, byte[] buffer)
        {
            if (storedLength < HeaderLength)
            {
                throw new InvalidDataException("The chunk file has no VQC header.");
            }

            return DecodeChecked(hash, CheckHeader(stored), stored, storedLength, buffer);
        }

        /// <summary>Decodes a stored chunk whose header (<paramref name="codec"/>) is checked; the bytes after it are in <paramref name="stored"/>.</summary>
        private int DecodeChecked(string hash, byte codec, byte[] stored, int storedLength, byte[] buffer) =>
            codec == CodecSealed ? DecodeSealed(hash, stored, storedLength, buffer) : Decode(codec, stored, HeaderLength, storedLength - HeaderLength, buffer);

        /// <summary>The codec of a stored chunk's header; throws when it is no VQC header, or when sealing does not match the repository's encryption.</summary>
        private byte CheckHeader(byte[] header)
        {
            if (header[0] != 'V' || header[1] != 'Q' || header[2] != 'C')
            {
                throw new InvalidDataException("The chunk file has no VQC header.");
            }

            if ((header[3] == CodecSealed) != Encryption.IsEncrypted)
            {
                throw Encryption.IsEncrypted
                    ? new InvalidDataException($"The chunk is not sealed (codec '{(char)header[3]}'): the encrypted repository never writes one, so someone without its key put it there.")
                    : new InvalidDataException("The chunk is sealed, but the repository is not encrypted.");
            }

            return header[3];
        }

        /// <summary>Opens sealed chunk <paramref name="hash"/> (header at the start of <paramref name="stored"/>) in place and decodes its payload from there.</summary>
        private int DecodeSealed(string hash, byte[] stored, int storedLength, byte[] buffer)
        {
            (byte codec, int payloadOffset, int payloadLength) = Encryption.OpenSealedChunk(hash, stored, HeaderLength, storedLength - HeaderLength);
            return Decode(codec, stored, payloadOffset, payloadLength, buffer);
        }

        /// <summary>The hash that names this repository's chunks, one per thread (see <see cref="RepositoryEncryption.NewChunkIdHash"/>).</summary>
        public HashAlgorithm NewIdHash() => Encryption.NewChunkIdHash();

        /// <summary>
        /// Decodes <paramref name="length"/> bytes of <paramref name="codec"/> from <paramref name="payload"/> at
        /// <paramref name="offset"/> into <paramref name="buffer"/>: straight from the array, Deflate through a stream over it.
        /// </summary>
        private int Decode(byte codec, byte[] payload, int offset, int length, byte[] buffer)
        {
            switch (codec)
            {
                case CodecRaw:
                    CheckRawLength(length);
                    Buffer.BlockCopy(payload, offset, buffer, 0, length);
                    return length;
                case CodecZstd:
                    return DecodeZstd(payload, offset, length, buffer);
                case CodecZeroBlocks:
                    return DecodeZeroBlocks(payload, offset, length, buffer);
                default:
                    using (var stream = new MemoryStream(payload, offset, length, writable: false))
                    {
                        return Decode(codec, stream, length, buffer);
                    }
            }
        }

        private void CheckRawLength(long length)
        {
            if (length > ChunkSize)
            {
                throw new InvalidDataException("The raw chunk is longer than the chunk size.");
            }
        }

        /// <summary>Decodes <paramref name="payloadLength"/> bytes of <paramref name="codec"/> from <paramref name="payload"/> into <paramref name="buffer"/>.</summary>
        private int Decode(byte codec, Stream payload, long payloadLength, byte[] buffer)
        {
            switch (codec)
            {
                case CodecRaw:
                    CheckRawLength(payloadLength);
                    return payload.ReadFully(buffer, (int)payloadLength);
                case CodecDeflate:
                    using (var inflate = new DeflateStream(payload, CompressionMode.Decompress, leaveOpen: true))
                    {
                        int length = inflate.ReadFully(buffer, ChunkSize);
                        if (inflate.ReadByte() >= 0)
                        {
                            throw new InvalidDataException("The compressed chunk inflates beyond the chunk size.");
                        }

                        return length;
                    }

                default:
                    throw new InvalidDataException($"The chunk has the unknown codec '{(char)codec}'.");
            }
        }

        /// <summary>
        /// Makes the renames of the chunks stored so far durable: called before a manifest names them. The folders are
        /// synced all at once: the file system then commits their renames together, where one after the other each
        /// folder waits for a journal commit of its own (4.5 ms each here, 50 folders after a 1% change of 4 GiB).
        /// </summary>
        public void SyncStoredFolders()
        {
            var folders = new ConcurrentQueue<string>(_touchedFolders.Keys);
            Task[] syncing = OwnThread.StartEach(Math.Min(FolderSyncThreads, folders.Count), () =>
            {
                while (folders.TryDequeue(out string? folder))
                {
                    _ops.SyncDirectory(folder);
                }
            });
            foreach (Task sync in syncing)
            {
                OwnThread.WaitEnded(sync);
            }

            foreach (Task sync in syncing)
            {
                sync.GetAwaiter().GetResult();
            }
        }

        public IEnumerable<string> EnumerateChunkPaths()
        {
            if (!Directory.Exists(Root))
            {
                yield break;
            }

            foreach (string folder in Directory.EnumerateDirectories(Root))
            {
                foreach (string file in Directory.EnumerateFiles(folder))
                {
                    yield return file;
                }
            }
        }

        /// <summary>
        /// Chooses how to store a chunk, encoding into <paramref name="scratch"/> unless it is stored raw.
        /// Content that looks compressible (see <see cref="LooksIncompressible"/>) is compressed with zstd when
        /// that saves 1/8. Otherwise a chunk with at least 1/8 of its 4 KiB blocks all zero (free space inside a disk
        /// image) drops those blocks (codec Z); else it is stored raw. Random data, most of an image, thus
        /// costs a byte count, not a pass of the compressor.
        /// </summary>
        internal static (byte Codec, int Length) Encode(byte[] data, int length, byte[] scratch)
        {
            if (length >= 512 && !LooksIncompressible(data, length) && CompressZstd(data, length, scratch, length - length / 8) is int compressed)
            {
                return (CodecZstd, compressed);
            }

            int zeroBlocks = 0;
            int fullBlocks = length / ZeroBlockLength;
            for (int block = 0; block < fullBlocks; block++)
            {
                if (ZeroBytes.IsAllZero(data, block * ZeroBlockLength, ZeroBlockLength))
                {
                    zeroBlocks++;
                }
            }

            return fullBlocks > 0 && zeroBlocks * 8 >= fullBlocks ? (CodecZeroBlocks, EncodeZeroBlocks(data, length, scratch)) : (CodecRaw, length);
        }

        /// <summary>
        /// Codec Z's payload: the chunk length (4 bytes, little-endian), a bitmap with one bit per 4 KiB block
        /// (1: stored; the last, partial block is always stored), then the stored blocks in order.
        /// </summary>
        private static int EncodeZeroBlocks(byte[] data, int length, byte[] scratch)
        {
            int blocks = (length + ZeroBlockLength - 1) / ZeroBlockLength;
            int bitmapLength = (blocks + 7) / 8;
            WriteInt32(scratch, 0, length);
            Array.Clear(scratch, 4, bitmapLength);
            int position = 4 + bitmapLength;
            for (int block = 0; block < blocks; block++)
            {
                int offset = block * ZeroBlockLength;
                int blockLength = Math.Min(ZeroBlockLength, length - offset);
                if (blockLength < ZeroBlockLength || !ZeroBytes.IsAllZero(data, block * ZeroBlockLength, ZeroBlockLength))
                {
                    scratch[4 + (block / 8)] |= (byte)(1 << (block % 8));
                    Buffer.BlockCopy(data, offset, scratch, position, blockLength);
                    position += blockLength;
                }
            }

            return position;
        }

        /// <summary>Decodes codec Z's payload (see <see cref="EncodeZeroBlocks"/>), <paramref name="payloadLength"/> bytes of <paramref name="payload"/> from <paramref name="offset"/>.</summary>
        private int DecodeZeroBlocks(byte[] payload, int offset, int payloadLength, byte[] buffer)
        {
            if (payloadLength < 4)
            {
                throw new InvalidDataException("The zero-block chunk has no length.");
            }

            int length = payload[offset] | (payload[offset + 1] << 8) | (payload[offset + 2] << 16) | (payload[offset + 3] << 24);
            if (length <= 0 || length > ChunkSize)
            {
                throw new InvalidDataException($"The zero-block chunk says it holds {length} bytes; the chunk size is {ChunkSize}.");
            }

            int blocks = (length + ZeroBlockLength - 1) / ZeroBlockLength;
            int bitmap = offset + 4;
            int position = bitmap + ((blocks + 7) / 8);
            int end = offset + payloadLength;
            if (position > end)
            {
                throw new InvalidDataException("The zero-block chunk's bitmap is cut short.");
            }

            for (int block = 0; block < blocks; block++)
            {
                int blockOffset = block * ZeroBlockLength;
                int blockLength = Math.Min(ZeroBlockLength, length - blockOffset);
                if ((payload[bitmap + (block / 8)] & (1 << (block % 8))) == 0)
                {
                    Array.Clear(buffer, blockOffset, blockLength);
                    continue;
                }

                if (end - position < blockLength)
                {
                    throw new InvalidDataException("The zero-block chunk is shorter than its bitmap says.");
                }

                Buffer.BlockCopy(payload, position, buffer, blockOffset, blockLength);
                position += blockLength;
            }

            if (position != end)
            {
                throw new InvalidDataException("The zero-block chunk is longer than its bitmap says.");
            }

            return length;
        }

        private static void WriteInt32(byte[] target, int offset, int value)
        {
            for (int i = 0; i < 4; i++)
            {
                target[offset + i] = (byte)(value >> (8 * i));
            }
        }

        /// <summary>
        /// The order-0 entropy of up to 16 blocks of 4 KiB spread over the chunk, all-zero blocks left out
        /// (they are the zero-block codec's business): a few microseconds, where compressing a random chunk
        /// costs milliseconds. False when every sampled block is zero.
        /// </summary>
        internal static bool LooksIncompressible(byte[] data, int length)
        {
            var counts = new int[256];
            int pieces = Math.Min(SampleBlocks, (length + SampleBlockLength - 1) / SampleBlockLength);
            // Short data is read block after block; longer data in blocks spread evenly, the last at its end.
            long stride = length <= SampleBlocks * SampleBlockLength ? SampleBlockLength : (length - SampleBlockLength) / (SampleBlocks - 1);
            int sampled = 0;
            for (int piece = 0; piece < pieces; piece++)
            {
                int offset = (int)(piece * stride);
                int pieceLength = Math.Min(SampleBlockLength, length - offset);
                if (ZeroBytes.IsAllZero(data, offset, pieceLength))
                {
                    continue;
                }

                Count(counts, data, offset, pieceLength);
                sampled += pieceLength;
            }

            double bits = 0;
            foreach (int count in counts)
            {
                if (count > 0)
                {
                    double p = (double)count / sampled;
                    bits -= p * Math.Log(p, 2);
                }
            }

            return sampled > 0 && bits > IncompressibleBitsPerByte;
        }

        private static void Count(int[] counts, byte[] data, int offset, int length)
        {
            for (int i = offset; i < offset + length; i++)
            {
                counts[data[i]]++;
            }
        }

        /// <summary>The compressed length, or null when the frame would not fit in <paramref name="limit"/> bytes.</summary>
        private static int? CompressZstd(byte[] data, int length, byte[] scratch, int limit)
        {
            // A context holds a few MiB of tables: each is reused, one per thread compressing at a time.
            if (!s_compressors.TryTake(out Compressor? compressor))
            {
                compressor = new Compressor(ZstdLevel);
            }

            try
            {
                return compressor.TryWrap(data, 0, length, scratch, 0, Math.Min(limit, scratch.Length), out int written) ? written : (int?)null;
            }
            finally
            {
                s_compressors.Add(compressor);
            }
        }

        private void CheckZstdLength(long payload)
        {
            if (payload > ChunkSize)
            {
                throw new InvalidDataException("The zstd chunk is longer than the chunk size.");
            }
        }

        /// <summary>
        /// Decodes a zstd chunk in one call into <paramref name="buffer"/>: the output can never outgrow the chunk
        /// size, and no window beyond it is allocated, whatever window the frame asks for.
        /// </summary>
        private int DecodeZstd(byte[] frame, int offset, int length, byte[] buffer)
        {
            CheckZstdLength(length);
            if (!s_decompressors.TryTake(out Decompressor? decompressor))
            {
                decompressor = new Decompressor();
            }

            try
            {
                if (!decompressor.TryUnwrap(frame, offset, length, buffer, 0, ChunkSize, out int written))
                {
                    throw new InvalidDataException("The zstd chunk decompresses beyond the chunk size.");
                }

                return written;
            }
            catch (ZstdException e)
            {
                throw new InvalidDataException($"The zstd chunk is not a valid zstd frame: {e.Message}", e);
            }
            finally
            {
                s_decompressors.Add(decompressor);
            }
        }

        /// <summary>
        /// Reads chunk <paramref name="hash"/> with <paramref name="read"/> (the decoded length into
        /// <paramref name="buffer"/>) and checks it is <paramref name="expectedLength"/> bytes that are the chunk its
        /// name says: opened under its seal (see <see cref="CheckHeader"/>: an encrypted repository's chunks are all
        /// sealed) and, unless <paramref name="check"/> lets the seal suffice, hashed to its name (once per hash when
        /// <paramref name="good"/> remembers verified chunks). Null when whole; otherwise what is wrong, naming the
        /// chunk as <paramref name="where"/> says.
        /// </summary>
        internal string? ReadVerified(string hash, Func<string> where, Func<int> read, byte[] buffer, int expectedLength, ChunkCheck check, ConcurrentDictionary<string, bool>? good, out bool missing)
        {
            missing = false;
            if (!IsChunkName(hash))
            {
                return "the manifest names an invalid chunk hash";
            }

            int length;
            try
            {
                length = read();
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                missing = true;
                return $"'{where()}' does not exist";
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException)
            {
                return $"'{where()}' cannot be read: {e.Message}";
            }

            if (length != expectedLength)
            {
                return $"'{where()}' holds {length} bytes; expected {expectedLength}";
            }

            if ((check == ChunkCheck.Hash || !ReadAuthenticates) && (good == null || !good.ContainsKey(hash)))
            {
                using HashAlgorithm sha = NewIdHash();
                string actual = Hash(sha, buffer, length);
                if (actual != hash)
                {
                    return $"'{where()}' hashes to {actual}";
                }

                good?.TryAdd(hash, true);
            }

            return null;
        }

        public static string Hash(HashAlgorithm sha, byte[] data, int length) => ToHex(sha.ComputeHash(data, 0, length));
    }

    /// <summary>A chunk encoded by <see cref="IChunkSink.Write"/>, not yet stored under its name.</summary>
    internal abstract class PendingChunk
    {
        protected PendingChunk(string hash, long length, int dataLength)
        {
            Hash = hash;
            Length = length;
            DataLength = dataLength;
        }

        public string Hash { get; }

        /// <summary>Bytes to store, header included.</summary>
        public long Length { get; }

        /// <summary>The chunk's data before encoding.</summary>
        public int DataLength { get; }

        /// <summary>Why the chunk stored under the final name is damaged, when this one replaces it; null for a new chunk.</summary>
        public string? Repairs { get; init; }
    }

    /// <summary>A chunk written under its temp name and still open: see <see cref="ChunkStore.Write"/>.</summary>
    internal sealed class PendingChunkFile : PendingChunk
    {
        public PendingChunkFile(string hash, Stream stream, string tempPath, string finalPath, long length, int dataLength)
            : base(hash, length, dataLength)
        {
            Stream = stream;
            TempPath = tempPath;
            FinalPath = finalPath;
        }

        public Stream Stream { get; }

        public string TempPath { get; }

        public string FinalPath { get; }
    }
}
