using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Config;
using Xunit;

namespace VmQuiesce.Core.Tests.Config
{
    /// <summary>
    /// Hundreds of generated files with random comments, blank lines, spacing, line endings, key case,
    /// duplicates and escaped values: parsing and writing back must be byte-identical, and get, set,
    /// append and remove must agree with an independent model of what the file says.
    /// </summary>
    public class VmwareConfigRandomRoundTripTests
    {
        private const int FileCount = 400;
        private static readonly string[] LineEndings = { "\n", "\r\n", "\r" };
        private static readonly string[] KeyPool =
        {
            "vmwriter.overwriteSnapshots", "memsize", "displayName", "scsi0:0.fileName", "ethernet0.address",
            ".encoding", "uuid.bios", "annotation", "tools.syncTime", "guestinfo.x-y_z",
        };

        private static readonly string Literals =
            "abcxyzABCXYZ0129 .,:;/\\-_+=#'`~!@$%^&*()[]{}<>?\u00e9\u00fc\u00df\u20ac\u4e2d\U0001F600";

        public static IEnumerable<object[]> Seeds() => Enumerable.Range(0, 8).Select(i => new object[] { 20261124 + i });

        [Theory]
        [MemberData(nameof(Seeds))]
        public void GeneratedFilesRoundTripAndBehaveLikeTheModel(int seed)
        {
            var random = new Random(seed);
            for (int file = 0; file < FileCount / 8; file++)
            {
                var (bytes, model) = GenerateFile(random);
                string context = $"seed {seed}, file {file}: {Encoding.UTF8.GetString(bytes)}";

                VmwareConfigDocument document = VmwareConfigDocument.Parse(bytes, "generated.cfg");
                Assert.True(bytes.SequenceEqual(document.ToBytes()), context);
                AssertMatchesModel(document, model, random, context);

                if (model.Count > 0)
                {
                    string key = model.Keys.ElementAt(random.Next(model.Count));
                    string value = RandomValidValue(random);
                    bool differs = !string.Equals(model[key], value, StringComparison.Ordinal);
                    Assert.Equal(differs, document.SetValue(RandomCase(random, key), value));
                    model[key] = value;
                    AssertMatchesModel(Reparse(document), model, random, context);

                    string removed = model.Keys.ElementAt(random.Next(model.Count));
                    Assert.True(document.Remove(RandomCase(random, removed)), context);
                    model.Remove(removed);
                    AssertMatchesModel(Reparse(document), model, random, context);
                }

                byte[] before = document.ToBytes();
                string added = "added." + random.Next(1000000);
                string addedValue = RandomValidValue(random);
                Assert.True(document.SetValue(added, addedValue), context);
                model[added] = addedValue;
                VmwareConfigDocument appended = Reparse(document);
                AssertMatchesModel(appended, model, random, context);
                byte[] after = appended.ToBytes();
                Assert.True(StartsWithAllButMissingNewline(after, before), context);
                Assert.Equal(added, appended.Settings.Last().Name);
            }
        }

        private static VmwareConfigDocument Reparse(VmwareConfigDocument document)
        {
            byte[] bytes = document.ToBytes();
            VmwareConfigDocument copy = VmwareConfigDocument.Parse(bytes, "rewritten.cfg");
            Assert.Equal(bytes, copy.ToBytes());
            return copy;
        }

        private static void AssertMatchesModel(VmwareConfigDocument document, Dictionary<string, string> model, Random random, string context)
        {
            Assert.Equal(model.Count, document.Settings.Count);
            foreach (KeyValuePair<string, string> setting in model)
            {
                Assert.True(string.Equals(setting.Value, document.GetValue(RandomCase(random, setting.Key)), StringComparison.Ordinal), context);
            }
        }

        /// <summary>The earlier bytes are a prefix of the later ones, allowing for a line ending added to a last line that had none.</summary>
        private static bool StartsWithAllButMissingNewline(byte[] after, byte[] before) =>
            after.Length > before.Length && after.Take(before.Length).SequenceEqual(before);

        private static (byte[] Bytes, Dictionary<string, string> Model) GenerateFile(Random random)
        {
            var model = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            var text = new StringBuilder();
            int lines = random.Next(0, 25);
            for (int i = 0; i < lines; i++)
            {
                switch (random.Next(6))
                {
                    case 0:
                        text.Append(Blanks(random));
                        break;
                    case 1:
                        text.Append(Blanks(random)).Append('#').Append(RandomLiteral(random, 0, 30)).Append("\"=|7C");
                        break;
                    default:
                        string key = RandomCase(random, KeyPool[random.Next(KeyPool.Length)]);
                        var (raw, decoded, quoted) = RandomStoredValue(random);
                        text.Append(Blanks(random)).Append(key).Append(Blanks(random)).Append('=').Append(Blanks(random))
                            .Append(quoted ? "\"" + raw + "\"" : raw);
                        if (random.Next(4) == 0)
                        {
                            text.Append(Blanks(random)).Append(" # trailing \"comment\"");
                        }
                        else
                        {
                            text.Append(Blanks(random));
                        }

                        model[key] = decoded;
                        break;
                }

                bool last = i == lines - 1;
                if (!last || random.Next(3) > 0)
                {
                    text.Append(LineEndings[random.Next(LineEndings.Length)]);
                }
            }

            byte[] body = new UTF8Encoding(false).GetBytes(text.ToString());
            byte[] bytes = random.Next(4) == 0 ? new byte[] { 0xEF, 0xBB, 0xBF }.Concat(body).ToArray() : body;
            return (bytes, model);
        }

        /// <summary>A value as a file stores it (escapes and all) and what it means.</summary>
        private static (string Raw, string Decoded, bool Quoted) RandomStoredValue(Random random)
        {
            if (random.Next(8) == 0)
            {
                string token = RandomLiteral(random, 1, 8).Replace(" ", "x").Replace("#", "x");
                return (token, token, false);
            }

            var raw = new StringBuilder();
            var decoded = new StringBuilder();
            int parts = random.Next(0, 6);
            for (int i = 0; i < parts; i++)
            {
                switch (random.Next(4))
                {
                    case 0:
                        // An escaped character, as VMware writes quotes, pipes, line breaks and other bytes.
                        string character = new[] { "\"", "|", "\n", "#", "\u00e9", "\t", "\u20ac", "=" }[random.Next(8)];
                        foreach (byte b in Encoding.UTF8.GetBytes(character))
                        {
                            raw.Append('|').Append(b.ToString(random.Next(2) == 0 ? "X2" : "x2", System.Globalization.CultureInfo.InvariantCulture));
                        }

                        decoded.Append(character);
                        break;
                    case 1:
                        // A pipe that starts no escape stays as it is.
                        raw.Append("|z");
                        decoded.Append("|z");
                        break;
                    default:
                        string literal = RandomLiteral(random, 0, 10);
                        raw.Append(literal);
                        decoded.Append(literal);
                        break;
                }
            }

            return (raw.ToString(), decoded.ToString(), true);
        }

        private static string RandomValidValue(Random random)
        {
            string value = RandomLiteral(random, 0, 12);
            return random.Next(2) == 0 ? value + "|" + value + "|7C" : value;
        }

        private static string RandomLiteral(Random random, int min, int max)
        {
            var builder = new StringBuilder();
            int length = random.Next(min, max + 1);
            while (builder.Length < length)
            {
                int index = random.Next(Literals.Length);
                if (char.IsLowSurrogate(Literals[index]))
                {
                    index--;
                }

                builder.Append(Literals[index]);
                if (char.IsHighSurrogate(Literals[index]))
                {
                    builder.Append(Literals[index + 1]);
                }
            }

            return builder.ToString();
        }

        private static string Blanks(Random random) => new string(Enumerable.Range(0, random.Next(0, 4)).Select(_ => random.Next(3) == 0 ? '\t' : ' ').ToArray());

        private static string RandomCase(Random random, string key) =>
            new string(key.Select(c => random.Next(2) == 0 ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c)).ToArray());
    }
}
