namespace VmQuiesce.Core.Config
{
    /// <summary>One effective setting of a VMware configuration file: the last line that names the key.</summary>
    public sealed class VmwareConfigSetting
    {
        public VmwareConfigSetting(string name, string value, int lineNumber)
        {
            Name = name;
            Value = value;
            LineNumber = lineNumber;
        }

        /// <summary>The key as the file spells it (keys compare case-insensitively).</summary>
        public string Name { get; }

        /// <summary>The value with VMware's <c>|XX</c> escapes decoded.</summary>
        public string Value { get; }

        /// <summary>1-based line of the effective (last) occurrence.</summary>
        public int LineNumber { get; }

        public override string ToString() => $"{Name} = \"{Value}\"";
    }
}
