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

        /// <summary>The first exchange of <see cref="Query"/>: the UUID, the machine type, the memory and the CPUs.</summary>
        public static IReadOnlyList<QemuCommand> Queries => new[]
        {
            new QemuCommand("query-uuid"),
            new QemuCommand("qom-get", new JsonObject().With("path", "/machine").With("property", "type")),
            new QemuCommand("query-memory-size-summary"),
            new QemuCommand("query-cpus-fast"),
        };

        /// <summary>
        /// What QEMU says of the VM: its UUID (<paramref name="uuid"/>; query-uuid, whose error is thrown) and its machine,
        /// each value allowlisted (<see cref="VmMachine"/>; a query this QEMU does not know leaves its value out, null when
        /// nothing is known). Asked in two exchanges: the first CPU's type needs its QOM path from query-cpus-fast.
        /// </summary>
        public static VmMachine? Query(QmpClient qmp, string vmName, IOperationHost host, CancellationToken cancel, out Guid? uuid)
        {
            IReadOnlyList<CommandAnswer> answers = qmp.ExecuteAll(Queries, cancel);
            uuid = QemuDiscovery.ParseUuid(qmp.AnswerObject("query-uuid", answers[0]).GetOptionalString("UUID"));
            // A refused query's answer has no value: its field stays unknown.
            string? type = answers[1].Value as string;
            long? memoryBytes = answers[2].Value is JsonObject memory ? MemoryBytes(memory) : null;
            List<JsonObject>? cpus = (answers[3].Value as JsonArray)?.OfType<JsonObject>().ToList();
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
        /// query-memory-size-summary's base-memory, or null when answered in another shape. Not through Answer: over a
        /// long? it would be compiled at run time, on the way to the freeze.
        /// </summary>
        private static long? MemoryBytes(JsonObject memory)
        {
            try
            {
                return memory.GetOptionalInt64("base-memory");
            }
            catch (JsonFormatException)
            {
                return null;
            }
        }

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
