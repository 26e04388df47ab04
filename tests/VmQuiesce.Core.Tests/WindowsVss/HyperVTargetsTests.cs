using System;
using System.Collections.Generic;
using System.Linq;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.WindowsVss;
using Xunit;

namespace VmQuiesce.Core.Tests.WindowsVss
{
    public class HyperVTargetsTests
    {
        private const string WebId = "5f2c3a10-0000-0000-0000-000000000000";
        private const string DbId = "6a7b8c9d-0000-0000-0000-000000000000";
        private const string Root = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V";

        private static Dictionary<string, object?> Bag(params (string Name, object? Value)[] properties) =>
            properties.ToDictionary(p => p.Name, p => p.Value, StringComparer.OrdinalIgnoreCase);

        private static readonly List<IReadOnlyDictionary<string, object?>> Systems = new List<IReadOnlyDictionary<string, object?>>
        {
            Bag(("Name", "HOST01"), ("ElementName", "HOST01"), ("EnabledState", (ushort)2)),
            Bag(("Name", WebId.ToUpperInvariant()), ("ElementName", "web"), ("EnabledState", (ushort)2)),
            Bag(("Name", DbId), ("ElementName", "db"), ("EnabledState", (ushort)3)),
        };

        private static readonly List<IReadOnlyDictionary<string, object?>> Settings = new List<IReadOnlyDictionary<string, object?>>
        {
            Bag(("VirtualSystemIdentifier", WebId), ("VirtualSystemType", "Microsoft:Hyper-V:System:Realized"),
                ("ConfigurationDataRoot", Root), ("ConfigurationFile", $"Virtual Machines\\{WebId.ToUpperInvariant()}.vmcx")),
            Bag(("VirtualSystemIdentifier", DbId), ("VirtualSystemType", "Microsoft:Hyper-V:System:Realized"),
                ("ConfigurationDataRoot", "E:\\VMs\\db"), ("ConfigurationFile", $"E:\\VMs\\db\\Virtual Machines\\{DbId}.vmcx")),
        };

        private static readonly List<IReadOnlyDictionary<string, object?>> Storage = new List<IReadOnlyDictionary<string, object?>>
        {
            Bag(("InstanceID", $"Microsoft:{WebId.ToUpperInvariant()}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\0\\L"), ("HostResource", new[] { "D:\\Disks\\web.vhdx" })),
            Bag(("InstanceID", $"Microsoft:{WebId}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\1\\L"), ("HostResource", new[] { "D:\\Disks\\web-data.vhdx" })),
            // A checkpoint's settings carry the checkpoint's id: not the running VM's disks.
            Bag(("InstanceID", "Microsoft:0D6E5F4A-0000-0000-0000-000000000000\\83F8638B\\0\\0\\L"), ("HostResource", new[] { "D:\\Disks\\web-old.vhdx" })),
            Bag(("InstanceID", $"Microsoft:{DbId}\\83F8638B\\0\\0\\L"), ("HostResource", new[] { "E:\\VMs\\db\\db.vhdx" })),
        };

        private static IReadOnlyList<BackupVm> List(List<IReadOnlyDictionary<string, object?>>? storage, List<VmQuiesceException> failures, params string[] existing) =>
            HyperVTargets.FromWmi(Systems, Settings, storage ?? Storage, existing.Contains, failures.Add);

        [Fact]
        public void EachVmIsATargetWithItsConfigurationStateFilesAndOwnDisksButNotTheHost()
        {
            var failures = new List<VmQuiesceException>();
            string webConfiguration = $"{Root}\\Virtual Machines\\{WebId.ToUpperInvariant()}.vmcx";

            IReadOnlyList<BackupVm> vms = List(null, failures, webConfiguration.Replace(".vmcx", ".vmrs", StringComparison.Ordinal));

            Assert.Empty(failures);
            Assert.Equal(new[] { "web", "db" }, vms.Select(vm => vm.Name));
            BackupVm web = vms[0];
            Assert.Equal(HyperVTargets.SourceKind, web.Kind);
            Assert.Equal(webConfiguration, web.Location);
            Assert.Equal(WebId, web.Details["Id"]);
            Assert.Equal("Running", web.Details["State"]);
            Assert.Equal("D:\\Disks\\web.vhdx; D:\\Disks\\web-data.vhdx", web.Details["Disks"]);
            Assert.Equal("Off", vms[1].Details["State"]);
            Assert.Equal($"E:\\VMs\\db\\Virtual Machines\\{DbId}.vmcx", vms[1].Location);
        }

        [Fact]
        public void TheSourceIsTheHostVssMethodWithTheHyperVWriterChoosingTheComponentByTheVmsId()
        {
            BackupVm web = List(null, new List<VmQuiesceException>())[0];

            var source = Assert.IsType<HostVssSource>(web.OpenSource());

            Assert.Equal("web", source.VmName);
            Assert.Equal(WebId, source.WriterComponentName);
            Assert.Equal(HostVssSource.MethodName, source.Kind);
        }

        [Fact]
        public void AVmOnACheckpointDiskIsAnErrorNamingTheDiskAndTheOthersAreStillListed()
        {
            var failures = new List<VmQuiesceException>();
            var storage = Storage.Select(bag => bag["HostResource"] is string[] paths && paths[0] == "E:\\VMs\\db\\db.vhdx"
                ? (IReadOnlyDictionary<string, object?>)Bag(("InstanceID", bag["InstanceID"]), ("HostResource", new[] { "E:\\VMs\\db\\db_6A7B.avhdx" }))
                : bag).ToList();

            IReadOnlyList<BackupVm> vms = List(storage, failures);

            Assert.Equal(new[] { "web" }, vms.Select(vm => vm.Name));
            VmQuiesceException failure = Assert.Single(failures);
            Assert.Equal("HyperVCheckpointDisk", failure.ErrorId);
            Assert.Contains("'db'", failure.Message, StringComparison.Ordinal);
            Assert.Contains("db_6A7B.avhdx", failure.Message, StringComparison.Ordinal);
            Assert.Contains("Remove-VMSnapshot", failure.Remedy, StringComparison.Ordinal);
        }

        [Fact]
        public void AVmWithoutItsCurrentSettingsIsAnError()
        {
            var failures = new List<VmQuiesceException>();

            IReadOnlyList<BackupVm> vms = HyperVTargets.FromWmi(Systems, Settings.Take(1), Storage, _ => false, failures.Add);

            Assert.Equal(new[] { "web" }, vms.Select(vm => vm.Name));
            Assert.Equal("HyperVConfigurationNotFound", Assert.Single(failures).ErrorId);
        }

        [Fact]
        public void WithHostVssAHyperVVmKeepsItsKindAndTakesTheBackupType()
        {
            BackupVm web = List(null, new List<VmQuiesceException>())[0];

            BackupVm full = HostVssSource.ForVm(web, VssBackupType.Full);

            Assert.Equal(HyperVTargets.SourceKind, full.Kind);
            var source = Assert.IsType<HostVssSource>(full.OpenSource());
            Assert.Equal(WebId, source.WriterComponentName);
        }
    }
}
