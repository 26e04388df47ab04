using System.IO;
using System.Linq;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    public sealed class FileNameTextTests
    {
        /// <summary>Escaped bytes are lone surrogates, which an attribute cannot carry: the cases are built here.</summary>
        [Fact]
        public void Names_decode_to_text_that_encodes_to_the_same_bytes()
        {
            static string Escaped(params int[] bytes) => new string(bytes.Select(b => (char)(0xDC00 + b)).ToArray());
            foreach ((byte[] bytes, string text) in new[]
            {
                (new byte[] { 0x61, 0xFF }, "a" + Escaped(0xFF)),
                (new byte[] { 0xEF, 0xBF, 0xBD }, "\uFFFD"),
                (new byte[] { 0xED, 0xA0, 0x80 }, Escaped(0xED, 0xA0, 0x80)), // an encoded surrogate is not UTF-8
                (new byte[] { 0xC0, 0xAF }, Escaped(0xC0, 0xAF)), // nor is an overlong '/'
                (new byte[] { 0xF0, 0x9F, 0x98, 0x80, 0xE2, 0x82 }, "\U0001F600" + Escaped(0xE2, 0x82)), // a cut-off sequence
            })
            {
                Assert.Equal(text, FileNameText.Decode(bytes));
                Assert.Equal(bytes, FileNameText.Encode(text));
            }
        }

        [Fact]
        public void Shown_names_escape_bytes_and_characters_that_would_change_the_line()
        {
            Assert.Equal("a\\xFF\\nb\\u{202E}c\\t", FileNameText.Printable("a" + (char)0xDCFF + "\nb\u202Ec\t"));
        }

        [LinuxFact]
        public void A_folder_is_listed_to_its_end_after_a_failed_call()
        {
            using var folder = new VmQuiesce.Core.Tests.Qemu.TempFolder();
            File.WriteAllText(folder.File("a"), "a");
            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, folder.Path, Libc.OpenReadOnly | Libc.OpenDirectory | Libc.OpenCloseOnExec);
            try
            {
                Assert.True(UnixFiles.OpenAt(fd, "missing", Libc.OpenReadOnly) < 0); // errno is ENOENT now

                Assert.Equal(new[] { "a" }, UnixFiles.Names(fd, folder.Path));
            }
            finally
            {
                Libc.close(fd);
            }
        }
    }
}
