using Xunit;

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>A fact that boots the real test guest: skipped, with the reason, where the guest is unavailable (failed where it is required).</summary>
    public sealed class GuestFactAttribute : FactAttribute
    {
        public GuestFactAttribute()
        {
            if (TestGuestEnvironment.SkipReason is string reason)
            {
                Skip = reason;
            }
        }
    }

    /// <summary>A theory that boots the real test guest: skipped, with the reason, where the guest is unavailable (failed where it is required).</summary>
    public sealed class GuestTheoryAttribute : TheoryAttribute
    {
        public GuestTheoryAttribute()
        {
            if (TestGuestEnvironment.SkipReason is string reason)
            {
                Skip = reason;
            }
        }
    }
}
