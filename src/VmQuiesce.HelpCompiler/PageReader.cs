using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Markdig;
using Markdig.Extensions.Yaml;
using Markdig.Syntax;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>What command pages and about topics share: parsing, front matter, heading sections, errors.</summary>
    internal sealed class PageReader
    {
        private static readonly MarkdownPipeline Pipeline = new MarkdownPipelineBuilder().UseYamlFrontMatter().Build();

        // What platyPS's New-MarkdownHelp writes where an author has yet to: "{{ Fill in the Synopsis }}".
        private static readonly Regex Placeholder = new(@"\{\{ ?(Fill|Add|Short|Long|Optional)\b[^}]*\}\}", RegexOptions.CultureInvariant);

        public PageReader(string file, string markdown)
        {
            File = file;
            string[] lines = markdown.Split('\n');
            for (int i = 0; i < lines.Length; i++)
            {
                Match placeholder = Placeholder.Match(lines[i]);
                if (placeholder.Success)
                {
                    throw Error(i + 1, $"'{placeholder.Value}' is a platyPS placeholder: write the text it asks for.");
                }
            }

            MarkdownDocument document = Markdown.Parse(markdown, Pipeline);
            var blocks = document.Where(block => block is not LinkReferenceDefinitionGroup).ToList();
            if (blocks.Count > 0 && blocks[0] is YamlFrontMatterBlock frontMatter)
            {
                FrontMatter = ReadFrontMatter(frontMatter);
                blocks.RemoveAt(0);
            }

            if (blocks.Count == 0 || blocks[0] is not HeadingBlock { Level: 1 } title)
            {
                throw Error(blocks.Count == 0 ? 1 : LineOf(blocks[0]), $"the page must start with '# {Path.GetFileNameWithoutExtension(file)}'.");
            }

            Title = title;
            Body = blocks.Skip(1).ToList();
            Block? secondTitle = Body.FirstOrDefault(block => block is HeadingBlock { Level: 1 });
            if (secondTitle is not null)
            {
                throw Error(secondTitle, "a page holds one topic: only its first heading may be a level-1 heading ('# ').");
            }
        }

        public string File { get; }

        public HeadingBlock Title { get; }

        public string TitleText => MarkdownText.InlineText(Title.Inline);

        public IReadOnlyDictionary<string, (string Value, int Line)> FrontMatter { get; } =
            new Dictionary<string, (string, int)>(StringComparer.OrdinalIgnoreCase);

        /// <summary>Every block after the title.</summary>
        public List<Block> Body { get; }

        public static int LineOf(Block block) => block.Line + 1;

        public HelpSchemaException Error(Block block, string message) => new(File, LineOf(block), message);

        public HelpSchemaException Error(int line, string message) => new(File, line, message);

        /// <summary>Splits blocks at each heading of <paramref name="level"/>; a deeper heading belongs to its group.</summary>
        public List<(HeadingBlock Heading, List<Block> Body)> Split(IEnumerable<Block> blocks, int level, string where)
        {
            var groups = new List<(HeadingBlock Heading, List<Block> Body)>();
            foreach (Block block in blocks)
            {
                if (block is HeadingBlock heading && heading.Level <= level)
                {
                    if (heading.Level < level)
                    {
                        throw Error(block, $"unexpected level-{heading.Level} heading in {where}.");
                    }

                    groups.Add((heading, new List<Block>()));
                }
                else if (groups.Count == 0)
                {
                    throw Error(block, $"{where} must start with a '{new string('#', level)} ' heading; found text before it.");
                }
                else
                {
                    groups[groups.Count - 1].Body.Add(block);
                }
            }

            return groups;
        }

        /// <summary>Text of a section that may hold paragraphs, lists and code, but no headings.</summary>
        public List<string> Text(IEnumerable<Block> blocks, string where)
        {
            var list = blocks.ToList();
            Block? heading = list.FirstOrDefault(block => block is HeadingBlock);
            if (heading is not null)
            {
                throw Error(heading, $"unexpected heading in {where}: it holds text, lists and code blocks only.");
            }

            return MarkdownText.ToLines(list);
        }

        private Dictionary<string, (string, int)> ReadFrontMatter(YamlFrontMatterBlock block)
        {
            var values = new Dictionary<string, (string, int)>(StringComparer.OrdinalIgnoreCase);
            for (int i = 0; i < block.Lines.Count; i++)
            {
                var line = block.Lines.Lines[i];
                string text = line.Slice.ToString();
                int colon = text.IndexOf(':');
                if (text.Trim().Length == 0 || text.Trim() == "---" || colon < 0 || char.IsWhiteSpace(text[0]))
                {
                    continue;
                }

                values[text.Substring(0, colon).Trim()] = (text.Substring(colon + 1).Trim(), line.Line + 1);
            }

            return values;
        }
    }
}
