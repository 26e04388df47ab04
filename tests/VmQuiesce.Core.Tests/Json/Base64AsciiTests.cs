using System;
using System.Text;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository.Keys;
using Xunit;

namespace VmQuiesce.Core.Tests.Json
{
    public class Base64AsciiTests
    {
        [Fact]
        public void EveryLengthEncodesAsTheFrameworkDoes()
        {
            var random = new System.Random(20261205);
            for (int length = 0; length < 200; length++)
            {
                var data = new byte[length];
                random.NextBytes(data);
                var encoded = new byte[Base64Ascii.EncodedLength(length) + 3];

                int written = Base64Ascii.Encode(data, length, encoded, 3);

                Assert.Equal(Convert.ToBase64String(data), Encoding.ASCII.GetString(encoded, 3, written));
            }
        }

        [Fact]
        public void ADestinationTooShortIsRefusedBeforeAnythingIsWritten()
        {
            var encoded = new byte[7];

            var refused = Assert.Throws<ArgumentException>(() => Base64Ascii.Encode(new byte[6], 6, encoded, 0));

            Assert.Contains("8 are needed", refused.Message, StringComparison.Ordinal);
            Assert.All(encoded, b => Assert.Equal(0, b));
        }

        [Fact]
        public void ASealedManifestIsTheEnvelopeJsonTextWritesAndOpensAsTheJsonSealed()
        {
            RepositoryEncryption encryption = RepositoryEncryption.New(RepositoryKey.Generate(), 512 * 1024, "/repository");
            string json = "{\n  \"id\": \"20261205T120000000Z-0001\",\n  \"note\": \"\\\"quoted\\\" é\"\n}";

            byte[] file = encryption.SealManifest("20261205T120000000Z-0001", json);

            string text = new UTF8Encoding(false, true).GetString(file);
            JsonObject envelope = JsonText.ParseObject(text);
            Assert.Equal(text, JsonText.Serialize(envelope, indented: true));
            Assert.Equal(Convert.ToBase64String(Convert.FromBase64String(envelope.GetString("sealed"))), envelope.GetString("sealed"));
            Assert.Equal(json, encryption.OpenManifest("point.json", "20261205T120000000Z-0001", text));
        }
    }
}
