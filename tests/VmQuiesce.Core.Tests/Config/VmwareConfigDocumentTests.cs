using System;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Config;
using Xunit;

namespace VmQuiesce.Core.Tests.Config
{
    public class VmwareConfigDocumentTests
    {
        private const string Source = "sample.vmx";

        /// <summary>A VMware Server 2.0 .vmx as written on Windows: CRLF, an .encoding line, a duplicate, escapes.</summary>
        internal static readonly string WindowsVmx = string.Join("\r\n",
            ".encoding = \"UTF-8\"",
            "config.version = \"8\"",
            "virtualHW.version = \"4\"",
            "# hand edited: more memory for the Exchange store",
            "memsize = \"1024\"",
            "displayName = \"Exchange 2003 |22mail|22\"",
            "guestOS = \"winnetenterprise\"",
            "scsi0.present = \"TRUE\"",
            "scsi0:0.fileName = \"Exchange 2003.vmdk\"",
            "ethernet0.addressType = \"generated\"",
            "annotation = \"Line one|0ALine two|7Cpipe\"",
            "",
            "memsize = \"2048\"",
            "uuid.bios = \"56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc\"",
            "sched.mem.pshare.enable = \"FALSE\"",
            "") ;

        /// <summary>A hand-written vmvsswriter.cfg: LF, tabs, odd spacing, a trailing comment, no final newline.</summary>
        internal static readonly string HandWrittenWriterConfig =
            "# VMware VSS writer settings\n" +
            "#   overwriteSnapshots: let the writer replace a VM's snapshot during a backup\n" +
            "\n" +
            "  vmwriter.overwriteSnapshots\t=   \"FALSE\"   # changed by ops, ticket 4711\n" +
            "\t\n" +
            "vmwriter.logLevel=\"verbose\"";

        /// <summary>Mixed line endings, a byte order mark, non-ASCII text, escaped UTF-8 and an unquoted value.</summary>
        internal static readonly string MixedVmx =
            "config.version = \"8\"\r\n" +
            "displayName = \"Caf\u00e9 |C3|A9t\u00e9 \u20ac\"\n" +
            "memsize = 512\r" +
            "# commentaire: d\u00e9j\u00e0 vu \"quoted\" = not a setting\r\n" +
            "MemSize = \"768\"\n" +
            "floppy0.present = \"FALSE\"\r\n";

        public static TheoryData<string, bool> Samples => new TheoryData<string, bool>
        {
            { WindowsVmx, false },
            { WindowsVmx, true },
            { HandWrittenWriterConfig, false },
            { MixedVmx, true },
            { string.Empty, false },
            { string.Empty, true },
        };

        [Theory]
        [MemberData(nameof(Samples))]
        public void SamplesRoundTripByteForByte(string text, bool withBom)
        {
            byte[] bytes = Bytes(text, withBom);

            VmwareConfigDocument document = VmwareConfigDocument.Parse(bytes, Source);

            Assert.Equal(bytes, document.ToBytes());
            Assert.Equal(withBom, document.HasByteOrderMark);
            Assert.False(document.IsModified);
        }

        [Fact]
        public void ValuesAreDecodedAndTheLastDuplicateWinsWhateverTheCase()
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);

            Assert.Equal("UTF-8", vmx.GetValue(".encoding"));
            Assert.Equal("2048", vmx.GetValue("MEMSIZE"));
            Assert.Equal("Exchange 2003 \"mail\"", vmx.GetValue("displayname"));
            Assert.Equal("Line one\nLine two|pipe", vmx.GetValue("annotation"));
            Assert.Null(vmx.GetValue("nvram"));
            Assert.False(vmx.TryGetValue("nvram", out _));

            VmwareConfigSetting memsize = Assert.Single(vmx.Settings, s => s.Name == "memsize");
            Assert.Equal(13, memsize.LineNumber);
            Assert.Equal(12, vmx.Settings.Count);

            VmwareConfigDocument mixed = Parse(MixedVmx);
            Assert.Equal("Caf\u00e9 \u00e9t\u00e9 \u20ac", mixed.GetValue("displayName"));
            Assert.Equal("768", mixed.GetValue("memsize"));
            Assert.Equal("MemSize", mixed.Settings.Single(s => s.Name.Equals("memsize", StringComparison.OrdinalIgnoreCase)).Name);

            VmwareConfigDocument writer = Parse(HandWrittenWriterConfig);
            Assert.Equal(new[] { "vmwriter.overwriteSnapshots", "vmwriter.logLevel" }, writer.Settings.Select(s => s.Name));
            Assert.Equal("FALSE", writer.GetValue("vmwriter.overwritesnapshots"));
        }

        [Fact]
        public void SettingAValueEditsOnlyTheEffectiveLineAndKeepsItsSpacingAndComment()
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);
            Assert.True(vmx.SetValue("MemSize", "4096"));
            Assert.Equal(WindowsVmx.Replace("memsize = \"2048\"", "memsize = \"4096\""), vmx.ToText());

            VmwareConfigDocument writer = Parse(HandWrittenWriterConfig);
            Assert.True(writer.SetValue("vmwriter.overwriteSnapshots", "TRUE"));
            Assert.Equal(
                HandWrittenWriterConfig.Replace("\t=   \"FALSE\"   # changed", "\t=   \"TRUE\"   # changed"),
                writer.ToText());

            VmwareConfigDocument mixed = Parse(MixedVmx);
            Assert.True(mixed.SetValue("floppy0.present", "TRUE"));
            Assert.Equal(MixedVmx.Replace("floppy0.present = \"FALSE\"", "floppy0.present = \"TRUE\""), mixed.ToText());
        }

        [Fact]
        public void AnUnquotedValueIsQuotedWhenChanged()
        {
            VmwareConfigDocument document = Parse("memsize = 512\n");
            Assert.False(document.SetValue("memsize", "512"));
            Assert.True(document.SetValue("memsize", "1024"));
            Assert.Equal("memsize = \"1024\"\n", document.ToText());
        }

        [Fact]
        public void SettingTheSameValueChangesNothing()
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);

            Assert.False(vmx.SetValue("MEMSIZE", "2048"));
            Assert.False(vmx.SetValue(".ENCODING", "UTF-8"));

            Assert.False(vmx.IsModified);
            Assert.Equal(WindowsVmx, vmx.ToText());
        }

        [Fact]
        public void NewSettingsAreAppendedWithTheFilesOwnLineEnding()
        {
            VmwareConfigDocument crlf = Parse(WindowsVmx);
            crlf.SetValue("tools.syncTime", "TRUE");
            Assert.Equal(WindowsVmx + "tools.syncTime = \"TRUE\"\r\n", crlf.ToText());

            VmwareConfigDocument noFinalNewline = Parse(HandWrittenWriterConfig);
            noFinalNewline.SetValue("vmwriter.extra", "1");
            Assert.Equal(HandWrittenWriterConfig + "\nvmwriter.extra = \"1\"\n", noFinalNewline.ToText());

            var empty = new VmwareConfigDocument();
            empty.SetValue("vmwriter.overwriteSnapshots", "TRUE");
            Assert.Equal("vmwriter.overwriteSnapshots = \"TRUE\"\r\n", empty.ToText());
            Assert.True(empty.IsModified);
        }

        [Fact]
        public void TheEscapeCharacterIsEncodedSoValuesRoundTrip()
        {
            var document = new VmwareConfigDocument();
            document.SetValue("annotation", "a|b |7C \u00e9 \U0001F600");

            Assert.Equal("annotation = \"a|7Cb |7C7C \u00e9 \U0001F600\"\r\n", document.ToText());
            Assert.Equal("a|b |7C \u00e9 \U0001F600", Parse(document.ToText()).GetValue("annotation"));
        }

        [Theory]
        [InlineData("a|zz", "a|zz")]
        [InlineData("end|", "end|")]
        [InlineData("|4", "|4")]
        [InlineData("|41|42c", "ABc")]
        [InlineData("|c3|a9", "\u00e9")]
        [InlineData("|E9t|E9", "\u00e9t\u00e9")]
        public void EscapesDecodeAsVMwareWritesThem(string raw, string expected)
        {
            Assert.Equal(expected, VmwareConfigSyntax.DecodeValue(raw));
            Assert.Equal(expected, Parse($"k = \"{raw}\"").GetValue("k"));
        }

        [Fact]
        public void RemovingDeletesEveryLineOfTheSetting()
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);

            Assert.True(vmx.Remove("MEMSIZE"));
            Assert.False(vmx.Remove("memsize"));

            Assert.Equal(WindowsVmx.Replace("memsize = \"1024\"\r\n", string.Empty).Replace("memsize = \"2048\"\r\n", string.Empty), vmx.ToText());
            Assert.Null(vmx.GetValue("memsize"));
        }

        [Theory]
        [InlineData("key \"value\"", "'=' is missing")]
        [InlineData("key", "'=' is missing")]
        [InlineData("= \"value\"", "cannot be empty")]
        [InlineData("key = \"unterminated", "no closing quote")]
        [InlineData("key = \"a\" \"b\"", "text after the value")]
        [InlineData("key = \"a\" junk", "text after the value")]
        [InlineData("key = a b", "text after the value")]
        [InlineData("ke\"y = \"v\"", "cannot contain '\"'")]
        [InlineData("ke#y = \"v\"", "cannot contain '#'")]
        [InlineData("ke\u0001y = \"v\"", "control characters")]
        [InlineData("key =", "value of 'key' is missing")]
        [InlineData("key =   # nothing", "value of 'key' is missing")]
        public void AMalformedLineNamesTheFileAndLine(string badLine, string problem)
        {
            string text = "# header\r\ngood = \"1\"\r\n" + badLine + "\r\nlater = \"2\"\r\n";

            var failure = Assert.Throws<VmQuiesceException>(() => VmwareConfigDocument.Parse(Encoding.UTF8.GetBytes(text), @"C:\VMware\vm.vmx"));

            Assert.Equal("MalformedConfigLine", failure.ErrorId);
            Assert.Equal(FailureKind.InvalidData, failure.Kind);
            Assert.StartsWith(@"C:\VMware\vm.vmx, line 3: ", failure.Message, StringComparison.Ordinal);
            Assert.Contains(problem, failure.Message, StringComparison.Ordinal);
            Assert.Equal(@"C:\VMware\vm.vmx", failure.Target);
        }

        [Fact]
        public void BytesThatAreNotUtf8AreAnErrorNamingTheLine()
        {
            byte[] bytes = Encoding.ASCII.GetBytes("a = \"1\"\nb = \"caf?\"\n");
            bytes[Array.IndexOf(bytes, (byte)'?')] = 0xE9;

            var failure = Assert.Throws<VmQuiesceException>(() => VmwareConfigDocument.Parse(bytes, "latin1.vmx"));

            Assert.Equal("InvalidConfigEncoding", failure.ErrorId);
            Assert.StartsWith("latin1.vmx, line 2: ", failure.Message, StringComparison.Ordinal);
        }

        [Theory]
        [InlineData("")]
        [InlineData(" ")]
        [InlineData("a b")]
        [InlineData("a\tb")]
        [InlineData("a=b")]
        [InlineData("a\"b")]
        [InlineData("a#b")]
        [InlineData("a\nb")]
        [InlineData("a\rb")]
        [InlineData("a\u0000b")]
        [InlineData("a\u007fb")]
        [InlineData("a\u00a0b")]
        public void AnInvalidNameIsRejectedBeforeAnythingChanges(string name)
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);

            Assert.Equal("InvalidSettingName", Assert.Throws<VmQuiesceException>(() => vmx.SetValue(name, "1")).ErrorId);
            Assert.Equal("InvalidSettingName", Assert.Throws<VmQuiesceException>(() => vmx.Remove(name)).ErrorId);

            Assert.False(vmx.IsModified);
            Assert.Equal(WindowsVmx, vmx.ToText());
        }

        [Theory]
        [InlineData("two\nlines")]
        [InlineData("two\r\nlines")]
        [InlineData("carriage\rreturn")]
        [InlineData("x\"\r\nevil.setting = \"TRUE")]
        [InlineData("\" injected = \"1")]
        [InlineData("tab\there")]
        [InlineData("nul\u0000")]
        [InlineData("del\u007f")]
        [InlineData("c1\u0085")]
        public void AnInvalidValueIsRejectedBeforeAnythingChanges(string value)
        {
            VmwareConfigDocument vmx = Parse(WindowsVmx);

            var existing = Assert.Throws<VmQuiesceException>(() => vmx.SetValue("memsize", value));
            var added = Assert.Throws<VmQuiesceException>(() => vmx.SetValue("new.setting", value));

            Assert.Equal("InvalidSettingValue", existing.ErrorId);
            Assert.Equal("InvalidSettingValue", added.ErrorId);
            Assert.Equal(FailureKind.InvalidArgument, added.Kind);
            Assert.DoesNotContain("\n", added.Message, StringComparison.Ordinal);
            Assert.False(vmx.IsModified);
            Assert.Equal(WindowsVmx, vmx.ToText());
        }

        [Fact]
        public void UnpairedSurrogatesAreRejected()
        {
            // Built at run time: attribute data cannot carry an unpaired surrogate.
            string lone = "a" + (char)0xD800 + "b";
            var document = new VmwareConfigDocument();

            Assert.Equal("InvalidSettingName", Assert.Throws<VmQuiesceException>(() => document.SetValue(lone, "1")).ErrorId);
            Assert.Equal("InvalidSettingValue", Assert.Throws<VmQuiesceException>(() => document.SetValue("k", lone)).ErrorId);
            Assert.Equal("InvalidSettingValue", Assert.Throws<VmQuiesceException>(() => document.SetValue("k", "x" + (char)0xDC00)).ErrorId);
            Assert.False(document.IsModified);
        }

        private static VmwareConfigDocument Parse(string text) => VmwareConfigDocument.Parse(text, false, Source);

        private static byte[] Bytes(string text, bool withBom) =>
            (withBom ? new byte[] { 0xEF, 0xBB, 0xBF } : Array.Empty<byte>()).Concat(new UTF8Encoding(false).GetBytes(text)).ToArray();
    }
}
