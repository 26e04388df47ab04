using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// The machine a VM ran as, reduced to what starts it again and nothing of the host: QEMU's machine type, memory,
    /// CPU count and CPU model. A restore point records it (QEMU sources, read from QMP at backup time); instant
    /// restores and boot checks start with it unless the caller says otherwise. Never a path, a device, a kernel or
    /// any free text: the manifest is read back from a repository others may write, so every value is checked on
    /// read against a bounded allowlist, and what passes can only ever be one QEMU option value.
    /// </summary>
    public sealed class VmMachine
    {
        /// <summary>16 TiB: above any VM's memory, below what overflows QEMU's -m.</summary>
        public const int MaxMemoryMiB = 16 * 1024 * 1024;

        /// <summary>QEMU's own limit on x86 (q35 with x2APIC).</summary>
        public const int MaxCpus = 4096;

        /// <summary>A machine type or CPU model name: letters, digits, '.', '_' and '-' (never ',' or '=', which would add QEMU options), not starting with '-'.</summary>
        private static readonly Regex NamePattern = new Regex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z", RegexOptions.CultureInvariant);

        /// <summary>QEMU's versioned machine type ("pc-q35-7.2", "pc-i440fx-7.2"), or null.</summary>
        public string? Type { get; init; }

        public int? MemoryMiB { get; init; }

        public int? Cpus { get; init; }

        /// <summary>QEMU's CPU model ("qemu64", "max", "host", "Skylake-Server-v4"), or null.</summary>
        public string? CpuModel { get; init; }

        /// <summary>
        /// For the machine an instant restore or boot check started: the options taken from the restore point
        /// (MachineType, MemoryMiB, Cpus, CpuModel); the others were given by the caller or QEMU's defaults.
        /// </summary>
        public IReadOnlyList<string> FromRestorePoint { get; init; } = Array.Empty<string>();

        /// <summary>Why <paramref name="value"/> is not a machine type or CPU model name this module passes to QEMU; null when it is.</summary>
        public static string? WhyNotName(string value) =>
            NamePattern.IsMatch(value) ? null : "expected 1-64 letters, digits, '.', '_' or '-', not starting with '-'";

        /// <summary>Why <paramref name="memoryMiB"/> is not a memory size this module starts a VM with; null when it is.</summary>
        public static string? WhyNotMemory(long memoryMiB) =>
            memoryMiB >= 1 && memoryMiB <= MaxMemoryMiB ? null : $"expected 1 to {MaxMemoryMiB} MiB";

        /// <summary>Why <paramref name="cpus"/> is not a CPU count this module starts a VM with; null when it is.</summary>
        public static string? WhyNotCpus(long cpus) =>
            cpus >= 1 && cpus <= MaxCpus ? null : $"expected 1 to {MaxCpus}";

        public override string ToString()
        {
            var parts = new List<string>
            {
                Type ?? "QEMU's default machine",
                MemoryMiB is int memory ? memory.ToString(CultureInfo.InvariantCulture) + " MiB" : "QEMU's default memory",
                Cpus is int cpus ? cpus.ToString(CultureInfo.InvariantCulture) + (cpus == 1 ? " CPU" : " CPUs") : "1 CPU",
                "CPU model " + (CpuModel ?? "QEMU's default"),
            };
            return string.Join(", ", parts) + (FromRestorePoint.Count == 0 ? string.Empty : "; from the restore point: " + string.Join(", ", FromRestorePoint));
        }

        internal JsonObject ToJson() => new JsonObject()
            .With("type", Type)
            .With("memoryMiB", MemoryMiB)
            .With("cpus", Cpus)
            .With("cpuModel", CpuModel);

        /// <summary>
        /// The manifest's "machine" member, every value checked: a value outside the allowlist makes the manifest
        /// invalid (it was not written by VmQuiesce). Members this version does not know are ignored, never used.
        /// </summary>
        internal static VmMachine FromJson(JsonObject json)
        {
            var machine = new VmMachine
            {
                Type = json.GetOptionalString("type"),
                CpuModel = json.GetOptionalString("cpuModel"),
                MemoryMiB = Bounded(json, "memoryMiB"),
                Cpus = Bounded(json, "cpus"),
            };
            if (machine.Refusals().FirstOrDefault() is string why)
            {
                throw new JsonFormatException($"The member 'machine' holds {why}.");
            }

            return machine;
        }

        /// <summary>
        /// This machine with each value outside the allowlist left out (what QEMU answered at backup time, checked
        /// before it is recorded); what was left out is added to <paramref name="dropped"/>.
        /// </summary>
        internal VmMachine Allowed(ICollection<string> dropped)
        {
            foreach (string why in Refusals())
            {
                dropped.Add(why);
            }

            return new VmMachine
            {
                Type = Type != null && WhyNotName(Type) == null ? Type : null,
                CpuModel = CpuModel != null && WhyNotName(CpuModel) == null ? CpuModel : null,
                MemoryMiB = MemoryMiB is int memory && WhyNotMemory(memory) == null ? memory : (int?)null,
                Cpus = Cpus is int cpus && WhyNotCpus(cpus) == null ? cpus : (int?)null,
            };
        }

        /// <summary>Each value outside the allowlist, named with why.</summary>
        private IEnumerable<string> Refusals()
        {
            if (Type != null && WhyNotName(Type) is string whyType)
            {
                yield return $"the machine type {Shown(Type)}: {whyType}";
            }

            if (CpuModel != null && WhyNotName(CpuModel) is string whyModel)
            {
                yield return $"the CPU model {Shown(CpuModel)}: {whyModel}";
            }

            if (MemoryMiB is int memory && WhyNotMemory(memory) is string whyMemory)
            {
                yield return $"the memory size {memory.ToString(CultureInfo.InvariantCulture)} MiB: {whyMemory}";
            }

            if (Cpus is int cpus && WhyNotCpus(cpus) is string whyCpus)
            {
                yield return $"the CPU count {cpus.ToString(CultureInfo.InvariantCulture)}: {whyCpus}";
            }
        }

        /// <summary>A number member as an int, or 0 (refused by the bounds) when it does not fit one.</summary>
        private static int? Bounded(JsonObject json, string member) =>
            json.GetOptionalInt64(member) is long value ? (value >= 1 && value <= int.MaxValue ? (int)value : 0) : (int?)null;

        private static string Shown(string value) => GuestText.Quote(value.Length > 80 ? value.Substring(0, 80) + "..." : value);

        /// <summary>True when nothing is known: not worth recording.</summary>
        internal bool IsEmpty => Type == null && MemoryMiB == null && Cpus == null && CpuModel == null;
    }
}
