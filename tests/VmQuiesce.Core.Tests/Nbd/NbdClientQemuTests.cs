using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Sources.Qemu;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>
    /// VmQuiesce's NBD client against QEMU's own NBD servers (qemu-nbd, and qemu-storage-daemon driven over
    /// QMP the way a backup of a running VM drives QEMU), on qcow2 images with data, holes, zeroes and a
    /// dirty bitmap written through QEMU so the bitmap records.
    /// </summary>
    public sealed class NbdClientQemuTests
    {
        private const string Bitmap = "qemu:dirty-bitmap:b1";
        private const long Size = 16 * 1024 * 1024;
        private const int Granularity = 64 * 1024;

        [NbdToolFact("qemu-img", "qemu-io", "qemu-nbd")]
        public async Task ReadsBlockStatusDirtyExtentsAndDataFromQemuNbd()
        {
            using var folder = new TempFolder();
            string disk = folder.File("disk.qcow2");
            NbdTools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", disk, "16M");
            NbdTools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 4M 192k", "-c", "write -z 8M 128k", "-c", "write -P 0x55 10M 64k", disk);
            NbdTools.Run("qemu-img", "bitmap", "--add", "-g", "65536", "-f", "qcow2", disk, "b1");
            // Written after the bitmap: an overwrite inside older data, new data, and zeroes over older data.
            NbdTools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 4160k 64k", "-c", "write -P 0x44 12M 32k", "-c", "write -z 10M 64k", disk);
            string socket = folder.File("nbd.sock");
            using var daemon = NbdDaemon.Start("qemu-nbd", folder.File("pid"), "--fork", "--pid-file", folder.File("pid"), "--persistent", "--shared=4",
                "--read-only", "--socket", socket, "--format", "qcow2", "--export-name", "disk", "--bitmap", "b1", disk);
            NbdEndpoint endpoint = NbdEndpoint.UnixSocket(socket);

            IReadOnlyList<string> offered = NbdClient.ListMetaContexts(endpoint, "disk");
            Assert.Contains("base:allocation", offered);
            Assert.Contains(Bitmap, offered);

            var options = new NbdClientOptions { ExportName = "disk" };
            options.MetaContexts.Add("base:allocation");
            options.MetaContexts.Add(Bitmap);
            using NbdClient client = NbdClient.Connect(endpoint, options);
            Assert.Equal(Size, client.Size);
            Assert.True(client.IsReadOnly);
            Assert.True(client.StructuredReplies);

            Dictionary<string, List<NbdExtent>> status = await ReadWholeStatusAsync(client);
            Assert.Equal(QemuImgMap(disk), status["base:allocation"]);
            Assert.Equal(DirtyExtents(Size, 4160 * 1024, 10 * 1024 * 1024, 12 * 1024 * 1024), status[Bitmap]);

            // Every byte, in one call that goes out as pipelined requests, against QEMU's own raw conversion.
            string raw = folder.File("disk.raw");
            NbdTools.Run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw);
            var image = new byte[Size];
            await client.ReadAsync(0, image, 0, image.Length);
            AssertBytes.Equal(File.ReadAllBytes(raw), image);

            // What a changed-block reader reads: dirty and not known to be zero.
            List<(long Offset, long Length)> toRead = DirtyAndNotZero(status);
            Assert.Equal(new[] { (4160L * 1024, 64L * 1024), (12L * 1024 * 1024, 32L * 1024) }, toRead); // the rest of that cluster reads as zero
            foreach ((long offset, long length) in toRead)
            {
                var piece = new byte[length];
                await client.ReadAsync(offset, piece, 0, piece.Length);
                AssertBytes.Equal(image.AsSpan((int)offset, (int)length), piece);
            }
        }

        [NbdToolFact("qemu-img", "qemu-io", "qemu-storage-daemon")]
        public async Task ReadsADirtyBitmapExportedOverQmpAsABackupWouldAndNamesWhatIsMissing()
        {
            using var folder = new TempFolder();
            string disk = folder.File("disk.qcow2");
            NbdTools.Run("qemu-img", "create", "-q", "-f", "qcow2", disk, "16M");
            NbdTools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 5M 1M", disk);
            string qmpSocket = folder.File("qmp.sock");
            string nbdSocket = folder.File("nbd.sock");
            using var daemon = NbdDaemon.Start("qemu-storage-daemon", folder.File("pid"), "--daemonize", "--pidfile", folder.File("pid"),
                "--chardev", $"socket,id=monitor,path={qmpSocket},server=on,wait=off", "--monitor", "chardev=monitor",
                "--blockdev", $"driver=file,node-name=file0,filename={disk}", "--blockdev", "driver=qcow2,node-name=disk0,file=file0");
            using QmpClient qmp = QmpClient.Connect(qmpSocket);
            qmp.Execute("block-dirty-bitmap-add", new JsonObject().With("node", "disk0").With("name", "b1").With("granularity", (long)Granularity).With("persistent", true));
            qmp.Execute("nbd-server-start", new JsonObject().With("addr", new JsonObject().With("type", "unix").With("data", new JsonObject().With("path", nbdSocket))));

            // The guest's writes after the checkpoint, through a writable export of the same node.
            qmp.Execute("block-export-add", new JsonObject().With("type", "nbd").With("id", "w").With("node-name", "disk0").With("name", "w").With("writable", true));
            NbdTools.Run("qemu-io", "-f", "raw", "-c", "write -P 0x66 2M 64k", "-c", "write -z 5M 64k", $"nbd+unix:///w?socket={nbdSocket}");
            qmp.Execute("block-export-del", new JsonObject().With("id", "w"));
            qmp.WaitForEvent("BLOCK_EXPORT_DELETED", null, TimeSpan.FromSeconds(30));

            // The point in time: the bitmap stops recording and is exported read-only with the node.
            qmp.Execute("block-dirty-bitmap-disable", new JsonObject().With("node", "disk0").With("name", "b1"));
            qmp.Execute("block-export-add", new JsonObject().With("type", "nbd").With("id", "r").With("node-name", "disk0").With("name", "backup")
                .With("bitmaps", new JsonArray(new object?[] { "b1" })));
            NbdEndpoint endpoint = NbdEndpoint.UnixSocket(nbdSocket);

            var options = new NbdClientOptions { ExportName = "backup" };
            options.MetaContexts.Add("base:allocation");
            options.MetaContexts.Add(Bitmap);
            using (NbdClient client = NbdClient.Connect(endpoint, options))
            {
                Dictionary<string, List<NbdExtent>> status = await ReadWholeStatusAsync(client);
                Assert.Equal(DirtyExtents(Size, 2 * 1024 * 1024, 5 * 1024 * 1024), status[Bitmap]);
                Assert.Equal(new[] { (2L * 1024 * 1024, (long)Granularity) }, DirtyAndNotZero(status));
                var written = new byte[Granularity];
                await client.ReadAsync(2 * 1024 * 1024, written, 0, written.Length);
                Assert.All(written, b => Assert.Equal(0x66, b));
            }

            var missing = new NbdClientOptions { ExportName = "backup" };
            missing.MetaContexts.Add("qemu:dirty-bitmap:b2");
            VmQuiesceException noBitmap = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(endpoint, missing)));
            Assert.Equal("NbdMetaContextUnavailable", noBitmap.ErrorId);
            Assert.Contains("qemu:dirty-bitmap:b2", noBitmap.Message, StringComparison.Ordinal);

            VmQuiesceException noExport = await Assert.ThrowsAsync<VmQuiesceException>(() => Task.Run(() => NbdClient.Connect(endpoint, new NbdClientOptions { ExportName = "nope" })));
            Assert.Equal("NbdExportNotFound", noExport.ErrorId);
            Assert.Contains("'nope'", noExport.Message, StringComparison.Ordinal);
            Assert.Contains(nbdSocket, noExport.Message, StringComparison.Ordinal);
            qmp.Execute("quit");
        }

        /// <summary>Block status of the whole export, request after request, adjacent extents of equal flags merged.</summary>
        internal static async Task<Dictionary<string, List<NbdExtent>>> ReadWholeStatusAsync(NbdClient client)
        {
            var all = client.MetaContexts.ToDictionary(context => context, _ => new List<NbdExtent>());
            for (long offset = 0; offset < client.Size;)
            {
                NbdBlockStatus status = await client.GetBlockStatusAsync(offset, client.Size - offset);
                Assert.True(status.CoveredLength > 0);
                foreach (string context in status.Contexts)
                {
                    foreach (NbdExtent extent in status[context].Where(e => e.Offset < offset + status.CoveredLength))
                    {
                        Append(all[context], new NbdExtent(extent.Offset, Math.Min(extent.End, offset + status.CoveredLength) - extent.Offset, extent.Flags));
                    }
                }

                offset += status.CoveredLength;
            }

            return all;
        }

        private static void Append(List<NbdExtent> extents, NbdExtent extent)
        {
            if (extents.Count > 0 && extents[^1].Flags == extent.Flags && extents[^1].End == extent.Offset)
            {
                extents[^1] = new NbdExtent(extents[^1].Offset, extents[^1].Length + extent.Length, extent.Flags);
            }
            else
            {
                extents.Add(extent);
            }
        }

        /// <summary>base:allocation as QEMU's own map describes the image: not data is a hole, zero is zero.</summary>
        private static List<NbdExtent> QemuImgMap(string disk)
        {
            using JsonDocument map = JsonDocument.Parse(NbdTools.Run("qemu-img", "map", "--output=json", "-f", "qcow2", disk));
            var extents = new List<NbdExtent>();
            foreach (JsonElement entry in map.RootElement.EnumerateArray())
            {
                uint flags = (entry.GetProperty("data").GetBoolean() ? 0 : NbdExtentFlags.Hole) | (entry.GetProperty("zero").GetBoolean() ? NbdExtentFlags.Zero : 0);
                Append(extents, new NbdExtent(entry.GetProperty("start").GetInt64(), entry.GetProperty("length").GetInt64(), flags));
            }

            return extents;
        }

        private static List<NbdExtent> DirtyExtents(long size, params long[] dirtyGranules)
        {
            var extents = new List<NbdExtent>();
            for (long offset = 0; offset < size; offset += Granularity)
            {
                Append(extents, new NbdExtent(offset, Granularity, dirtyGranules.Contains(offset) ? NbdExtentFlags.Dirty : 0));
            }

            return extents;
        }

        private static List<(long Offset, long Length)> DirtyAndNotZero(Dictionary<string, List<NbdExtent>> status)
        {
            var ranges = new List<(long Offset, long Length)>();
            foreach (NbdExtent dirty in status[Bitmap].Where(e => (e.Flags & NbdExtentFlags.Dirty) != 0))
            {
                foreach (NbdExtent allocation in status["base:allocation"].Where(e => (e.Flags & NbdExtentFlags.Zero) == 0 && e.Offset < dirty.End && dirty.Offset < e.End))
                {
                    long start = Math.Max(dirty.Offset, allocation.Offset);
                    long end = Math.Min(dirty.End, allocation.End);
                    if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == start)
                    {
                        ranges[^1] = (ranges[^1].Offset, end - ranges[^1].Offset);
                    }
                    else
                    {
                        ranges.Add((start, end - start));
                    }
                }
            }

            return ranges;
        }
    }
}
