namespace VmQuiesce.Core
{
    /// <summary>
    /// The consistency a restore point actually reached, lowest first so levels compare with &lt; and &gt;.
    /// </summary>
    public enum Consistency
    {
        /// <summary>Nothing was quiesced: as if the power had been cut.</summary>
        Crash = 0,

        /// <summary>The guest's file systems were frozen (fsfreeze, or VSS without writers).</summary>
        FileSystem = 1,

        /// <summary>Applications took part (VSS writers flushed their data).</summary>
        Application = 2,
    }
}
