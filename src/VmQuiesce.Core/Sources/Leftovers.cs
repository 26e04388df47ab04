using System.Collections.Generic;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// What an earlier backup that did not finish left behind (overlays, snapshots, jobs, markers), as a source's
    /// <see cref="IBackupSource.FindLeftovers"/> names it: the one check every source makes right before it touches
    /// the VM, under one error id.
    /// </summary>
    public static class Leftovers
    {
        public const string ErrorId = "LeftoversFound";

        /// <summary>
        /// Refuses a backup of <paramref name="vmName"/> while <paramref name="found"/> names anything; each entry says
        /// what to run, or <paramref name="remedy"/> names the one command that repairs them all.
        /// </summary>
        public static void Refuse(string vmName, IReadOnlyList<string> found, string? remedy = null)
        {
            if (found.Count > 0)
            {
                throw new VmQuiesceException(ErrorId, FailureKind.ResourceBusy,
                    $"VM '{vmName}' still has what an earlier backup left behind, so no new backup starts and nothing was frozen: {string.Join("; ", found)}.", vmName)
                {
                    Remedy = remedy ?? "Release or remove each leftover as described, then run the backup again.",
                };
            }
        }
    }
}
