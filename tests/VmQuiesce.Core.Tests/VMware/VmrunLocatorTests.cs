using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Sources.VMware;
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

        private static VmrunLocator Windows(string path, params string[] existing) =>
            new VmrunLocator(true, (key, view) => Registry.TryGetValue((key, view), out string? folder) ? folder : null, path, existing.Contains);

        [Fact]
        public void Windows_looks_in_the_registry_by_product_then_view_then_PATH()
        {
            var places = Windows("tools" + Path.PathSeparator + "bin").Candidates().Select(c => c.Path).ToList();

            Assert.Equal(new[]
            {
                Path.Combine(@"C:\Program Files (x86)\VMware\VMware Player\", "vmrun.exe"),
                Path.Combine(@"C:\Program Files\VMware\VMware VIX", "vmrun.exe"),
                Path.Combine("tools", "vmrun.exe"),
                Path.Combine("bin", "vmrun.exe"),
            }, places);
        }

        [Fact]
        public void The_first_existing_candidate_wins()
        {
            string vix = Path.Combine(@"C:\Program Files\VMware\VMware VIX", "vmrun.exe");
            string onPath = Path.Combine("tools", "vmrun.exe");

            Assert.Equal(vix, Windows("tools", vix, onPath).Locate(null));
        }

        [Fact]
        public void Unix_looks_on_PATH_then_the_usual_Linux_and_macOS_locations()
        {
            var locator = new VmrunLocator(false, (_, _) => throw new InvalidOperationException("no registry here"), "/opt/bin", _ => false);

            var places = locator.Candidates().Select(c => c.Path).ToList();

            Assert.Equal(Path.Combine("/opt/bin", "vmrun"), places[0]);
            Assert.Contains("/usr/bin/vmrun", places);
            Assert.Contains("/Applications/VMware Fusion.app/Contents/Library/vmrun", places);
        }

        [Fact]
        public void Nothing_found_lists_every_place_looked_at()
        {
            var error = Assert.Throws<VmQuiesceException>(() => new VmrunLocator(false, (_, _) => null, "/opt/bin", _ => false).Locate(null));

            Assert.Equal("VmrunNotFound", error.ErrorId);
            Assert.Equal(FailureKind.ObjectNotFound, error.Kind);
            Assert.Contains(Path.Combine("/opt/bin", "vmrun") + " (PATH)", error.Message, StringComparison.Ordinal);
            Assert.Contains("/usr/bin/vmrun (usual location)", error.Message, StringComparison.Ordinal);
            Assert.Contains("-VmrunPath", error.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void An_explicit_path_overrides_everything_and_must_exist()
        {
            string explicitPath = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "my-vmrun"));
            var locator = new VmrunLocator(false, (_, _) => null, "/opt/bin", p => p == explicitPath || p == Path.Combine("/opt/bin", "vmrun"));

            Assert.Equal(explicitPath, locator.Locate(explicitPath));
            Assert.Equal("VmrunNotFound", Assert.Throws<VmQuiesceException>(() => locator.Locate(explicitPath + "-missing")).ErrorId);
        }
    }
}
