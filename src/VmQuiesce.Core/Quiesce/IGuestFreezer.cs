using System;
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
        /// Quiesces the guest and returns what was frozen (empty: nothing was). Calls <paramref name="beforeSend"/>
        /// right before the freeze request leaves, after anything else it sends first, and sends nothing more when
        /// it throws: from that call on the guard owes the guest a thaw, and until it the guard may still decide
        /// that no freeze is sent at all (a cancel, the deadline). Observes <paramref name="cancel"/>, which the
        /// guard also cancels at the deadline.
        /// </summary>
        IReadOnlyList<string> Freeze(Action beforeSend, CancellationToken cancel);

        /// <summary>
        /// Releases the guest. Must be safe to call from any thread while <see cref="Freeze"/> or the
        /// snapshot step still runs on another, and when nothing is frozen; a thaw must not overtake a
        /// freeze request that already left.
        /// </summary>
        void Thaw();
    }
}
