using System.Collections.Generic;
using System.Threading;

namespace VmQuiesce.Core.Quiesce
{
    /// <summary>
    /// Something that can quiesce a guest and release it: the QEMU guest agent, a VSS requester.
    /// <see cref="FreezeGuard"/> drives it; it never needs to know about deadlines itself.
    /// </summary>
    public interface IGuestFreezer
    {
        /// <summary>What is frozen, for messages: "the guest agent at '/run/vm1/qga.sock'".</summary>
        string Target { get; }

        /// <summary>The exact command an administrator runs to thaw the guest by hand when every retry failed.</summary>
        string ManualThawCommand { get; }

        /// <summary>
        /// Quiesces the guest and returns what was frozen (empty: nothing was). Observes
        /// <paramref name="cancel"/>, which the guard also cancels at the deadline.
        /// </summary>
        IReadOnlyList<string> Freeze(CancellationToken cancel);

        /// <summary>
        /// Releases the guest. Must be safe to call from any thread while <see cref="Freeze"/> or the
        /// snapshot step still runs on another, and when nothing is frozen.
        /// </summary>
        void Thaw();
    }
}
