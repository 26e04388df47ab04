using System;
using System.Collections.Generic;
using System.Globalization;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// The one place that turns VSS HRESULTs into words: the VSS name, a plain-language meaning, the
    /// failure kind and a stable error id (plus advice where there is some).
    /// </summary>
    public static class VssErrors
    {
        /// <summary>Error id of FLUSH/HOLD_WRITES_TIMEOUT: the kernel could not hold writes long enough; retrying later helps.</summary>
        public const string FreezeTimeoutId = "VssFreezeTimeout";

        private const string RetryLater = "Retry the backup later, when the volumes are less busy, up to 3 times (Microsoft's documented advice).";

        private static readonly Dictionary<int, Entry> Known = Table(
            new Entry(0, "S_OK", "no error", FailureKind.InvalidOperation, "VssSucceeded"),
            new Entry(unchecked((int)0x80042301), "VSS_E_BAD_STATE", "the call is not valid at this point of the backup sequence (or the object was used twice)", FailureKind.InvalidOperation, "VssBadState"),
            new Entry(unchecked((int)0x80042302), "VSS_E_UNEXPECTED", "VSS met an unexpected error; the Application event log has details", FailureKind.InvalidOperation, "VssUnexpected"),
            new Entry(unchecked((int)0x80042304), "VSS_E_PROVIDER_NOT_REGISTERED", "the shadow copy provider is not registered", FailureKind.ResourceUnavailable, "VssProviderNotRegistered"),
            new Entry(unchecked((int)0x80042306), "VSS_E_PROVIDER_VETO", "the shadow copy provider refused the shadow copy; the System and Application event logs say why", FailureKind.ResourceUnavailable, "VssProviderVeto"),
            new Entry(unchecked((int)0x80042307), "VSS_E_PROVIDER_IN_USE", "the shadow copy provider is busy with another request", FailureKind.ResourceBusy, "VssProviderInUse", RetryLater),
            new Entry(unchecked((int)0x80042308), "VSS_E_OBJECT_NOT_FOUND", "the volume, shadow copy or component does not exist", FailureKind.ObjectNotFound, "VssObjectNotFound"),
            new Entry(unchecked((int)0x8004230C), "VSS_E_VOLUME_NOT_SUPPORTED", "shadow copies of this volume are not supported (it must be a local NTFS or ReFS volume)", FailureKind.NotSupported, "VssVolumeNotSupported"),
            new Entry(unchecked((int)0x8004230F), "VSS_E_UNEXPECTED_PROVIDER_ERROR", "the shadow copy provider failed unexpectedly; the System event log has details", FailureKind.InvalidOperation, "VssProviderFailed"),
            new Entry(unchecked((int)0x80042312), "VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED", "too many volumes are in the shadow copy set", FailureKind.LimitsExceeded, "VssTooManyVolumes"),
            new Entry(unchecked((int)0x80042313), "VSS_E_FLUSH_WRITES_TIMEOUT", "the system could not flush the volumes' writes within its 10 second limit", FailureKind.OperationTimeout, FreezeTimeoutId, RetryLater),
            new Entry(unchecked((int)0x80042314), "VSS_E_HOLD_WRITES_TIMEOUT", "the system could not hold the volumes' writes for the 10 seconds a shadow copy may take", FailureKind.OperationTimeout, FreezeTimeoutId, RetryLater),
            new Entry(unchecked((int)0x80042315), "VSS_E_UNEXPECTED_WRITER_ERROR", "a writer failed unexpectedly", FailureKind.InvalidOperation, "VssWriterFailed"),
            new Entry(unchecked((int)0x80042316), "VSS_E_SNAPSHOT_SET_IN_PROGRESS", "another shadow copy is being created on this machine", FailureKind.ResourceBusy, "VssSnapshotInProgress", "Wait until the other backup finishes, then retry."),
            new Entry(unchecked((int)0x80042317), "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED", "the volume already holds the maximum number of shadow copies", FailureKind.LimitsExceeded, "VssTooManySnapshots", "Delete old shadow copies (vssadmin list shadows / vssadmin delete shadows), then retry."),
            new Entry(unchecked((int)0x80042318), "VSS_E_WRITER_INFRASTRUCTURE", "the writer infrastructure is not working; check that the Volume Shadow Copy service (VSS) runs and read the Application event log", FailureKind.ResourceUnavailable, "VssWriterInfrastructure"),
            new Entry(unchecked((int)0x80042319), "VSS_E_WRITER_NOT_RESPONDING", "a writer did not respond; its service may be stopped or hung", FailureKind.OperationTimeout, "VssWriterNotResponding", "Restart the service that hosts the writer (Get-VssWriter shows it), then retry."),
            new Entry(unchecked((int)0x8004231B), "VSS_E_UNSUPPORTED_CONTEXT", "the shadow copy context is not supported by the provider", FailureKind.NotSupported, "VssUnsupportedContext"),
            new Entry(unchecked((int)0x8004231D), "VSS_E_VOLUME_IN_USE", "the volume is in use by another shadow copy operation", FailureKind.ResourceBusy, "VssVolumeInUse", RetryLater),
            new Entry(unchecked((int)0x8004231F), "VSS_E_INSUFFICIENT_STORAGE", "there is not enough free space on the volume for the shadow copy's storage area", FailureKind.LimitsExceeded, "VssInsufficientStorage", "Free space on the volume or enlarge its shadow storage (vssadmin resize shadowstorage), then retry."),
            new Entry(unchecked((int)0x800423F0), "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT", "the writer says the shadow copy does not hold a consistent copy of its data", FailureKind.InvalidData, "VssWriterInconsistentSnapshot"),
            new Entry(unchecked((int)0x800423F1), "VSS_E_WRITERERROR_OUTOFRESOURCES", "the writer ran out of memory or other resources", FailureKind.LimitsExceeded, "VssWriterOutOfResources", RetryLater),
            new Entry(unchecked((int)0x800423F2), "VSS_E_WRITERERROR_TIMEOUT", "the writer's freeze lasted longer than allowed (60 seconds by default) and it thawed", FailureKind.OperationTimeout, "VssWriterTimeout", RetryLater),
            new Entry(unchecked((int)0x800423F3), "VSS_E_WRITERERROR_RETRYABLE", "the writer failed with an error that retrying may fix", FailureKind.ResourceBusy, "VssWriterRetryable", RetryLater),
            new Entry(unchecked((int)0x800423F4), "VSS_E_WRITERERROR_NONRETRYABLE", "the writer failed with an error that retrying will not fix; its event log entries say why", FailureKind.InvalidOperation, "VssWriterNonRetryable"),
            new Entry(unchecked((int)0x800423F5), "VSS_E_WRITERERROR_RECOVERY_FAILED", "the writer could not recover the shadow copy volume", FailureKind.InvalidOperation, "VssWriterRecoveryFailed"),
            new Entry(unchecked((int)0x80070005), "E_ACCESSDENIED", "access denied: the process must run elevated as an Administrator or a Backup Operator", FailureKind.PermissionDenied, "VssAccessDenied", "Run PowerShell elevated (Run as administrator)."),
            new Entry(unchecked((int)0x80070057), "E_INVALIDARG", "an argument was not valid", FailureKind.InvalidArgument, "VssInvalidArgument"),
            new Entry(unchecked((int)0x8007000E), "E_OUTOFMEMORY", "out of memory", FailureKind.LimitsExceeded, "VssOutOfMemory"),
            new Entry(unchecked((int)0x80004001), "E_NOTIMPL", "the call is not implemented by this version of Windows", FailureKind.NotSupported, "VssNotImplemented"),
            new Entry(VssConstants.AsyncPending, "VSS_S_ASYNC_PENDING", "the operation is still running", FailureKind.OperationTimeout, "VssOperationPending"),
            new Entry(VssConstants.AsyncFinished, "VSS_S_ASYNC_FINISHED", "the operation finished", FailureKind.InvalidOperation, "VssSucceeded"),
            new Entry(VssConstants.AsyncCancelled, "VSS_S_ASYNC_CANCELLED", "the operation was cancelled", FailureKind.OperationStopped, "VssOperationCancelled"));

        /// <summary>The VSS or COM name of <paramref name="hresult"/>, or its hexadecimal form when unknown.</summary>
        public static string NameOf(int hresult) => Known.TryGetValue(hresult, out Entry? entry) ? entry.Name : Hex(hresult);

        /// <summary>What <paramref name="hresult"/> means, in plain language.</summary>
        public static string MeaningOf(int hresult) =>
            Known.TryGetValue(hresult, out Entry? entry) ? entry.Meaning
            : (hresult & 0x1FFF0000) == 0x00070000 ? "Windows error " + (hresult & 0xFFFF).ToString(CultureInfo.InvariantCulture) + ": " + new System.ComponentModel.Win32Exception(hresult & 0xFFFF).Message
            : "an error VmQuiesce does not know";

        /// <summary>0x80042313 (VSS_E_FLUSH_WRITES_TIMEOUT: ...): how errors and Get-VssWriter print an HRESULT.</summary>
        public static string Format(int hresult) =>
            Known.TryGetValue(hresult, out Entry? entry) ? $"{Hex(hresult)} ({entry.Name}: {entry.Meaning})" : $"{Hex(hresult)} ({MeaningOf(hresult)})";

        /// <summary>The exception for a VSS call that failed with <paramref name="hresult"/> during <paramref name="step"/>.</summary>
        public static VmQuiesceException ToException(int hresult, string step, object? target)
        {
            Known.TryGetValue(hresult, out Entry? entry);
            string message = $"VSS {step} failed with {Format(hresult)}.";
            return new VmQuiesceException(entry?.ErrorId ?? "VssOperationFailed", entry?.Kind ?? FailureKind.InvalidOperation, message, target)
            {
                Remedy = entry?.Remedy,
            };
        }

        private static string Hex(int hresult) => "0x" + hresult.ToString("X8", CultureInfo.InvariantCulture);

        private static Dictionary<int, Entry> Table(params Entry[] entries)
        {
            var table = new Dictionary<int, Entry>();
            foreach (Entry entry in entries)
            {
                table.Add(entry.HResult, entry);
            }

            return table;
        }

        private sealed class Entry
        {
            public Entry(int hresult, string name, string meaning, FailureKind kind, string errorId, string? remedy = null)
            {
                HResult = hresult;
                Name = name;
                Meaning = meaning;
                Kind = kind;
                ErrorId = errorId;
                Remedy = remedy;
            }

            public int HResult { get; }

            public string Name { get; }

            public string Meaning { get; }

            public FailureKind Kind { get; }

            public string ErrorId { get; }

            public string? Remedy { get; }
        }
    }
}
