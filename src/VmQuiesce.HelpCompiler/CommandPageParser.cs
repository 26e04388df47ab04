using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Markdig.Syntax;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>
    /// Reads one platyPS (schema 2.0.0) command page: front matter, '# Verb-Noun', then '##' sections
    /// in any order. Anything that would give incomplete or wrong help is an error at its line.
    /// </summary>
    public static class CommandPageParser
    {
        private static readonly string[] YamlKeys =
        {
            "Type", "Parameter Sets", "Aliases", "Accepted values", "Required", "Position", "Default value",
            "Accept pipeline input", "Accept wildcard characters", "Applicable",
        };

        public static CommandHelp Parse(string file, string markdown, string helpFileName)
        {
            var page = new PageReader(file, markdown);
            string name = page.TitleText;
            string expectedName = Path.GetFileNameWithoutExtension(file);
            if (!name.Equals(expectedName, StringComparison.OrdinalIgnoreCase))
            {
                throw page.Error(page.Title, $"the page title '{name}' does not match its file name '{expectedName}.md'.");
            }

            if (name.IndexOf('-') <= 0)
            {
                throw page.Error(page.Title, $"'{name}' is not a Verb-Noun command name.");
            }

            if (page.FrontMatter.TryGetValue("external help file", out var helpFile) &&
                !helpFile.Value.Equals(helpFileName, StringComparison.OrdinalIgnoreCase))
            {
                throw page.Error(helpFile.Line, $"'external help file: {helpFile.Value}' should be '{helpFileName}'.");
            }

            var sections = page.Split(page.Body, 2, $"the page of {name}");
            var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            List<string>? synopsis = null;
            var description = new List<string>();
            var notes = new List<string>();
            var parameters = new List<ParameterHelp>();
            var inputs = new List<TypeHelp>();
            var outputs = new List<TypeHelp>();
            var examples = new List<ExampleHelp>();
            var links = new List<LinkHelp>();
            if (page.FrontMatter.TryGetValue("online version", out var online) && MarkdownText.IsAbsoluteUri(online.Value))
            {
                links.Add(new LinkHelp("Online Version:", online.Value));
            }

            foreach (var (heading, body) in sections)
            {
                string section = MarkdownText.InlineText(heading.Inline).ToUpperInvariant();
                if (!seen.Add(section))
                {
                    throw page.Error(heading, $"the section '## {section}' appears twice.");
                }

                switch (section)
                {
                    case "SYNOPSIS":
                        synopsis = page.Text(body, "SYNOPSIS");
                        if (synopsis.Count == 0)
                        {
                            throw page.Error(heading, "the SYNOPSIS is empty: say in one sentence what the command does.");
                        }

                        break;
                    case "SYNTAX":
                        // Like platyPS, the syntax is rebuilt from the parameters' metadata.
                        break;
                    case "DESCRIPTION":
                        description = page.Text(body, "DESCRIPTION");
                        break;
                    case "EXAMPLES":
                        examples.AddRange(page.Split(body, 3, "EXAMPLES").Select(example => ReadExample(page, example.Heading, example.Body)));
                        break;
                    case "PARAMETERS":
                        parameters.AddRange(ReadParameters(page, body));
                        break;
                    case "INPUTS":
                        inputs.AddRange(ReadTypes(page, body, "INPUTS"));
                        break;
                    case "OUTPUTS":
                        outputs.AddRange(ReadTypes(page, body, "OUTPUTS"));
                        break;
                    case "NOTES":
                        notes = page.Text(body, "NOTES");
                        break;
                    case "RELATED LINKS":
                        links.AddRange(ReadLinks(page, body));
                        break;
                    default:
                        throw page.Error(heading, $"unknown section '## {section}': expected SYNOPSIS, SYNTAX, DESCRIPTION, EXAMPLES, PARAMETERS, INPUTS, OUTPUTS, NOTES or RELATED LINKS.");
                }
            }

            if (synopsis is null)
            {
                throw page.Error(page.Title, $"{name} has no '## SYNOPSIS' section.");
            }

            return new CommandHelp(name, synopsis, description, parameters, inputs, outputs, notes, examples, links);
        }

        private static ExampleHelp ReadExample(PageReader page, HeadingBlock heading, List<Block> body)
        {
            string title = MarkdownText.InlineText(heading.Inline);
            var code = body.OfType<LeafBlock>().Where(block => block is FencedCodeBlock || block is CodeBlock).ToList();
            if (code.Count == 0)
            {
                throw page.Error(heading, $"example '{title}' has no code block: put the command in a ```powershell block.");
            }

            // Text before the code introduces it; platyPS's MAML has only remarks, so it leads them.
            int firstCode = body.IndexOf(code[0]);
            int lastCode = body.IndexOf(code[code.Count - 1]);
            var introduction = page.Text(body.Take(firstCode), $"example '{title}'");
            var remarks = page.Text(body.Skip(lastCode + 1), $"example '{title}'");
            var between = body.Skip(firstCode).Take(lastCode - firstCode + 1).Where(block => !code.Contains(block)).ToList();
            if (between.Count > 0)
            {
                throw page.Error(between[0], $"example '{title}' has text between its code blocks: put the explanation after the code.");
            }

            if (introduction.Count > 0 && remarks.Count > 0)
            {
                introduction.Add(string.Empty);
            }

            return new ExampleHelp(
                title,
                string.Join("\n\n", code.Select(MarkdownText.CodeText)),
                introduction.Concat(remarks).ToList());
        }

        private static IEnumerable<ParameterHelp> ReadParameters(PageReader page, List<Block> body)
        {
            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (heading, parameterBody) in page.Split(body, 3, "PARAMETERS"))
            {
                string name = MarkdownText.InlineText(heading.Inline);
                string bare = name.Trim('<', '>');
                if (bare.Equals("CommonParameters", StringComparison.OrdinalIgnoreCase) ||
                    bare.Equals("WorkflowCommonParameters", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                name = name.TrimStart('-');
                if (name.Length == 0 || name.Any(char.IsWhiteSpace))
                {
                    throw page.Error(heading, $"'### {MarkdownText.InlineText(heading.Inline)}' is not a parameter heading: write '### -Name'.");
                }

                if (!names.Add(name))
                {
                    throw page.Error(heading, $"parameter -{name} is documented twice.");
                }

                var yaml = parameterBody.OfType<FencedCodeBlock>().Where(IsYaml).ToList();
                if (yaml.Count == 0)
                {
                    throw page.Error(heading, $"parameter -{name} has no ```yaml block (Type, Parameter Sets, Aliases, Required, Position, Default value, Accept pipeline input, Accept wildcard characters).");
                }

                var description = page.Text(parameterBody.Where(block => !yaml.Contains(block)), $"parameter -{name}");
                yield return new ParameterHelp(name, description, yaml.Select(block => ReadMetadata(page, name, block)).ToList());
            }
        }

        private static bool IsYaml(FencedCodeBlock block) => string.Equals(block.Info?.Trim(), "yaml", StringComparison.OrdinalIgnoreCase);

        private static ParameterMetadata ReadMetadata(PageReader page, string parameter, FencedCodeBlock block)
        {
            var values = new Dictionary<string, (string Value, int Line)>(StringComparer.OrdinalIgnoreCase);
            for (int i = 0; i < block.Lines.Count; i++)
            {
                var line = block.Lines.Lines[i];
                string text = line.Slice.ToString();
                int number = line.Line + 1;
                if (text.Trim().Length == 0)
                {
                    continue;
                }

                int colon = text.IndexOf(':');
                if (colon <= 0)
                {
                    throw page.Error(number, $"parameter -{parameter}: '{text.Trim()}' is not a 'Key: value' line.");
                }

                string key = text.Substring(0, colon).Trim();
                string? known = YamlKeys.FirstOrDefault(candidate => candidate.Equals(key, StringComparison.OrdinalIgnoreCase));
                if (known is null)
                {
                    throw page.Error(number, $"parameter -{parameter}: unknown key '{key}'; expected one of {string.Join(", ", YamlKeys)}.");
                }

                if (values.ContainsKey(known))
                {
                    throw page.Error(number, $"parameter -{parameter}: '{known}' is given twice.");
                }

                values[known] = (text.Substring(colon + 1).Trim(), number);
            }

            int blockLine = PageReader.LineOf(block);
            string Value(string key, string fallback) => values.TryGetValue(key, out var entry) && entry.Value.Length > 0 ? entry.Value : fallback;

            bool Flag(string key)
            {
                if (!values.TryGetValue(key, out var entry) || entry.Value.Length == 0)
                {
                    return false;
                }

                if (bool.TryParse(entry.Value, out bool flag))
                {
                    return flag;
                }

                throw page.Error(entry.Line, $"parameter -{parameter}: '{key}: {entry.Value}' must be True or False.");
            }

            static List<string> List(string value) =>
                value.Split(',').Select(item => item.Trim()).Where(item => item.Length > 0).ToList();

            string type = Value("Type", string.Empty);
            if (type.Length == 0)
            {
                throw page.Error(blockLine, $"parameter -{parameter} has no 'Type:' in its yaml block.");
            }

            string position = Value("Position", "Named");
            if (!position.Equals("Named", StringComparison.OrdinalIgnoreCase) && !int.TryParse(position, out _))
            {
                throw page.Error(values["Position"].Line, $"parameter -{parameter}: 'Position: {position}' must be Named or a number.");
            }

            string pipeline = Value("Accept pipeline input", "False");
            if (!pipeline.StartsWith("True", StringComparison.OrdinalIgnoreCase) && !pipeline.StartsWith("False", StringComparison.OrdinalIgnoreCase))
            {
                throw page.Error(values["Accept pipeline input"].Line, $"parameter -{parameter}: 'Accept pipeline input: {pipeline}' must be False, or True (ByValue) / True (ByPropertyName).");
            }

            string sets = Value("Parameter Sets", "(All)");
            return new ParameterMetadata(
                type,
                sets.Equals("(All)", StringComparison.OrdinalIgnoreCase) ? new List<string>() : List(sets),
                List(Value("Aliases", string.Empty)),
                List(Value("Accepted values", string.Empty)),
                Flag("Required"),
                position,
                values.TryGetValue("Default value", out var defaultValue) && defaultValue.Value.Length > 0 ? defaultValue.Value : null,
                pipeline,
                Flag("Accept wildcard characters"));
        }

        private static IEnumerable<TypeHelp> ReadTypes(PageReader page, List<Block> body, string section) =>
            page.Split(body, 3, section).Select(type =>
            {
                string name = MarkdownText.InlineText(type.Heading.Inline);
                return new TypeHelp(name, page.Text(type.Body, $"{section} '{name}'"));
            }).ToList();

        private static IEnumerable<LinkHelp> ReadLinks(PageReader page, List<Block> body)
        {
            var links = new List<LinkHelp>();
            foreach (Block block in body.SelectMany(Leaves))
            {
                if (block is not ParagraphBlock { Inline: not null } paragraph)
                {
                    throw page.Error(block, "RELATED LINKS holds only links: [text](address).");
                }

                foreach (var inline in paragraph.Inline)
                {
                    switch (inline)
                    {
                        case Markdig.Syntax.Inlines.LinkInline link:
                            links.Add(new LinkHelp(MarkdownText.ChildrenText(link), MarkdownText.IsAbsoluteUri(link.Url) ? link.Url! : string.Empty));
                            break;
                        case Markdig.Syntax.Inlines.LineBreakInline:
                            break;
                        case Markdig.Syntax.Inlines.LiteralInline literal when literal.Content.IsEmptyOrWhitespace():
                            break;
                        default:
                            throw page.Error(block, $"RELATED LINKS holds only links: [text](address); found '{MarkdownText.InlineText(paragraph.Inline)}'.");
                    }
                }
            }

            return links;
        }

        // Links may be written as paragraphs or as list items.
        private static IEnumerable<Block> Leaves(Block block) =>
            block is ContainerBlock container ? container.SelectMany(Leaves) : new[] { block };
    }
}
