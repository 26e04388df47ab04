using System;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>A help page that does not follow the platyPS schema, with the file and line to fix.</summary>
    public sealed class HelpSchemaException : Exception
    {
        public HelpSchemaException(string file, int line, string message)
            : base(message)
        {
            File = file;
            Line = line;
        }

        public string File { get; }

        /// <summary>One-based line number in <see cref="File"/>.</summary>
        public int Line { get; }

        /// <summary>The form editors and CI logs understand: <c>path:line: message</c>.</summary>
        public override string ToString() => $"{File}:{Line}: {Message}";
    }
}
