using System;
using System.Diagnostics;
using System.IO;
using System.IO.Compression;
using System.Text;
using ZstdSharp;

namespace VmQuiesce.Bench
{
    /// <summary>One codec's pass over the compressible sample: bytes in, bytes out, time each way.</summary>
    public sealed class CodecRun
    {
        public string Codec { get; init; } = string.Empty;
        public long OriginalBytes { get; init; }
        public long StoredBytes { get; init; }
        public double CompressSeconds { get; init; }
        public double DecompressSeconds { get; init; }
        public double Ratio => (double)OriginalBytes / StoredBytes;
    }

    /// <summary>
    /// zstd (as the chunk store writes it) against Deflate (as it wrote chunks before), chunk by chunk on one
    /// thread, over content that compresses the way an image's text, logs and records do.
    /// </summary>
    public static class CodecBench
    {
        private static readonly string[] Words =
        {
            "INFO", "WARN", "kernel", "systemd", "sshd", "session", "opened", "closed", "for", "user", "root", "backup",
            "GET", "/api/v1/items", "200", "404", "HTTP/1.1", "connection", "from", "port", "insert", "into", "orders",
            "values", "select", "where", "id", "=", "status", "ok", "failed", "retry", "mounted", "filesystem", "ext4",
        };

        /// <summary>Log- and record-like lines: a vocabulary, timestamps and numbers, from a fixed seed.</summary>
        public static byte[] CompressibleChunk(int length, int seed)
        {
            var random = new Random(seed);
            var text = new StringBuilder(length + 256);
            while (text.Length < length)
            {
                text.Append("2026-11-").Append(random.Next(10, 29)).Append('T').Append(random.Next(10, 24)).Append(':')
                    .Append(random.Next(10, 60)).Append(':').Append(random.Next(10, 60)).Append(' ');
                int words = random.Next(4, 14);
                for (int i = 0; i < words; i++)
                {
                    text.Append(random.Next(5) == 0 ? random.Next(100000).ToString() : Words[random.Next(Words.Length)]).Append(' ');
                }

                text.Append('\n');
            }

            return Encoding.ASCII.GetBytes(text.ToString(0, length));
        }

        public static CodecRun Zstd(byte[][] chunks, int level)
        {
            using var compressor = new Compressor(level);
            using var decompressor = new Decompressor();
            return Measure("zstd level " + level, chunks,
                (chunk, output) => compressor.Wrap(chunk, 0, chunk.Length, output, 0, output.Length),
                (stored, length, output) => decompressor.Unwrap(stored, 0, length, output, 0, output.Length));
        }

        public static CodecRun Deflate(byte[][] chunks) =>
            Measure("Deflate fastest", chunks,
                (chunk, output) =>
                {
                    var stream = new MemoryStream(output);
                    using (var deflate = new DeflateStream(stream, CompressionLevel.Fastest, leaveOpen: true))
                    {
                        deflate.Write(chunk, 0, chunk.Length);
                    }

                    return (int)stream.Position;
                },
                (stored, length, output) =>
                {
                    using var inflate = new DeflateStream(new MemoryStream(stored, 0, length), CompressionMode.Decompress);
                    int total = 0;
                    for (int read; (read = inflate.Read(output, total, output.Length - total)) > 0;)
                    {
                        total += read;
                    }

                    return total;
                });

        private static CodecRun Measure(string codec, byte[][] chunks, Func<byte[], byte[], int> compress, Func<byte[], int, byte[], int> decompress)
        {
            int largest = 0;
            foreach (byte[] chunk in chunks)
            {
                largest = Math.Max(largest, chunk.Length);
            }

            var stored = new byte[chunks.Length][];
            var lengths = new int[chunks.Length];
            var output = new byte[largest + (largest / 2) + 4096];
            long original = 0, written = 0;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < chunks.Length; i++)
            {
                lengths[i] = compress(chunks[i], output);
                stored[i] = new byte[lengths[i]];
                Buffer.BlockCopy(output, 0, stored[i], 0, lengths[i]);
                original += chunks[i].Length;
                written += lengths[i];
            }

            double compressSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            for (int i = 0; i < chunks.Length; i++)
            {
                if (decompress(stored[i], lengths[i], output) != chunks[i].Length)
                {
                    throw new InvalidDataException($"{codec} did not give chunk {i} back whole.");
                }
            }

            return new CodecRun
            {
                Codec = codec,
                OriginalBytes = original,
                StoredBytes = written,
                CompressSeconds = compressSeconds,
                DecompressSeconds = clock.Elapsed.TotalSeconds,
            };
        }
    }
}
