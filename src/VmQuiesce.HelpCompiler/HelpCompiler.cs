using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Xml;

namespace VmQuiesce.HelpCompiler
{
    /// <summary>
    /// Compiles a folder of platyPS pages: every <c>Verb-Noun.md</c> into one MAML file named
    /// <c>&lt;assembly&gt;-Help.xml</c>, every <c>about_*.md</c> into <c>about_*.help.txt</c>. Every page is
    /// checked; nothing is written unless all pages are valid.
    /// </summary>
    public static class HelpCompiler
    {
        public static IReadOnlyList<HelpSchemaException> Compile(string sourceFolder, string outputFolder, string assemblyName)
        {
            string helpFileName = assemblyName + "-Help.xml";
            var errors = new List<HelpSchemaException>();
            var commands = new List<CommandHelp>();
            var aboutTopics = new List<(string Name, string Text)>();
            foreach (string file in Directory.GetFiles(sourceFolder, "*.md").OrderBy(path => path, StringComparer.Ordinal))
            {
                string name = Path.GetFileNameWithoutExtension(file);
                string markdown = File.ReadAllText(file);
                try
                {
                    if (name.StartsWith("about_", StringComparison.OrdinalIgnoreCase))
                    {
                        aboutTopics.Add((name, AboutTopicWriter.Write(file, markdown)));
                    }
                    else
                    {
                        commands.Add(CommandPageParser.Parse(file, markdown, helpFileName));
                    }
                }
                catch (HelpSchemaException error)
                {
                    errors.Add(error);
                }
            }

            if (errors.Count > 0)
            {
                return errors;
            }

            Directory.CreateDirectory(outputFolder);
            if (commands.Count > 0)
            {
                var settings = new XmlWriterSettings { Indent = true, IndentChars = "  ", NewLineChars = "\n", Encoding = new UTF8Encoding(false) };
                using XmlWriter writer = XmlWriter.Create(Path.Combine(outputFolder, helpFileName), settings);
                MamlWriter.Write(commands.OrderBy(command => command.Name, StringComparer.OrdinalIgnoreCase)).Save(writer);
            }

            foreach (var (name, text) in aboutTopics)
            {
                // With a byte order mark Windows PowerShell 5.1 reads non-ASCII text right too.
                File.WriteAllText(Path.Combine(outputFolder, name + ".help.txt"), text, new UTF8Encoding(true));
            }

            return errors;
        }
    }
}
