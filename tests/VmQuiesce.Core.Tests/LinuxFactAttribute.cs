using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    /// <summary>A fact that only means something on Linux; elsewhere it is skipped with the reason.</summary>
    public sealed class LinuxFactAttribute : FactAttribute
    {
        public LinuxFactAttribute()
        {
            if (!HostPlatform.IsLinux)
            {
                Skip = "Linux only: SEEK_DATA/SEEK_HOLE and directory fsync are Linux interop.";
            }
        }
    }
}
