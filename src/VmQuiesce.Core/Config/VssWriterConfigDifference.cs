namespace VmQuiesce.Core.Config
{
    /// <summary>One way a vmvsswriter.cfg differs from the desired state (Test-VssWriterConfig -Detailed).</summary>
    public sealed class VssWriterConfigDifference
    {
        public VssWriterConfigDifference(string path, string setting, string? expected, string? actual)
        {
            Path = path;
            Setting = setting;
            Expected = expected;
            Actual = actual;
        }

        public string Path { get; }

        public string Setting { get; }

        /// <summary>The desired value; null means the setting should be absent.</summary>
        public string? Expected { get; }

        /// <summary>The value in the file; null means the setting (or the file) is absent.</summary>
        public string? Actual { get; }

        public override string ToString() => $"{Setting}: expected {Expected ?? "(absent)"}, actual {Actual ?? "(absent)"}";
    }
}
