using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace VmQuiesce.Bench
{
    /// <summary>What one stretch of the benchmark image holds.</summary>
    public enum ExtentKind { Hole, Random, Repeated }

    /// <summary>A stretch of whole units; a repeated one copies the content of a random one.</summary>
    public sealed class ImageExtent
    {
        public ImageExtent(ExtentKind kind, long offset, long length) { Kind = kind; Offset = offset; Length = length; }
        public ExtentKind Kind { get; }
        public long Offset { get; internal set; }
        public long Length { get; }
        /// <summary>For Repeated: the offset of the random extent it copies (cycled when that one is shorter).</summary>
        public long SourceOffset { get; internal set; } = -1;
        public long SourceLength { get; internal set; }
    }

    /// <summary>
    /// A deterministic, realistic disk image: runs of 1..16 units (1 MiB by default) that are holes,
    /// random data (incompressible, unique), or copies of earlier random runs, in exact byte proportions,
    /// in a seeded shuffled order. Unit content is a pure function of (seed, content id), so the image
    /// is written in one pass and the same seed always gives the same bytes.
    /// </summary>
    public static class BenchImage
    {
        public const int DefaultUnit = 1 << 20;
        private const int MaxRunUnits = 16;

        public static List<ImageExtent> Plan(long size, int seed, double holeShare, double randomShare, int unit = DefaultUnit)
        {
            if (size <= 0 || size % unit != 0) throw new ArgumentException($"The image size {size} must be a positive multiple of the unit {unit}.", nameof(size));
            if (holeShare < 0 || randomShare <= 0 || holeShare + randomShare > 1) throw new ArgumentException("The shares must be in [0, 1], the random one above 0, and add up to at most 1.");
            long units = size / unit;
            long holes = (long)Math.Round(units * holeShare);
            long random = Math.Max(1, (long)Math.Round(units * randomShare));
            long repeated = units - holes - random;
            var rng = new Random(seed);
            var extents = new List<ImageExtent>();
            Cut(extents, ExtentKind.Hole, holes, unit, rng);
            Cut(extents, ExtentKind.Random, random, unit, rng);
            Cut(extents, ExtentKind.Repeated, repeated, unit, rng);
            for (int i = extents.Count - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (extents[i], extents[j]) = (extents[j], extents[i]);
            }

            long offset = 0;
            foreach (ImageExtent extent in extents) { extent.Offset = offset; offset += extent.Length; }
            var randoms = extents.FindAll(e => e.Kind == ExtentKind.Random);
            foreach (ImageExtent extent in extents)
            {
                if (extent.Kind != ExtentKind.Repeated) continue;
                ImageExtent source = randoms[rng.Next(randoms.Count)];
                extent.SourceOffset = source.Offset;
                extent.SourceLength = source.Length;
            }

            return extents;
        }

        private static void Cut(List<ImageExtent> extents, ExtentKind kind, long units, int unit, Random rng)
        {
            while (units > 0)
            {
                long run = Math.Min(units, 1 + rng.Next(MaxRunUnits));
                extents.Add(new ImageExtent(kind, 0, run * unit));
                units -= run;
            }
        }

        /// <summary>Writes the planned image as a sparse file (holes are never written).</summary>
        public static void Write(string path, IReadOnlyList<ImageExtent> plan, int seed, int unit = DefaultUnit)
        {
            long size = 0;
            foreach (ImageExtent extent in plan) size = Math.Max(size, extent.Offset + extent.Length);
            var buffer = new byte[unit];
            using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
            file.SetLength(size);
            foreach (ImageExtent extent in plan)
            {
                if (extent.Kind == ExtentKind.Hole) continue;
                for (long done = 0; done < extent.Length; done += unit)
                {
                    long contentOffset = extent.Kind == ExtentKind.Random ? extent.Offset + done : extent.SourceOffset + done % extent.SourceLength;
                    Fill(buffer, seed, contentOffset / unit);
                    file.Position = extent.Offset + done;
                    file.Write(buffer, 0, unit);
                }
            }
        }

        /// <summary>
        /// Overwrites <paramref name="share"/> of the image's units, chosen anywhere (holes too, as a guest
        /// would), with content never seen before; returns the offsets written. Round r gives new content.
        /// </summary>
        public static long[] Change(string path, double share, int seed, int round, int unit = DefaultUnit)
        {
            long units = new FileInfo(path).Length / unit;
            int count = (int)Math.Max(1, Math.Round(units * share));
            var rng = new Random(seed * 7919 + round);
            var chosen = new SortedSet<long>();
            while (chosen.Count < count) chosen.Add((long)(rng.NextDouble() * units));
            var buffer = new byte[unit];
            var offsets = new long[count];
            int i = 0;
            using var file = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.Read, 1, FileOptions.None);
            foreach (long index in chosen)
            {
                // Content ids past every unit index: new data, unlike any unit in the image.
                Fill(buffer, seed, units * (round + 1) + index);
                file.Position = index * unit;
                file.Write(buffer, 0, unit);
                offsets[i++] = index * unit;
            }

            return offsets;
        }

        /// <summary>Fills the buffer with the content of one unit: splitmix64 seeded by (seed, content id).</summary>
        public static void Fill(byte[] buffer, int seed, long contentId)
        {
            Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(buffer.AsSpan());
            ulong state = ((ulong)(uint)seed << 40) ^ (ulong)contentId * 0x9E3779B97F4A7C15UL ^ 0xD1B54A32D192ED03UL;
            for (int i = 0; i < words.Length; i++)
            {
                ulong z = state += 0x9E3779B97F4A7C15UL;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                words[i] = z ^ (z >> 31);
            }
        }
    }
}
