using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    public sealed class VmrunLocatorTests
    {
        private static readonly Dictionary<(string, string), string> Registry = new()
        {
            [(@"SOFTWARE\VMware, Inc.\VMware Player", "32-bit")] = @"C:\Program Files (x86)\VMware\VMware Player\",
            [(@"SOFTWARE\VMware, Inc.\VMware VIX", "64-bit")] = @"C:\Program Files\VMware\VMware VIX",
        };

        private static VmrunLocator Windows(params string[] existing) =>
            new VmrunLocator(true, (key, view) => key.EndsWith("Workstation", StringComparison.Ordinal) ? "relative\\VMware" : Registry.TryGetValue((key, view), out string? folder) ? folder : null, existing.Contains);

        [Fact]
        public void Windows_looks_in_the_registry_by_product_then_view_and_never_on_PATH_or_a_relative_folder()
        {
            var places = Windows().Candidates().Select(c => c.Path).ToList();

            Assert.Equal(new[]
            {
                Path.Combine(@"C:\Program Files (x86)\VMware\VMware Player\", "vmrun.exe"),
                Path.Combine(@"C:\Program Files\VMware\VMware VIX", "vmrun.exe"),
            }, places);
        }

        [Fact]
        public void The_first_existing_candidate_wins()
        {
            string player = Path.Combine(@"C:\Program Files (x86)\VMware\VMware Player\", "vmrun.exe");
            string vix = Path.Combine(@"C:\Program Files\VMware\VMware VIX", "vmrun.exe");

            Assert.Equal(vix, Windows(vix).Locate(null));
            Assert.Equal(player, Windows(vix, player).Locate(null));
        }

        [Fact]
        public void Unix_looks_in_the_usual_Linux_and_macOS_locations_only()
        {
            var locator = new VmrunLocator(false, (_, _) => throw new InvalidOperationException("no registry here"), _ => false);

            var places = locator.Candidates().Select(c => c.Path).ToList();

            Assert.Equal("/usr/bin/vmrun", places[0]);
            Assert.Contains("/Applications/VMware Fusion.app/Contents/Library/vmrun", places);
        }

        [Fact]
        public void Nothing_found_lists_every_place_looked_at()
        {
            var error = Assert.Throws<VmQuiesceException>(() => new VmrunLocator(false, (_, _) => null, _ => false).Locate(null));

            Assert.Equal("VmrunNotFound", error.ErrorId);
            Assert.Equal(FailureKind.ObjectNotFound, error.Kind);
            Assert.DoesNotContain("PATH", error.Message, StringComparison.Ordinal);
            Assert.Contains("/usr/bin/vmrun (usual location)", error.Message, StringComparison.Ordinal);
            Assert.Contains("-VmrunPath", error.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void An_explicit_path_overrides_everything_and_must_exist()
        {
            string explicitPath = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "my-vmrun"));
            var locator = new VmrunLocator(false, (_, _) => null, p => p == explicitPath || p == "/usr/bin/vmrun");

            Assert.Equal(explicitPath, locator.Locate(explicitPath));
            Assert.Equal("VmrunNotFound", Assert.Throws<VmQuiesceException>(() => locator.Locate(explicitPath + "-missing")).ErrorId);
        }

        [Fact]
        public void VMQUIESCE_TOOL_VMRUN_is_looked_at_first_and_must_be_absolute()
        {
            var configured = new VmrunLocator(false, (_, _) => null, p => p == "/opt/vmware/vmrun" || p == "/usr/bin/vmrun", name => name == "VMQUIESCE_TOOL_VMRUN" ? "/opt/vmware/vmrun" : null);
            var relative = new VmrunLocator(false, (_, _) => null, _ => true, name => name == "VMQUIESCE_TOOL_VMRUN" ? "bin/vmrun" : null);

            Assert.Equal("/opt/vmware/vmrun", configured.Locate(null));
            VmQuiesceException error = Assert.Throws<VmQuiesceException>(() => relative.Locate(null));
            Assert.Equal("VmrunPathInvalid", error.ErrorId);
            Assert.Contains("VMQUIESCE_TOOL_VMRUN", error.Message, StringComparison.Ordinal);
        }

        [Fact]
        public void A_recorded_vmrun_is_chosen_only_among_this_hosts_places()
        {
            var locator = new VmrunLocator(false, (_, _) => null, p => p == "/usr/bin/vmrun" || p == "/usr/local/bin/vmrun" || p == "/home/eve/vmrun");

            Assert.Equal("/usr/local/bin/vmrun", locator.LocateRecorded("/usr/local/bin/vmrun"));
            Assert.Equal("/usr/bin/vmrun", locator.LocateRecorded("/home/eve/vmrun"));
            Assert.Equal("/usr/bin/vmrun", locator.LocateRecorded("/Applications/VMware Fusion.app/Contents/Library/vmrun"));
            Assert.Equal("/usr/bin/vmrun", locator.LocateRecorded(null));
            Assert.Equal("VmrunNotFound", Assert.Throws<VmQuiesceException>(() => new VmrunLocator(false, (_, _) => null, p => p == "/home/eve/vmrun").LocateRecorded("/home/eve/vmrun")).ErrorId);
        }

        /// <summary>
        /// As on Windows (tags in memory, on a real file): a vmrun.exe that CompactOS compressed (WOF) or that deduplication
        /// optimised is a reparse point that keeps its name, and is run; a symbolic link or junction is still refused.
        /// </summary>
        [Theory]
        [InlineData(0x80000017u, true)] // IO_REPARSE_TAG_WOF
        [InlineData(0x80000013u, true)] // IO_REPARSE_TAG_DEDUP
        [InlineData(0xA000000Cu, false)] // IO_REPARSE_TAG_SYMLINK
        [InlineData(0xA0000003u, false)] // IO_REPARSE_TAG_MOUNT_POINT
        public void A_named_vmrun_is_refused_only_when_its_reparse_point_redirects_the_name(uint tag, bool runs)
        {
            string vmrun = Path.Combine(Path.GetTempPath(), "vmq-vmrun-" + Guid.NewGuid().ToString("N"));
            File.WriteAllText(vmrun, "vmrun");
            try
            {
                var tags = new FolderHandlesInMemory();
                tags.ReparsePoint(vmrun, tag);

                if (runs)
                {
                    Assert.Equal(vmrun, VmrunLocator.CheckProgram(vmrun, tags));
                }
                else
                {
                    Assert.Equal("VmrunPathInvalid", Assert.Throws<VmQuiesceException>(() => VmrunLocator.CheckProgram(vmrun, tags)).ErrorId);
                }
            }
            finally
            {
                File.Delete(vmrun);
            }
        }

        /// <summary>Runs in the GitHub Actions Windows job: a program compressed as CompactOS compresses Program Files (a real WOF reparse point) is run.</summary>
        [WindowsFact]
        public void On_Windows_a_vmrun_compressed_by_CompactOS_is_run()
        {
            string vmrun = Path.Combine(Path.GetTempPath(), "vmq-vmrun-" + Guid.NewGuid().ToString("N") + ".exe");
            File.WriteAllText(vmrun, string.Concat(Enumerable.Repeat("not really vmrun, but compressible\n", 20_000)));
            try
            {
                RegularFileByHandleTests.CompressWithTheOverlayFilter(vmrun);

                Assert.Equal(vmrun, VmrunLocator.CheckProgram(vmrun));
            }
            finally
            {
                File.Delete(vmrun);
            }
        }
    }
}
