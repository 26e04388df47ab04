namespace VmQuiesce.Core.Platform
{
    /// <summary>Finds all-zero ranges: holes not to store, blocks not to write.</summary>
    internal static class ZeroBytes
    {
        /// <summary>True when the <paramref name="count"/> bytes from <paramref name="offset"/> are all zero (true for none).</summary>
        public static unsafe bool IsAllZero(byte[] data, int offset, int count)
        {
            if (count <= 0)
            {
                return true;
            }

            fixed (byte* start = &data[offset])
            {
                // Eight bytes at a time: data usually differs from zero in its first word.
                ulong* words = (ulong*)start;
                int wordCount = count / sizeof(ulong);
                for (int i = 0; i < wordCount; i++)
                {
                    if (words[i] != 0)
                    {
                        return false;
                    }
                }

                for (int i = wordCount * sizeof(ulong); i < count; i++)
                {
                    if (start[i] != 0)
                    {
                        return false;
                    }
                }
            }

            return true;
        }
    }
}
