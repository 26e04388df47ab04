using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using Markdig.Syntax;
using Markdig.Syntax.Inlines;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>
    /// Turns markdown blocks into the plain display lines help shows. Inline markup stays as written
    /// (`code`, **bold**) as platyPS leaves it; links show their text and absolute address.
    /// </summary>
    internal static class MarkdownText
    {
        /// <summary>One line per paragraph, list item or code line, and an empty line between blocks.</summary>
        public static List<string> ToLines(IEnumerable<Block> blocks)
        {
            var lines = new List<string>();
            foreach (Block block in blocks)
            {
                var blockLines = BlockLines(block, indent: string.Empty);
                if (blockLines.Count == 0)
                {
                    continue;
                }

                if (lines.Count > 0)
                {
                    lines.Add(string.Empty);
                }

                lines.AddRange(blockLines);
            }

            return lines;
        }

        public static string CodeText(LeafBlock code) =>
            string.Join("\n", code.Lines.Lines.Take(code.Lines.Count).Select(line => line.Slice.ToString())).TrimEnd();

        public static string InlineText(ContainerInline? inline)
        {
            var text = new StringBuilder();
            AppendInline(text, inline);
            return text.ToString().Trim();
        }

        /// <summary>The text inside a container without the container's own decoration (a link's label without its address).</summary>
        public static string ChildrenText(ContainerInline container)
        {
            var text = new StringBuilder();
            AppendChildren(text, container);
            return text.ToString().Trim();
        }

        private static List<string> BlockLines(Block block, string indent)
        {
            switch (block)
            {
                case ParagraphBlock paragraph:
                    // A hard break (two trailing spaces or a backslash) starts a new display line.
                    return InlineText(paragraph.Inline)
                        .Split('\n')
                        .Select(line => indent + line.Trim())
                        .ToList();
                case HeadingBlock heading:
                    return new List<string> { indent + InlineText(heading.Inline) };
                case LeafBlock leaf when leaf is FencedCodeBlock || leaf is CodeBlock:
                    return CodeText(leaf).Split('\n').Select(line => indent + line).ToList();
                case ListBlock list:
                    return ListLines(list, indent);
                case QuoteBlock quote:
                    return quote.SelectMany(child => BlockLines(child, indent)).ToList();
                case HtmlBlock html:
                    return CodeText(html).Split('\n').Select(line => indent + line).ToList();
                default:
                    return new List<string>();
            }
        }

        private static List<string> ListLines(ListBlock list, string indent)
        {
            var lines = new List<string>();
            int number = int.TryParse(list.OrderedStart, out int start) ? start : 1;
            foreach (ListItemBlock item in list.OfType<ListItemBlock>())
            {
                string marker = list.IsOrdered ? $"{number++}{list.OrderedDelimiter} " : "- ";
                string childIndent = indent + new string(' ', marker.Length);
                bool first = true;
                foreach (Block child in item)
                {
                    // The item's first line carries the marker; the rest hang under its text.
                    foreach (string line in BlockLines(child, childIndent))
                    {
                        lines.Add(first ? indent + marker + line.Substring(Math.Min(childIndent.Length, line.Length)) : line);
                        first = false;
                    }
                }
            }

            return lines;
        }

        private static void AppendInline(StringBuilder text, Inline? inline)
        {
            switch (inline)
            {
                case null:
                    return;
                case LiteralInline literal:
                    text.Append(literal.Content.ToString());
                    return;
                case CodeInline code:
                    text.Append('`').Append(code.Content).Append('`');
                    return;
                case LineBreakInline lineBreak:
                    text.Append(lineBreak.IsHard ? '\n' : ' ');
                    return;
                case HtmlEntityInline entity:
                    text.Append(entity.Transcoded.ToString());
                    return;
                case HtmlInline html:
                    text.Append(html.Tag);
                    return;
                case AutolinkInline autolink:
                    text.Append(autolink.Url);
                    return;
                case LinkInline link:
                    AppendChildren(text, link);
                    if (!link.IsImage && IsAbsoluteUri(link.Url))
                    {
                        text.Append(" (").Append(link.Url).Append(')');
                    }

                    return;
                case EmphasisInline emphasis:
                    string delimiter = new string(emphasis.DelimiterChar, emphasis.DelimiterCount);
                    text.Append(delimiter);
                    AppendChildren(text, emphasis);
                    text.Append(delimiter);
                    return;
                case ContainerInline container:
                    AppendChildren(text, container);
                    return;
                default:
                    text.Append(inline.ToString());
                    return;
            }
        }

        private static void AppendChildren(StringBuilder text, ContainerInline container)
        {
            foreach (Inline child in container)
            {
                AppendInline(text, child);
            }
        }

        public static bool IsAbsoluteUri(string? uri) =>
            uri is not null && Uri.TryCreate(uri, UriKind.Absolute, out Uri? parsed) && !parsed.IsFile && !string.IsNullOrEmpty(parsed.Host);
    }
}
