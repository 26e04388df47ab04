using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Xml.Linq;
using VmQuiesce.HelpCompiler;
using Xunit;

namespace VmQuiesce.Core.Tests.Help
{
    /// <summary>The help compiler against sample pages shaped like platyPS's, and against broken pages.</summary>
    public sealed class HelpCompilerTests : IDisposable
    {
        private static readonly XNamespace Maml = MamlWriter.Maml;
        private static readonly XNamespace Command = MamlWriter.Command;
        private static readonly XNamespace Dev = MamlWriter.Dev;
        private static readonly string Samples = Path.Combine(AppContext.BaseDirectory, "Help", "Samples");

        private readonly string _temp = Path.Combine(Path.GetTempPath(), "VmQuiesce.HelpCompilerTests." + Guid.NewGuid().ToString("N"));

        public void Dispose()
        {
            if (Directory.Exists(_temp))
            {
                Directory.Delete(_temp, recursive: true);
            }
        }

        [Fact]
        public void SamplesCompileIntoOneMamlFileAndAnAboutTopic()
        {
            Assert.Empty(HelpCompiler.HelpCompiler.Compile(Samples, _temp, "VmQuiesce.dll"));

            Assert.Equal(
                new[] { "VmQuiesce.dll-Help.xml", "about_Sample.help.txt" },
                Directory.GetFiles(_temp).Select(Path.GetFileName).OrderBy(name => name, StringComparer.Ordinal));
        }

        [Fact]
        public void MamlHasPlatyPSsCommandStructure()
        {
            XDocument maml = CompileSamples();

            XElement root = maml.Root!;
            Assert.Equal(XName.Get("helpItems", "http://msh"), root.Name);
            Assert.Equal("maml", (string?)root.Attribute("schema"));
            Assert.Equal(new[] { "Get-SampleItem", "Set-SampleItem" }, root.Elements(Command + "command").Select(Name));

            XElement command = SetSampleItem(maml);
            Assert.Equal(
                new[] { "details", "description", "syntax", "parameters", "inputTypes", "returnValues", "alertSet", "examples", "relatedLinks" },
                command.Elements().Select(element => element.Name.LocalName));
            XElement details = command.Element(Command + "details")!;
            Assert.Equal("Set", details.Element(Command + "verb")!.Value);
            Assert.Equal("SampleItem", details.Element(Command + "noun")!.Value);
            Assert.Equal(new[] { "Sets the value of a sample item." }, Paragraphs(details.Element(Maml + "description")));
        }

        [Fact]
        public void DescriptionKeepsParagraphsListItemsAndLinkAddresses()
        {
            XElement command = SetSampleItem(CompileSamples());

            Assert.Equal(
                new[]
                {
                    "The `Set-SampleItem` cmdlet sets the value of a sample item. It writes **nothing** when nothing changes.",
                    string.Empty,
                    "It reads these settings:",
                    string.Empty,
                    "- `Mode`, how carefully it works.",
                    "- `Setting`, the values to write.",
                    string.Empty,
                    "See the sample site (https://example.invalid/samples) for more.",
                },
                Paragraphs(command.Element(Maml + "description")));
        }

        [Fact]
        public void SyntaxHasOneItemPerParameterSetOrderedByPosition()
        {
            XElement syntax = SetSampleItem(CompileSamples()).Element(Command + "syntax")!;

            var items = syntax.Elements(Command + "syntaxItem").ToList();
            Assert.Equal(2, items.Count);
            Assert.All(items, item => Assert.Equal("Set-SampleItem", item.Element(Maml + "name")!.Value));
            Assert.Equal(new[] { "Path", "Setting", "Mode", "PassThru", "Confirm", "WhatIf" }, items[0].Elements(Command + "parameter").Select(Name));
            Assert.Equal(new[] { "Setting", "LiteralPath", "Mode", "PassThru", "Confirm", "WhatIf" }, items[1].Elements(Command + "parameter").Select(Name));
        }

        [Fact]
        public void SyntaxShowsAcceptedValuesAndNoValueForSwitches()
        {
            XElement syntaxItem = SetSampleItem(CompileSamples()).Element(Command + "syntax")!.Element(Command + "syntaxItem")!;

            XElement mode = Parameter(syntaxItem, "Mode");
            Assert.Equal(new[] { "Fast", "Safe" }, mode.Element(Command + "parameterValueGroup")!.Elements(Command + "parameterValue").Select(value => value.Value));
            Assert.Null(Parameter(syntaxItem, "PassThru").Element(Command + "parameterValue"));
            Assert.Equal("Hashtable", Parameter(syntaxItem, "Setting").Element(Command + "parameterValue")!.Value);
        }

        [Fact]
        public void ParametersCarryRequiredPositionPipelineGlobbingAliasesTypeAndDefault()
        {
            XElement parameters = SetSampleItem(CompileSamples()).Element(Command + "parameters")!;
            Assert.Equal(new[] { "Path", "LiteralPath", "Setting", "Mode", "PassThru", "Confirm", "WhatIf" }, parameters.Elements(Command + "parameter").Select(Name));

            XElement path = Parameter(parameters, "Path");
            Assert.Equal(
                new Dictionary<string, string>
                {
                    ["required"] = "true", ["variableLength"] = "true", ["globbing"] = "true",
                    ["pipelineInput"] = "True (ByPropertyName, ByValue)", ["position"] = "0", ["aliases"] = "none",
                },
                path.Attributes().ToDictionary(attribute => attribute.Name.LocalName, attribute => attribute.Value));
            Assert.Equal(new[] { "Specifies the paths of the items. Wildcards are permitted." }, Paragraphs(path.Element(Maml + "description")));
            Assert.Equal("String[]", path.Element(Command + "parameterValue")!.Value);
            Assert.Equal("true", (string?)path.Element(Command + "parameterValue")!.Attribute("required"));
            Assert.Equal("String[]", path.Element(Dev + "type")!.Element(Maml + "name")!.Value);
            Assert.Equal("None", path.Element(Dev + "defaultValue")!.Value);

            XElement literalPath = Parameter(parameters, "LiteralPath");
            Assert.Equal("PSPath, LP", (string?)literalPath.Attribute("aliases"));
            Assert.Equal("named", (string?)literalPath.Attribute("position"));
            Assert.Equal("True (ByPropertyName)", (string?)literalPath.Attribute("pipelineInput"));

            XElement passThru = Parameter(parameters, "PassThru");
            Assert.Equal("SwitchParameter", passThru.Element(Command + "parameterValue")!.Value);
            Assert.Equal("false", (string?)passThru.Element(Command + "parameterValue")!.Attribute("required"));
            Assert.Equal("False", passThru.Element(Dev + "defaultValue")!.Value);

            Assert.Equal("Safe", Parameter(parameters, "Mode").Element(Dev + "defaultValue")!.Value);
            Assert.Equal("wi", (string?)Parameter(parameters, "WhatIf").Attribute("aliases"));
            Assert.DoesNotContain(parameters.Elements(Command + "parameter"), parameter => Name(parameter).Contains("CommonParameters", StringComparison.Ordinal));
        }

        [Fact]
        public void ExamplesHavePaddedTitlesJoinedCodeAndRemarks()
        {
            var examples = SetSampleItem(CompileSamples()).Element(Command + "examples")!.Elements(Command + "example").ToList();

            Assert.Equal(2, examples.Count);
            Assert.Equal("-------------------- Example 1: Set an item --------------------", examples[0].Element(Maml + "title")!.Value);
            Assert.Equal("Set-SampleItem -Path ./item.cfg -Setting @{ a = 1 }", examples[0].Element(Dev + "code")!.Value);
            Assert.Equal(new[] { "This command sets `a` in item.cfg." }, Paragraphs(examples[0].Element(Dev + "remarks")));

            Assert.Equal(
                "Get-ChildItem *.cfg | Set-SampleItem -Setting @{ b = 2 } -PassThru\n\n'./one.cfg', './two.cfg' | Set-SampleItem -Mode Fast",
                examples[1].Element(Dev + "code")!.Value);
            Assert.Equal(
                new[] { "Paths can come from the pipeline.", string.Empty, "Each file is updated in turn.", string.Empty, "It writes the updated item when -PassThru is given." },
                Paragraphs(examples[1].Element(Dev + "remarks")));
        }

        [Fact]
        public void InputsOutputsNotesAndLinksAreCarriedOver()
        {
            XElement command = SetSampleItem(CompileSamples());

            XElement input = Assert.Single(command.Element(Command + "inputTypes")!.Elements(Command + "inputType"));
            Assert.Equal("System.String[]", input.Element(Dev + "type")!.Element(Maml + "name")!.Value);
            Assert.Equal(new[] { "You can pipe paths to this cmdlet." }, Paragraphs(input.Element(Maml + "description")));
            Assert.Equal(
                new[] { "None", "SampleItem" },
                command.Element(Command + "returnValues")!.Elements(Command + "returnValue").Select(output => output.Element(Dev + "type")!.Element(Maml + "name")!.Value));
            Assert.Equal(
                new[] { "Error ids: SampleItemNotFound, SampleItemLocked." },
                Paragraphs(command.Element(Maml + "alertSet")!.Element(Maml + "alert")));
            Assert.Equal(
                new[]
                {
                    ("Online Version:", "https://example.invalid/Set-SampleItem"),
                    ("Get-SampleItem", string.Empty),
                    ("Sample site", "https://example.invalid/samples"),
                },
                command.Element(Command + "relatedLinks")!.Elements(Maml + "navigationLink")
                    .Select(link => (link.Element(Maml + "linkText")!.Value, link.Element(Maml + "uri")!.Value)));
        }

        [Fact]
        public void CommandWithoutParametersHasOneEmptySyntaxItem()
        {
            XElement command = CompileSamples().Root!.Elements(Command + "command").Single(element => Name(element) == "Get-SampleItem");

            XElement item = Assert.Single(command.Element(Command + "syntax")!.Elements(Command + "syntaxItem"));
            Assert.Empty(item.Elements(Command + "parameter"));
            Assert.Empty(command.Element(Command + "parameters")!.Elements());
        }

        [Fact]
        public void AboutTopicIsPlainTextInPowerShellsLayout()
        {
            Assert.Empty(HelpCompiler.HelpCompiler.Compile(Samples, _temp, "VmQuiesce.dll"));
            string text = File.ReadAllText(Path.Combine(_temp, "about_Sample.help.txt"));

            Assert.StartsWith("TOPIC\n    about_Sample\n\nSHORT DESCRIPTION\n    Explains the samples.\n\nLONG DESCRIPTION\n    The samples show", text, StringComparison.Ordinal);
            Assert.Contains("\n  Steps\n", text, StringComparison.Ordinal);
            Assert.Contains("\n    1. Write a page.\n    2. Compile it into text", text, StringComparison.Ordinal);
            Assert.Contains("\n        Get-Help about_Sample\n", text, StringComparison.Ordinal);
            Assert.Contains("\nSEE ALSO\n    - Set-SampleItem\n", text, StringComparison.Ordinal);
            Assert.All(text.Split('\n'), line => Assert.True(line.Length <= 80, $"'{line}' is longer than 80 columns"));
        }

        private const string ValidPage =
            "# Get-Broken\n" +                          // 1
            "\n" +
            "## SYNOPSIS\n" +                           // 3
            "Does a thing.\n" +                         // 4
            "\n" +
            "## DESCRIPTION\n" +                        // 6
            "Text.\n" +
            "\n" +
            "## EXAMPLES\n" +                           // 9
            "\n" +
            "### Example 1\n" +                         // 11
            "```powershell\n" +                         // 12
            "Get-Broken\n" +
            "```\n" +
            "\n" +
            "## PARAMETERS\n" +                         // 16
            "\n" +
            "### -Name\n" +                             // 18
            "The name.\n" +
            "\n" +
            "```yaml\n" +                               // 21
            "Type: String\n" +                          // 22
            "Parameter Sets: (All)\n" +                 // 23
            "Aliases:\n" +                              // 24
            "\n" +
            "Required: False\n" +                       // 26
            "Position: 0\n" +                           // 27
            "Default value: None\n" +
            "Accept pipeline input: False\n" +          // 29
            "Accept wildcard characters: False\n" +
            "```\n";

        [Fact]
        public void TheValidPageCompiles()
        {
            Assert.Empty(CompileOne(ValidPage));
        }

        [Fact]
        public void NestedListsAndCodeInListsHangUnderTheirItem()
        {
            string page = ValidPage.Replace(
                "Text.\n",
                "1. First:\n   - inner one\n   - inner two\n2. Second:\n\n   ```powershell\n   Get-Broken\n   ```\n",
                StringComparison.Ordinal);
            Assert.Empty(CompileOne(page));

            XElement command = XDocument.Load(Path.Combine(_temp, "out", "VmQuiesce.dll-Help.xml")).Root!.Element(Command + "command")!;
            Assert.Equal(
                new[] { "1. First:", "   - inner one", "   - inner two", "2. Second:", "   Get-Broken" },
                Paragraphs(command.Element(Maml + "description")));
        }

        [Theory]
        [InlineData("## SYNOPSIS\nDoes a thing.\n\n", "", 1, "has no '## SYNOPSIS' section")]
        [InlineData("Does a thing.\n", "", 3, "the SYNOPSIS is empty")]
        [InlineData("```powershell\nGet-Broken\n```\n", "Words, but no code.\n", 11, "example 'Example 1' has no code block")]
        [InlineData("```yaml\nType: String\nParameter Sets: (All)\nAliases:\n\nRequired: False\nPosition: 0\nDefault value: None\nAccept pipeline input: False\nAccept wildcard characters: False\n```\n", "", 18, "parameter -Name has no ```yaml block")]
        [InlineData("Aliases:", "Alias:", 24, "unknown key 'Alias'")]
        [InlineData("Required: False", "Required: Maybe", 26, "'Required: Maybe' must be True or False")]
        [InlineData("Position: 0", "Position: first", 27, "'Position: first' must be Named or a number")]
        [InlineData("Accept pipeline input: False", "Accept pipeline input: Sometimes", 29, "must be False, or True (ByValue)")]
        [InlineData("Type: String\n", "", 21, "parameter -Name has no 'Type:'")]
        [InlineData("## DESCRIPTION", "## DESCRIPTON", 6, "unknown section '## DESCRIPTON'")]
        [InlineData("## PARAMETERS\n\n", "## PARAMETERS\n\nStray text.\n\n", 18, "PARAMETERS must start with a '### ' heading")]
        [InlineData("### -Name\n", "### Name with spaces\n", 18, "is not a parameter heading")]
        [InlineData("# Get-Broken", "# Get-Other", 1, "does not match its file name 'Get-Broken.md'")]
        [InlineData("Text.\n", "{{ Fill in the Description }}\n", 7, "'{{ Fill in the Description }}' is a platyPS placeholder")]
        [InlineData("## DESCRIPTION\nText.\n", "## DESCRIPTION\nText.\n\n## SYNOPSIS\nAgain.\n", 9, "the section '## SYNOPSIS' appears twice")]
        public void MalformedPageIsAnErrorNamingFileAndLine(string find, string replace, int line, string message)
        {
            Assert.Contains(find, ValidPage, StringComparison.Ordinal);
            var errors = CompileOne(ValidPage.Replace(find, replace, StringComparison.Ordinal));

            HelpSchemaException error = Assert.Single(errors);
            string file = Path.Combine(_temp, "en-US", "Get-Broken.md");
            Assert.Equal(file, error.File);
            Assert.Equal(line, error.Line);
            Assert.Contains(message, error.Message, StringComparison.Ordinal);
            Assert.StartsWith($"{file}:{line}: ", error.ToString(), StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(_temp, "out")), "nothing is written when a page is malformed");
        }

        [Fact]
        public void LineNumbersCountTheFrontMatterAndWindowsLineEndings()
        {
            string page = "---\r\nexternal help file: VmQuiesce.dll-Help.xml\r\nModule Name: VmQuiesce\r\n---\r\n\r\n" +
                ValidPage.Replace("Required: False", "Required: Maybe", StringComparison.Ordinal).Replace("\n", "\r\n", StringComparison.Ordinal);

            Assert.Equal(31, Assert.Single(CompileOne(page)).Line);
        }

        [Fact]
        public void FrontMatterMustNameTheHelpFileBeingBuilt()
        {
            string page = "---\nexternal help file: Other.dll-Help.xml\n---\n\n" + ValidPage;

            HelpSchemaException error = Assert.Single(CompileOne(page));
            Assert.Equal(2, error.Line);
            Assert.Contains("should be 'VmQuiesce.dll-Help.xml'", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void EveryBrokenPageIsReportedNotJustTheFirst()
        {
            string source = Path.Combine(_temp, "en-US");
            Directory.CreateDirectory(source);
            File.WriteAllText(Path.Combine(source, "Get-Broken.md"), ValidPage.Replace("Aliases:", "Alias:", StringComparison.Ordinal));
            File.WriteAllText(Path.Combine(source, "about_Broken.md"), "# about_Broken\n\n## LONG DESCRIPTION\nNo short one.\n");

            var errors = HelpCompiler.HelpCompiler.Compile(source, Path.Combine(_temp, "out"), "VmQuiesce.dll");

            Assert.Equal(new[] { ("Get-Broken.md", 24), ("about_Broken.md", 1) }, errors.Select(error => (Path.GetFileName(error.File), error.Line)));
            Assert.Contains("SHORT DESCRIPTION", errors[1].Message, StringComparison.Ordinal);
        }

        private IReadOnlyList<HelpSchemaException> CompileOne(string page)
        {
            string source = Path.Combine(_temp, "en-US");
            Directory.CreateDirectory(source);
            File.WriteAllText(Path.Combine(source, "Get-Broken.md"), page);
            return HelpCompiler.HelpCompiler.Compile(source, Path.Combine(_temp, "out"), "VmQuiesce.dll");
        }

        private XDocument CompileSamples()
        {
            Assert.Empty(HelpCompiler.HelpCompiler.Compile(Samples, _temp, "VmQuiesce.dll"));
            return XDocument.Load(Path.Combine(_temp, "VmQuiesce.dll-Help.xml"));
        }

        private static XElement SetSampleItem(XDocument maml) =>
            maml.Root!.Elements(Command + "command").Single(command => Name(command) == "Set-SampleItem");

        private static XElement Parameter(XElement parent, string name) =>
            parent.Elements(Command + "parameter").Single(parameter => Name(parameter) == name);

        private static string Name(XElement element) =>
            element.Name == Command + "command"
                ? element.Element(Command + "details")!.Element(Command + "name")!.Value
                : element.Element(Maml + "name")!.Value;

        private static string[] Paragraphs(XElement? parent) =>
            parent!.Elements(Maml + "para").Select(para => para.Value).ToArray();
    }
}
