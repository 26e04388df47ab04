using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Tests.Qemu;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>VmQuiesce's NBD server against the real clients: QEMU's (qemu-img, qemu-io) and libnbd's (nbdinfo, nbdcopy).</summary>
    public sealed class NbdServerToolTests
    {
        /// <summary>16 MiB: data, a long hole, zero blocks, scattered holes in data, zeroes among data.</summary>
        internal static MemoryExportBackend LayeredImage() => MemoryExportBackend.Create(4096, KindOf);

        internal static NbdExtentKind KindOf(int block) => block switch
        {
            < 16 => NbdExtentKind.Data,
            < 256 => NbdExtentKind.Hole,
            < 272 => NbdExtentKind.Zero,
            < 1024 => block % 9 == 0 ? NbdExtentKind.Hole : NbdExtentKind.Data,
            < 2048 => NbdExtentKind.Hole,
            _ => block % 3 == 0 ? NbdExtentKind.Zero : NbdExtentKind.Data,
        };

        /// <summary>The layout as (offset, length, base:allocation flags), merged as a server should merge it.</summary>
        internal static List<(long Offset, long Length, uint Flags)> ExpectedMap(MemoryExportBackend image)
        {
            var map = new List<(long Offset, long Length, uint Flags)>();
            for (int block = 0; block * (long)MemoryExportBackend.BlockSize < image.Size; block++)
            {
                uint flags = KindOf(block) switch
                {
                    NbdExtentKind.Hole => NbdExtentFlags.Hole | NbdExtentFlags.Zero,
                    NbdExtentKind.Zero => NbdExtentFlags.Zero,
                    _ => 0u,
                };
                long offset = (long)block * MemoryExportBackend.BlockSize;
                long length = Math.Min(MemoryExportBackend.BlockSize, image.Size - offset);
                if (map.Count > 0 && map[^1].Flags == flags)
                {
                    map[^1] = (map[^1].Offset, map[^1].Length + length, flags);
                }
                else
                {
                    map.Add((offset, length, flags));
                }
            }

            return map;
        }

        internal static long DataBytes(MemoryExportBackend image) =>
            Enumerable.Range(0, (int)(image.Size / MemoryExportBackend.BlockSize)).Count(b => KindOf(b) == NbdExtentKind.Data) * (long)MemoryExportBackend.BlockSize;

        [NbdToolFact("nbdinfo")]
        public void NbdinfoSeesAReadOnlyExportWithBlockSizesAndItsHolesAndZeroes()
        {
            MemoryExportBackend image = LayeredImage();
            using var served = new ServedExport(image);

            using JsonDocument info = JsonDocument.Parse(NbdTools.Run("nbdinfo", "--json", "--no-content", served.Uri));
            JsonElement export = info.RootElement.GetProperty("exports")[0];
            Assert.Equal("disk", export.GetProperty("export-name").GetString());
            Assert.Equal(image.Size, export.GetProperty("export-size").GetInt64());
            Assert.True(export.GetProperty("is_read_only").GetBoolean());
            Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
            Assert.Equal(1, export.GetProperty("block_size_minimum").GetInt64());
            Assert.Equal(32 * 1024 * 1024, export.GetProperty("block_size_maximum").GetInt64());
            Assert.Contains("base:allocation", export.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
            Assert.Equal("newstyle-fixed", info.RootElement.GetProperty("protocol").GetString());

            using JsonDocument map = JsonDocument.Parse(NbdTools.Run("nbdinfo", "--map", "--json", served.Uri));
            var reported = map.RootElement.EnumerateArray()
                .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), (uint)e.GetProperty("type").GetInt32()))
                .ToList();
            Assert.Equal(ExpectedMap(image), reported);
            Assert.Equal(0, image.BytesRead);
            Assert.Empty(served.Errors);
        }

        [NbdToolFact("nbdinfo", "qemu-img")]
        public void TheUriReachesExportNamesAndSocketPathsThatNeedEscapingAndTheDescriptionArrives()
        {
            using var folder = new TempFolder();
            string socketFolder = Path.Combine(folder.Path, "a b%c");
            Directory.CreateDirectory(socketFolder);
            const string name = "web 01/disk #1?x=%";
            MemoryExportBackend image = LayeredImage();
            using NbdServer server = NbdServer.Start(NbdEndpoint.UnixSocket(Path.Combine(socketFolder, "n.sock")), new[] { new NbdExport(name, image, "web01, 2026-11-24 23:06") });
            string uri = server.GetUri(name);

            using JsonDocument info = JsonDocument.Parse(NbdTools.Run("nbdinfo", "--json", "--no-content", uri));
            Assert.Equal(name, info.RootElement.GetProperty("exports")[0].GetProperty("export-name").GetString());
            Assert.Equal("web01, 2026-11-24 23:06", info.RootElement.GetProperty("exports")[0].GetProperty("description").GetString());
            using JsonDocument qemu = JsonDocument.Parse(NbdTools.Run("qemu-img", "info", "--output=json", "-f", "raw", uri));
            Assert.Equal(image.Size, qemu.RootElement.GetProperty("virtual-size").GetInt64());
        }

        [NbdToolFact("qemu-img")]
        public void QemuImgConvertsAndComparesByteForByteReadingOnlyTheData()
        {
            MemoryExportBackend image = LayeredImage();
            using var served = new ServedExport(image);
            using var folder = new TempFolder();
            string copy = folder.File("copy.raw");

            NbdTools.Run("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Uri, copy);

            AssertBytes.Equal(image.Data, File.ReadAllBytes(copy));
            Assert.Equal(DataBytes(image), image.BytesRead); // holes and zero blocks never read (the backend throws if they are)

            string reference = folder.File("reference.raw");
            image.WriteRawFile(reference);
            HostCommandResultAssert.ExitCode(0, NbdTools.TryRun("qemu-img", "compare", "-f", "raw", "-F", "raw", reference, served.Uri));
            byte[] changed = (byte[])image.Data.Clone();
            changed[5 * 1024 * 1024] ^= 0x5A;
            File.WriteAllBytes(reference, changed);
            HostCommandResultAssert.ExitCode(1, NbdTools.TryRun("qemu-img", "compare", "-f", "raw", "-F", "raw", reference, served.Uri));
            Assert.Empty(served.Errors);
        }

        [NbdToolFact("nbdcopy")]
        public void NbdcopyCopiesOverSeveralConnectionsWithManyRequestsInFlight()
        {
            MemoryExportBackend image = LayeredImage();
            using var served = new ServedExport(image);
            using var folder = new TempFolder();
            string copy = folder.File("copy.raw");

            NbdTools.Run("nbdcopy", "--connections=4", "--requests=16", "--request-size=65536", served.Uri, copy);

            AssertBytes.Equal(image.Data, File.ReadAllBytes(copy));
            Assert.Empty(served.Errors);
        }

        [NbdToolFact("qemu-io")]
        public void QemuIoReadsThroughUnfragmentedAndFragmentedReplies()
        {
            MemoryExportBackend image = LayeredImage();
            using var served = new ServedExport(image);

            // A read across data, holes and zeroes; qemu-io checks the pattern of a zero region with -P 0.
            string output = NbdTools.Run("qemu-io", "-r", "-f", "raw", "-c", "read -P 0 1M 64k", "-c", "read -v 60k 8k", served.Uri);

            Assert.Contains("read 65536/65536 bytes at offset 1048576", output, StringComparison.Ordinal);
            Assert.Contains("read 8192/8192 bytes at offset 61440", output, StringComparison.Ordinal);
            Assert.DoesNotContain("Pattern verification failed", output, StringComparison.Ordinal);
        }

        [NbdToolFact("qemu-img", "nbdcopy")]
        public async Task ADamagedChunkIsAnIoErrorOnItsRangeForEveryClientNeverWrongData()
        {
            MemoryExportBackend image = LayeredImage();
            image.DamagedBlocks.Add(300);
            using var served = new ServedExport(image);
            using var folder = new TempFolder();

            HostCommandResult convert = NbdTools.TryRun("qemu-img", "convert", "-f", "raw", "-O", "raw", served.Uri, folder.File("copy.raw"));
            Assert.NotEqual(0, convert.ExitCode);
            Assert.Contains("Input/output error", convert.StandardError, StringComparison.Ordinal);
            HostCommandResult copy = NbdTools.TryRun("nbdcopy", served.Uri, folder.File("copy2.raw"));
            Assert.NotEqual(0, copy.ExitCode);

            using NbdClient client = await served.ConnectAsync();
            var buffer = new byte[256 * 1024];
            NbdRequestException failure = await Assert.ThrowsAsync<NbdRequestException>(() => client.ReadAsync(1024 * 1024, buffer, 0, buffer.Length));
            Assert.Equal("NbdRequestFailed", failure.ErrorId);
            Assert.Equal(5u, failure.ErrorCode);
            Assert.InRange(failure.ErrorOffset!.Value, 1024 * 1024, (301 * 4096) - 1);
            Assert.Contains("damaged", failure.Message, StringComparison.Ordinal);

            // The connection stays usable, and the undamaged data around it reads fine.
            await client.ReadAsync(0, buffer, 0, 65536);
            AssertBytes.Equal(image.Data.AsSpan(0, 65536), buffer.AsSpan(0, 65536));
            Assert.Contains(served.Errors, e => e.Message.Contains("block 300", StringComparison.Ordinal));
        }
    }

    internal static class HostCommandResultAssert
    {
        public static void ExitCode(int expected, HostCommandResult result) =>
            Assert.True(result.ExitCode == expected, $"exit code {result.ExitCode}, expected {expected}: {result.StandardError} {result.StandardOutput}");
    }
}
