using System;

namespace VmQuiesce.Core
{
    /// <summary>What kind of failure happened; the cmdlet layer maps it to a PowerShell ErrorCategory.</summary>
    public enum FailureKind
    {
        InvalidArgument,
        InvalidData,
        InvalidOperation,
        ObjectNotFound,
        PermissionDenied,
        ResourceBusy,
        ResourceUnavailable,
        OperationTimeout,
        OperationStopped,
        ReadError,
        WriteError,
        NotSupported,
        ConnectionError,
        ProtocolError,
        SecurityError,
        LimitsExceeded,
    }

    /// <summary>
    /// Every failure the core reports on purpose: a stable PascalCase id that scripts can match,
    /// a kind, the object it concerns and a message that names the input and what was expected.
    /// </summary>
    public class VmQuiesceException : Exception
    {
        public VmQuiesceException(string errorId, FailureKind kind, string message, object? target = null, Exception? inner = null)
            : base(message, inner)
        {
            ErrorId = errorId;
            Kind = kind;
            Target = target;
        }

        public string ErrorId { get; }

        public FailureKind Kind { get; }

        public object? Target { get; }

        /// <summary>What the user can do about it, when the core knows (a command to run, a setting to change).</summary>
        public string? Remedy { get; init; }
    }
}
