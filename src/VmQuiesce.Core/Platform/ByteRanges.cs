namespace VmQuiesce.Core.Platform
{
    /// <summary>Comparisons within byte arrays, for which .NET Framework 4.7.2 has no spans.</summary>
    internal static class ByteRanges
    {
        /// <summary>Whether <paramref name="bytes"/>[<paramref name="at"/>..<paramref name="end"/>) begins with <paramref name="expected"/>.</summary>
        public static bool StartsWith(byte[] bytes, int at, int end, byte[] expected)
        {
            if (end - at < expected.Length)
            {
                return false;
            }

            for (int i = 0; i < expected.Length; i++)
            {
                if (bytes[at + i] != expected[i])
                {
                    return false;
                }
            }

            return true;
        }
    }
}
