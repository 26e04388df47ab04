using System;
using System.Collections.Generic;

namespace VmQuiesce.HelpCompiler
{
    // The help of one command as a platyPS page states it. Text is a list of display lines: one per
    // paragraph, list item or code line, with an empty line between blocks (as platyPS renders it).

    public sealed record CommandHelp(
        string Name,
        IReadOnlyList<string> Synopsis,
        IReadOnlyList<string> Description,
        IReadOnlyList<ParameterHelp> Parameters,
        IReadOnlyList<TypeHelp> Inputs,
        IReadOnlyList<TypeHelp> Outputs,
        IReadOnlyList<string> Notes,
        IReadOnlyList<ExampleHelp> Examples,
        IReadOnlyList<LinkHelp> Links);

    /// <summary>A parameter and one metadata block per distinct set of parameter-set facts (platyPS allows several).</summary>
    public sealed record ParameterHelp(string Name, IReadOnlyList<string> Description, IReadOnlyList<ParameterMetadata> Metadata);

    public sealed record ParameterMetadata(
        string Type,
        IReadOnlyList<string> ParameterSets,
        IReadOnlyList<string> Aliases,
        IReadOnlyList<string> AcceptedValues,
        bool Required,
        string Position,
        string? DefaultValue,
        string PipelineInput,
        bool Globbing)
    {
        /// <summary>True when the block says <c>Parameter Sets: (All)</c> or names none.</summary>
        public bool InAllParameterSets => ParameterSets.Count == 0;

        public bool IsSwitch =>
            Type.Equals("SwitchParameter", StringComparison.OrdinalIgnoreCase) ||
            Type.Equals("System.Management.Automation.SwitchParameter", StringComparison.OrdinalIgnoreCase) ||
            Type.Equals("switch", StringComparison.OrdinalIgnoreCase);
    }

    public sealed record ExampleHelp(string Title, string Code, IReadOnlyList<string> Remarks);

    public sealed record TypeHelp(string TypeName, IReadOnlyList<string> Description);

    /// <summary>A related link; <see cref="Uri"/> is empty for links to other pages (Get-Help accepts only absolute URIs).</summary>
    public sealed record LinkHelp(string Text, string Uri);
}
