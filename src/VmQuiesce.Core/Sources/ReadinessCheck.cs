namespace VmQuiesce.Core.Sources
{
    public enum ReadinessStatus
    {
        Passed,

        /// <summary>Backups work, but not as well as they could (e.g. only Crash consistency).</summary>
        Warning,

        /// <summary>Backups fail until this is fixed.</summary>
        Failed,

        /// <summary>Not checked because an earlier check failed.</summary>
        Skipped,
    }

    /// <summary>One row of Test-VmQuiesceReadiness: what was checked, the outcome, and what to do about it.</summary>
    public sealed class ReadinessCheck
    {
        public ReadinessCheck(string vmName, string check, ReadinessStatus status, string detail, string? remedy = null)
        {
            VmName = vmName;
            Check = check;
            StatusValue = status;
            Detail = detail;
            Remedy = remedy;
        }

        public string VmName { get; }

        /// <summary>A stable name scripts can match, e.g. "QmpReachable".</summary>
        public string Check { get; }

        /// <summary>By name, as scripts and ConvertTo-Json want it (Windows PowerShell writes an enum as a number); <see cref="StatusValue"/> is the typed value.</summary>
        public string Status => StatusValue.ToString();

        internal ReadinessStatus StatusValue { get; }

        public string Detail { get; }

        public string? Remedy { get; }

        public override string ToString() => $"{VmName} {Check}: {Status}";
    }
}
