using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// The keys a repository may name: relative, '/'-separated segments of letters, digits and "._-",
    /// no empty, "." or ".." segment, at most 512 characters. Anything else is refused before it reaches a
    /// file system (where it could climb out of the repository) or a bucket.
    /// </summary>
    public static class ObjectKeys
    {
        public const int MaxLength = 512;

        public static string Check(string key)
        {
            if (!IsValid(key))
            {
                throw new ArgumentException($"'{key}' is not a repository object key; expected '/'-separated names of letters, digits, '.', '_' or '-'.", nameof(key));
            }

            return key;
        }

        /// <summary>A prefix is "" or a valid key, optionally ending in '/'.</summary>
        public static string CheckPrefix(string prefix)
        {
            if (prefix.Length > 0)
            {
                Check(prefix.EndsWith("/", StringComparison.Ordinal) ? prefix.Substring(0, prefix.Length - 1) : prefix);
            }

            return prefix;
        }

        public static bool IsValid(string? key)
        {
            if (string.IsNullOrEmpty(key) || key!.Length > MaxLength)
            {
                return false;
            }

            foreach (string segment in key.Split('/'))
            {
                if (segment.Length == 0 || segment == "." || segment == "..")
                {
                    return false;
                }

                foreach (char c in segment)
                {
                    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
                    {
                        return false;
                    }
                }
            }

            return true;
        }

        /// <summary>The total length of <paramref name="parts"/>.</summary>
        internal static long LengthOf(IReadOnlyList<ArraySegment<byte>> parts)
        {
            long length = 0;
            foreach (ArraySegment<byte> part in parts)
            {
                length += part.Count;
            }

            return length;
        }
    }
}
