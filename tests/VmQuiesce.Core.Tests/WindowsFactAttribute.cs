using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests
{
    /// <summary>A fact that runs only on Windows and is reported as skipped, with the reason, elsewhere.</summary>
    public sealed class WindowsFactAttribute : FactAttribute
    {
        public WindowsFactAttribute()
        {
            if (!HostPlatform.IsWindows)
            {
                Skip = $"Windows only (this is {HostPlatform.Name}).";
            }
        }
    }
}
