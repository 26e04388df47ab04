using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Text;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources.VMware;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>A fact that runs the vmrun double (a bash script): skipped, with the reason, where it cannot run.</summary>
    public sealed class VmrunDoubleFactAttribute : FactAttribute
    {
        public VmrunDoubleFactAttribute()
        {
            if (!HostPlatform.IsLinux)
            {
                Skip = $"The vmrun double is a bash 4 script (associative arrays): Windows cannot start it as vmrun.exe and macOS ships bash 3; these tests run on Linux (this is {HostPlatform.Name}).";
            }
        }
    }

    /// <summary>A theory over the vmrun double: Linux only, as <see cref="VmrunDoubleFactAttribute"/>.</summary>
    public sealed class VmrunDoubleTheoryAttribute : TheoryAttribute
    {
        public VmrunDoubleTheoryAttribute()
        {
            Skip = new VmrunDoubleFactAttribute().Skip;
        }
    }

    /// <summary>
    /// The vmrun double (tests/vmrun-double/vmrun) with its own state: each test gets a temp folder holding the
    /// running-VM list, the argv log and its VM folders. Environment variables configure the double per process,
    /// so tests that use them set them through <see cref="Environment"/> and run in this collection one at a time.
    /// </summary>
    internal sealed class VmrunDouble : IDisposable
    {
        private static readonly string[] Variables =
        {
            "VMRUN_DOUBLE_STATE", "VMRUN_DOUBLE_ARGV_LOG", "VMRUN_DOUBLE_DATASTORES", "VMRUN_DOUBLE_PASSWORD",
            "VMRUN_DOUBLE_FAIL_COMMAND", "VMRUN_DOUBLE_FAIL_TEXT", "VMRUN_DOUBLE_FAIL_EXIT", "VMRUN_DOUBLE_HANG_COMMAND",
            "VMQUIESCE_TOOL_VMRUN",
        };

        public VmrunDouble()
        {
            Root = Path.Combine(Path.GetTempPath(), "vmquiesce-vmware-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Root);
            foreach (string variable in Variables)
            {
                System.Environment.SetEnvironmentVariable(variable, null);
            }

            Set("VMRUN_DOUBLE_STATE", Path.Combine(Root, "running"));
            Set("VMRUN_DOUBLE_ARGV_LOG", ArgvLog);
            // This host's vmrun, as an administrator names one outside the usual places: restore points recorded it.
            Set("VMQUIESCE_TOOL_VMRUN", ScriptPath);
        }

        public static string ScriptPath
        {
            get
            {
                for (DirectoryInfo? folder = new DirectoryInfo(AppContext.BaseDirectory); folder != null; folder = folder.Parent)
                {
                    string candidate = Path.Combine(folder.FullName, "tests", "vmrun-double", "vmrun");
                    if (File.Exists(candidate))
                    {
                        return candidate;
                    }
                }

                throw new InvalidOperationException("tests/vmrun-double/vmrun not found above " + AppContext.BaseDirectory);
            }
        }

        public string Root { get; }

        public string ArgvLog => Path.Combine(Root, "argv.log");

        public void Set(string variable, string? value) => System.Environment.SetEnvironmentVariable(variable, value);

        public VmrunClient Client(VmwareHostType type = VmwareHostType.Workstation, string? host = null, NetworkCredential? credential = null,
            TimeSpan? timeout = null, List<string>? verbose = null, List<string>? warnings = null) =>
            new VmrunClient(
                new VmrunConnection(ScriptPath, type, host, credential) { CommandTimeout = timeout ?? TimeSpan.FromMinutes(2) },
                verbose == null ? null : verbose.Add,
                warnings == null ? null : warnings.Add);

        /// <summary>The arguments of every call so far, as the double received them.</summary>
        public IReadOnlyList<IReadOnlyList<string>> Calls()
        {
            if (!File.Exists(ArgvLog))
            {
                return Array.Empty<IReadOnlyList<string>>();
            }

            var calls = new List<IReadOnlyList<string>>();
            foreach (string line in File.ReadAllLines(ArgvLog))
            {
                if (line == "--call--")
                {
                    calls.Add(new List<string>());
                }
                else
                {
                    ((List<string>)calls[^1]).Add(line);
                }
            }

            return calls;
        }

        /// <summary>
        /// A VM folder: vm.vmx with two disks (scsi0:0 system.vmdk, scsi0:1 data.vmdk), an nvram, a .vmxf,
        /// and VMware's logs; disk content is plain text so tests can compare it.
        /// </summary>
        public TestVm CreateVm(string name = "vm", string? under = null)
        {
            string folder = Path.Combine(under ?? Root, name);
            Directory.CreateDirectory(folder);
            string vmx = Path.Combine(folder, name + ".vmx");
            File.WriteAllText(vmx, string.Join("\n",
                ".encoding = \"UTF-8\"",
                "config.version = \"8\"",
                "displayName = \"" + name + "\"",
                "scsi0.present = \"TRUE\"",
                "scsi0:0.present = \"TRUE\"",
                "scsi0:0.fileName = \"system.vmdk\"",
                "scsi0:1.present = \"TRUE\"",
                "scsi0:1.fileName = \"data.vmdk\"",
                "ide1:0.present = \"TRUE\"",
                "ide1:0.fileName = \"installer.iso\"",
                "ide1:0.deviceType = \"cdrom-image\"",
                "nvram = \"" + name + ".nvram\"",
                string.Empty));
            File.WriteAllText(Path.Combine(folder, "system.vmdk"), "system-base;");
            File.WriteAllText(Path.Combine(folder, "data.vmdk"), "data-base;");
            File.WriteAllText(Path.Combine(folder, name + ".nvram"), "nvram-1");
            File.WriteAllText(Path.Combine(folder, name + ".vmxf"), "<Foundry/>");
            File.WriteAllText(Path.Combine(folder, "vmware.log"), "log");
            File.WriteAllText(Path.Combine(folder, "vmware-1.log"), "older log");
            return new TestVm(vmx);
        }

        public void Dispose()
        {
            foreach (string variable in Variables)
            {
                System.Environment.SetEnvironmentVariable(variable, null);
            }

            try
            {
                Directory.Delete(Root, true);
            }
            catch (IOException)
            {
                // A killed child may still be closing a file: the temp folder is cleaned by the OS eventually.
            }
        }
    }

    /// <summary>A VM folder made by <see cref="VmrunDouble.CreateVm"/>, and a guest that writes to its disks.</summary>
    internal sealed class TestVm
    {
        public TestVm(string vmxPath)
        {
            VmxPath = vmxPath;
        }

        public string VmxPath { get; }

        public string Folder => Path.GetDirectoryName(VmxPath)!;

        public string File(string name) => Path.Combine(Folder, name);

        /// <summary>The disk files the .vmx points at now (where the guest's writes land).</summary>
        public IReadOnlyList<string> CurrentDisks() =>
            System.IO.File.ReadAllLines(VmxPath)
                .Where(l => l.StartsWith("scsi0:", StringComparison.Ordinal) && l.Contains(".fileName", StringComparison.Ordinal))
                .Select(l => l.Split('"')[1])
                .ToList();

        /// <summary>What the guest does while it runs: appends to every disk the VM writes now, and VMware touches the nvram.</summary>
        public void GuestWrites(string text)
        {
            foreach (string disk in CurrentDisks())
            {
                System.IO.File.AppendAllText(File(disk), text);
            }

            System.IO.File.AppendAllText(File(Path.GetFileNameWithoutExtension(VmxPath) + ".nvram"), "+" + text);
        }

        /// <summary>The disk's content as the guest sees it: the chain from the base disk to the delta in use.</summary>
        public string DiskContent(string baseName)
        {
            string stem = Path.GetFileNameWithoutExtension(baseName);
            var chain = Directory.GetFiles(Folder, stem + "*.vmdk").Select(Path.GetFileName).OrderBy(n => n!.Length).ThenBy(n => n, StringComparer.Ordinal);
            var content = new StringBuilder();
            foreach (string? file in chain)
            {
                content.Append(System.IO.File.ReadAllText(File(file!)));
            }

            return content.ToString();
        }
    }
}
