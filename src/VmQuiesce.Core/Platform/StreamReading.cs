using System.IO;

namespace VmQuiesce.Core.Platform
{
    /// <summary>Stream.Read may return fewer bytes than asked (decompressors, pipes): this reads until full or the end.</summary>
    internal static class StreamReading
    {
        /// <summary>Reads up to <paramref name="count"/> bytes into <paramref name="buffer"/>; fewer only at the end of the stream.</summary>
        public static int ReadFully(this Stream stream, byte[] buffer, int count) => stream.ReadFully(buffer, 0, count);

        /// <summary>Reads up to <paramref name="count"/> bytes into <paramref name="buffer"/> from <paramref name="offset"/>; fewer only at the end of the stream.</summary>
        public static int ReadFully(this Stream stream, byte[] buffer, int offset, int count)
        {
            int total = 0;
            while (total < count)
            {
                int read = stream.Read(buffer, offset + total, count - total);
                if (read == 0)
                {
                    break;
                }

                total += read;
            }

            return total;
        }
    }
}
