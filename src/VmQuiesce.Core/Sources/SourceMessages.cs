using System;

namespace VmQuiesce.Core.Sources
{
    /// <summary>
    /// Where a source reports what the user should see while it works (warnings, verbose lines). The
    /// caller decides where they go: a cmdlet posts them to its pipeline thread. Called from any thread.
    /// </summary>
    public sealed class SourceMessages
    {
        public static readonly SourceMessages None = new SourceMessages(null, null);

        public SourceMessages(Action<string>? warn, Action<string>? verbose)
        {
            Warn = warn;
            Verbose = verbose;
        }

        public Action<string>? Warn { get; }

        public Action<string>? Verbose { get; }
    }
}
