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

            byte[] file = encryption.SealManifest("20261205T120000000Z-0001", Encoding.UTF8.GetBytes(json));

            string text = new UTF8Encoding(false, true).GetString(file);
            JsonObject envelope = JsonText.ParseObject(text);
            Assert.Equal(text, JsonText.Serialize(envelope, indented: true));
            Assert.Equal(Convert.ToBase64String(Convert.FromBase64String(envelope.GetString("sealed"))), envelope.GetString("sealed"));
            Assert.Equal(json, encryption.OpenManifest("point.json", "20261205T120000000Z-0001", new ArraySegment<byte>(file)));
        }

        [Fact]
        public void EveryLengthDecodesInPlaceAsTheFrameworkDoes()
        {
            var random = new System.Random(20261206);
            for (int length = 0; length < 200; length++)
            {
                var data = new byte[length];
                random.NextBytes(data);
                byte[] text = Encoding.ASCII.GetBytes(Convert.ToBase64String(data));
                foreach (int lead in new[] { 0, 5 })
                {
                    var buffer = new byte[lead + text.Length];
                    Buffer.BlockCopy(text, 0, buffer, lead, text.Length);

                    Assert.True(Base64Ascii.TryDecodeInPlace(buffer, lead, text.Length, lead == 0 ? 0 : 2, out int written));

                    Assert.Equal(data, buffer.AsSpan(lead == 0 ? 0 : 2, written).ToArray());
                }
            }
        }

        [Theory]
        [InlineData("QUJD\nREVG")]
        [InlineData("QUJDREV")]
        [InlineData("QU=DREVG")]
        [InlineData("QUJD-EVG")]
        [InlineData("QR==")]
        [InlineData("QUI=QUJD")]
        [InlineData("QUJ=")]
        public void WhatEncodeNeverWritesIsLeftUnchanged(string text)
        {
            byte[] buffer = Encoding.ASCII.GetBytes(text);
            byte[] before = (byte[])buffer.Clone();

            Assert.False(Base64Ascii.TryDecodeInPlace(buffer, 0, buffer.Length, 0, out int written));

            Assert.Equal(before, buffer);
            Assert.Equal(0, written);
        }

        [Theory]
        [InlineData(false, false)]
        [InlineData(true, false)]
        [InlineData(false, true)]
        public void AnEnvelopeWrittenAnotherWayOpensAsWell(bool sealedFirst, bool lineBreaks)
        {
            RepositoryEncryption encryption = RepositoryEncryption.New(RepositoryKey.Generate(), 512 * 1024, "/repository");
            const string Id = "20261206T010000000Z-0002";
            string json = "{\"id\": \"" + Id + "\"}";
            JsonObject written = JsonText.ParseObject(Encoding.UTF8.GetString(encryption.SealManifest(Id, Encoding.UTF8.GetBytes(json))));
            string sealedText = written.GetString("sealed");
            var envelope = new JsonObject();
            if (sealedFirst)
            {
                envelope["sealed"] = sealedText;
            }

            foreach (string member in new[] { "format", "algorithm", "keyId", "id" })
            {
                envelope[member] = written.GetString(member);
            }

            if (!sealedFirst)
            {
                envelope["sealed"] = lineBreaks ? sealedText.Insert(8, "\r\n") : sealedText;
            }

            byte[] file = Encoding.UTF8.GetBytes(JsonText.Serialize(envelope, indented: false));

            Assert.Equal(json, encryption.OpenManifest("point.json", Id, new ArraySegment<byte>(file)));
        }

        [Fact]
        public void AChangedSealedManifestIsRefusedWhicheverWayItIsRead()
        {
            RepositoryEncryption encryption = RepositoryEncryption.New(RepositoryKey.Generate(), 512 * 1024, "/repository");
            const string Id = "20261206T010000000Z-0003";
            byte[] file = encryption.SealManifest(Id, Encoding.UTF8.GetBytes("{\"id\": \"" + Id + "\"}"));
            int last = Array.LastIndexOf(file, (byte)'"') - 1;
            file[last] = (byte)(file[last] == (byte)'A' ? 'B' : 'A');

            var refused = Assert.Throws<VmQuiesceException>(() => encryption.OpenManifest("point.json", Id, new ArraySegment<byte>(file)));

            Assert.Equal("RestorePointNotAuthentic", refused.ErrorId);
        }
    }
}
