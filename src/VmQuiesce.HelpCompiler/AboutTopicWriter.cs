using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Markdig.Syntax;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>
    /// Turns an about_*.md page ('# about_Name', then '## SHORT DESCRIPTION', '## LONG DESCRIPTION', ...)
    /// into the plain text PowerShell shows for about topics: section titles in capitals at the margin,
    /// text indented and wrapped at 80 columns, code indented further and never wrapped.
    /// </summary>
    public static class AboutTopicWriter
    {
        private const int Width = 80;
        private const string TextIndent = "    ";
        private const string CodeIndent = "        ";

        public static string Write(string file, string markdown)
        {
            var page = new PageReader(file, markdown);
            string name = page.TitleText;
            string expectedName = Path.GetFileNameWithoutExtension(file);
            if (!name.Equals(expectedName, StringComparison.OrdinalIgnoreCase))
            {
                throw page.Error(page.Title, $"the topic title '{name}' does not match its file name '{expectedName}.md'.");
            }

            var text = new StringBuilder();
            text.Append("TOPIC\n").Append(TextIndent).Append(name).Append('\n');
            var sections = page.Split(page.Body, 2, name);
            var shortDescription = sections.FirstOrDefault(section =>
                MarkdownText.InlineText(section.Heading.Inline).Equals("SHORT DESCRIPTION", StringComparison.OrdinalIgnoreCase));
            if (shortDescription.Heading is null || shortDescription.Body.Count == 0)
            {
                // Get-Help lists about topics with the line that follows SHORT DESCRIPTION.
                throw page.Error(shortDescription.Heading ?? (Block)page.Title, $"{name} needs a '## SHORT DESCRIPTION' section with one sentence.");
            }

            foreach (var (heading, body) in sections)
            {
                text.Append('\n').Append(MarkdownText.InlineText(heading.Inline).ToUpperInvariant()).Append('\n');
                for (int i = 0; i < body.Count; i++)
                {
                    if (i > 0)
                    {
                        text.Append('\n');
                    }

                    AppendBlock(text, body[i]);
                }
            }

            return text.ToString().TrimEnd('\n') + "\n";
        }

        private static void AppendBlock(StringBuilder text, Block block)
        {
            switch (block)
            {
                case HeadingBlock heading:
                    text.Append("  ").Append(MarkdownText.InlineText(heading.Inline)).Append('\n');
                    break;
                case LeafBlock code when code is FencedCodeBlock || code is CodeBlock:
                    foreach (string line in MarkdownText.CodeText(code).Split('\n'))
                    {
                        text.Append(line.Length == 0 ? string.Empty : CodeIndent + line).Append('\n');
                    }

                    break;
                case ListBlock:
                    foreach (string item in MarkdownText.ToLines(new[] { block }))
                    {
                        // Wrap each item under its own text, past the "- " or "1. " marker.
                        int marker = item.Length - item.TrimStart().Length + (item.TrimStart().IndexOf(' ') + 1);
                        Wrap(text, item, TextIndent, TextIndent + new string(' ', Math.Max(marker, 0)));
                    }

                    break;
                default:
                    foreach (string line in MarkdownText.ToLines(new[] { block }))
                    {
                        Wrap(text, line, TextIndent, TextIndent);
                    }

                    break;
            }
        }

        private static void Wrap(StringBuilder text, string line, string firstIndent, string nextIndent)
        {
            if (line.Length == 0)
            {
                text.Append('\n');
                return;
            }

            var current = new StringBuilder(firstIndent);
            bool empty = true;
            foreach (string word in line.Split(' ').Where(word => word.Length > 0))
            {
                if (!empty && current.Length + 1 + word.Length > Width)
                {
                    text.Append(current).Append('\n');
                    current.Clear().Append(nextIndent);
                    empty = true;
                }

                if (!empty)
                {
                    current.Append(' ');
                }

                current.Append(word);
                empty = false;
            }

            text.Append(current).Append('\n');
        }
    }
}
