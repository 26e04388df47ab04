using System;
using System.Collections.Generic;
using System.Linq;
using System.Xml.Linq;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>
    /// Writes commands as MAML with the structure platyPS's New-ExternalHelp produces, which both
    /// Windows PowerShell 5.1 and PowerShell 7 read.
    /// </summary>
    public static class MamlWriter
    {
        public static readonly XNamespace Msh = "http://msh";
        public static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
        public static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
        public static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";
        private static readonly XNamespace MsHelp = "http://msdn.microsoft.com/mshelp";

        public static XDocument Write(IEnumerable<CommandHelp> commands) =>
            new(
                new XDeclaration("1.0", "utf-8", null),
                new XElement(Msh + "helpItems", new XAttribute("schema", "maml"), commands.Select(CommandElement)));

        private static XElement CommandElement(CommandHelp command)
        {
            int dash = command.Name.IndexOf('-');
            return new XElement(Command + "command",
                new XAttribute(XNamespace.Xmlns + "maml", Maml),
                new XAttribute(XNamespace.Xmlns + "command", Command),
                new XAttribute(XNamespace.Xmlns + "dev", Dev),
                new XAttribute(XNamespace.Xmlns + "MSHelp", MsHelp),
                new XElement(Command + "details",
                    new XElement(Command + "name", command.Name),
                    new XElement(Command + "verb", command.Name.Substring(0, dash)),
                    new XElement(Command + "noun", command.Name.Substring(dash + 1)),
                    Description(command.Synopsis)),
                Description(command.Description),
                new XElement(Command + "syntax", SyntaxItems(command)),
                new XElement(Command + "parameters", command.Parameters.Select(parameter => ParameterElement(parameter, parameter.Metadata[0], inSyntax: false))),
                new XElement(Command + "inputTypes", command.Inputs.Select(input => TypeElement("inputType", input))),
                new XElement(Command + "returnValues", command.Outputs.Select(output => TypeElement("returnValue", output))),
                new XElement(Maml + "alertSet", new XElement(Maml + "alert", Paragraphs(command.Notes))),
                new XElement(Command + "examples", command.Examples.Select(ExampleElement)),
                new XElement(Command + "relatedLinks", command.Links.Select(link =>
                    new XElement(Maml + "navigationLink",
                        new XElement(Maml + "linkText", link.Text),
                        new XElement(Maml + "uri", link.Uri)))));
        }

        private static XElement Description(IReadOnlyList<string> lines) => new(Maml + "description", Paragraphs(lines));

        private static IEnumerable<XElement> Paragraphs(IReadOnlyList<string> lines) => lines.Select(line => new XElement(Maml + "para", line));

        /// <summary>One syntax item per parameter set, named sets first-seen order, as platyPS gathers them.</summary>
        private static IEnumerable<XElement> SyntaxItems(CommandHelp command)
        {
            var setNames = new List<string>();
            foreach (string set in command.Parameters.SelectMany(parameter => parameter.Metadata).SelectMany(metadata => metadata.ParameterSets))
            {
                if (!setNames.Contains(set, StringComparer.OrdinalIgnoreCase))
                {
                    setNames.Add(set);
                }
            }

            if (setNames.Count == 0)
            {
                yield return SyntaxItem(command, command.Parameters.Select(parameter => (parameter, parameter.Metadata[0])));
                yield break;
            }

            foreach (string set in setNames)
            {
                var members = new List<(ParameterHelp, ParameterMetadata)>();
                foreach (ParameterHelp parameter in command.Parameters)
                {
                    ParameterMetadata? metadata =
                        parameter.Metadata.FirstOrDefault(candidate => candidate.ParameterSets.Contains(set, StringComparer.OrdinalIgnoreCase)) ??
                        parameter.Metadata.FirstOrDefault(candidate => candidate.InAllParameterSets);
                    if (metadata is not null)
                    {
                        members.Add((parameter, metadata));
                    }
                }

                yield return SyntaxItem(command, members);
            }
        }

        private static XElement SyntaxItem(CommandHelp command, IEnumerable<(ParameterHelp Parameter, ParameterMetadata Metadata)> members) =>
            new(Command + "syntaxItem",
                new XElement(Maml + "name", command.Name),
                members
                    .OrderBy(member => int.TryParse(member.Metadata.Position, out int position) ? position : int.MaxValue)
                    .Select(member => ParameterElement(member.Parameter, member.Metadata, inSyntax: true)));

        private static XElement ParameterElement(ParameterHelp parameter, ParameterMetadata metadata, bool inSyntax)
        {
            string type = metadata.IsSwitch ? "SwitchParameter" : metadata.Type;
            return new XElement(Command + "parameter",
                new XAttribute("required", Flag(metadata.Required)),
                new XAttribute("variableLength", "true"),
                new XAttribute("globbing", Flag(metadata.Globbing)),
                new XAttribute("pipelineInput", metadata.PipelineInput),
                new XAttribute("position", metadata.Position.ToLowerInvariant()),
                new XAttribute("aliases", metadata.Aliases.Count > 0 ? string.Join(", ", metadata.Aliases) : "none"),
                new XElement(Maml + "name", parameter.Name),
                Description(parameter.Description),
                inSyntax && metadata.AcceptedValues.Count > 0
                    ? new XElement(Command + "parameterValueGroup", metadata.AcceptedValues.Select(value =>
                        new XElement(Command + "parameterValue", new XAttribute("required", "false"), new XAttribute(Command + "variableLength", "false"), value)))
                    : null,
                // In syntax a switch shows as [-Name], not [-Name <SwitchParameter>].
                inSyntax && metadata.IsSwitch
                    ? null
                    : new XElement(Command + "parameterValue",
                        new XAttribute("required", Flag(!metadata.IsSwitch)),
                        new XAttribute("variableLength", "false"),
                        type),
                new XElement(Dev + "type", new XElement(Maml + "name", type), new XElement(Maml + "uri")),
                new XElement(Dev + "defaultValue",
                    metadata.IsSwitch && (metadata.DefaultValue is null || metadata.DefaultValue.Equals("None", StringComparison.OrdinalIgnoreCase))
                        ? "False"
                        : metadata.DefaultValue ?? "None"));
        }

        private static XElement TypeElement(string element, TypeHelp type) =>
            new(Command + element,
                new XElement(Dev + "type", new XElement(Maml + "name", type.TypeName)),
                Description(type.Description));

        private static XElement ExampleElement(ExampleHelp example) =>
            new(Command + "example",
                new XElement(Maml + "title", PadExampleTitle(example.Title)),
                new XElement(Dev + "code", example.Code),
                new XElement(Dev + "remarks", Paragraphs(example.Remarks)));

        /// <summary>platyPS centres short titles in dashes to 64 columns, the look of Get-Help's own examples.</summary>
        public static string PadExampleTitle(string title)
        {
            if (string.IsNullOrWhiteSpace(title) || title.Length >= 62)
            {
                return title;
            }

            string dashes = new('-', (64 - title.Length - 2) / 2);
            return $"{dashes} {title} {dashes}";
        }

        private static string Flag(bool value) => value ? "true" : "false";
    }
}
