namespace VmQuiesce.Core.Platform
{
    /// <summary>Whether a path leads elsewhere, for the cmdlets: the rule of <see cref="ReparsePoints"/>, as this host reads it.</summary>
    public static class Links
    {
        /// <summary>
        /// Whether the entry at <paramref name="path"/> leads elsewhere: a symbolic link; on Windows a junction, symbolic link
        /// or other reparse point that redirects the name, while a OneDrive placeholder or a deduplicated file or folder does
        /// not. False when nothing is there.
        /// </summary>
        public static bool IsLink(string path) => ReparsePoints.RedirectionByPath(path) != null;
    }
}
