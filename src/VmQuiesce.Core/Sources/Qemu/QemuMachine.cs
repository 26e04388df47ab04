using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// The machine a running QEMU VM runs as, from QMP (QEMU's own answers, which the guest cannot influence):
    /// the machine type as QEMU resolved it (qom-get /machine type: "pc-q35-7.2", never the alias "q35", so a
    /// restore gets the same guest ABI), the base memory (query-memory-size-summary), the CPU count
    /// (query-cpus-fast) and the CPU model (the first CPU's QOM type). Nothing else of the command line is kept:
    /// kernels, devices, drives and host paths belong to the host that ran the backup.
    /// </summary>
    internal static class QemuMachine
    {
        private const string MachineTypeSuffix = "-machine";
        private const string CpuTypeSuffix = "-cpu";

        /// <summary>
        /// What QEMU says of the machine, each value allowlisted (<see cref="VmMachine"/>); a query this QEMU does not
        /// know leaves its value out. Null when nothing is known.
        /// </summary>
        public static VmMachine? Query(QmpClient qmp, string vmName, IOperationHost host, CancellationToken cancel)
        {
            string? type = Answer(() => qmp.Execute("qom-get", new JsonObject().With("path", "/machine").With("property", "type"), cancel: cancel) as string);
            long? memoryBytes = Answer(() => (qmp.Execute("query-memory-size-summary", cancel: cancel) as JsonObject)?.GetOptionalInt64("base-memory"));
            IReadOnlyList<JsonObject>? cpus = Answer(() => (qmp.Execute("query-cpus-fast", cancel: cancel) as JsonArray)?.OfType<JsonObject>().ToList());
            string? cpuType = cpus?.FirstOrDefault()?.GetOptionalString("qom-path") is string cpuPath
                ? Answer(() => qmp.Execute("qom-get", new JsonObject().With("path", cpuPath).With("property", "type"), cancel: cancel) as string)
                : null;
            var dropped = new List<string>();
            VmMachine machine = new VmMachine
            {
                Type = MachineType(type),
                MemoryMiB = memoryBytes is long bytes && bytes > 0 ? (int)Math.Min(int.MaxValue, (bytes + Mebibyte - 1) / Mebibyte) : (int?)null,
                Cpus = cpus?.Count > 0 ? cpus.Count : (int?)null,
                CpuModel = CpuModel(cpuType),
            }.Allowed(dropped);
            foreach (string why in dropped)
            {
                host.WriteVerbose($"VM '{vmName}': not recorded: {why}.");
            }

            host.WriteVerbose($"VM '{vmName}': machine recorded as {machine}.");
            return machine.IsEmpty ? null : machine;
        }

        /// <summary>"pc-q35-7.2" from QOM's "pc-q35-7.2-machine".</summary>
        internal static string? MachineType(string? qomType) =>
            qomType != null && qomType.EndsWith(MachineTypeSuffix, StringComparison.Ordinal) && qomType.Length > MachineTypeSuffix.Length
                ? qomType.Substring(0, qomType.Length - MachineTypeSuffix.Length)
                : null;

        /// <summary>"Skylake-Server-v4" from QOM's "Skylake-Server-v4-x86_64-cpu": the model, then the target, then "-cpu".</summary>
        internal static string? CpuModel(string? qomType)
        {
            if (qomType == null || !qomType.EndsWith(CpuTypeSuffix, StringComparison.Ordinal))
            {
                return null;
            }

            string withTarget = qomType.Substring(0, qomType.Length - CpuTypeSuffix.Length);
            int target = withTarget.LastIndexOf('-');
            return target > 0 ? withTarget.Substring(0, target) : null;
        }

        private const long Mebibyte = 1024 * 1024;

        /// <summary>
        /// The answer, or null (default) when QEMU refused the command (an older QEMU without it) or answered in
        /// another shape: the record is worth having, never worth failing a backup over.
        /// </summary>
        private static T Answer<T>(Func<T> query)
        {
            try
            {
                return query();
            }
            catch (Exception e) when (e is QemuCommandException || e is JsonFormatException)
            {
                return default!;
            }
        }
    }
}
