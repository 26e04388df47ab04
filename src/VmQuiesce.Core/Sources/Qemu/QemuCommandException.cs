using System;

namespace VmQuiesce.Core.Sources.Qemu
{
    /// <summary>
    /// A command that QEMU's monitor (QMP) or the guest agent answered with an error. The error class
    /// (GenericError, CommandNotFound, DeviceNotFound, ...) becomes the stable id, e.g. QmpDeviceNotFound.
    /// </summary>
    public sealed class QemuCommandException : VmQuiesceException
    {
        internal QemuCommandException(string errorId, FailureKind kind, string message, string address, string command, string errorClass, string description)
            : base(errorId, kind, message, address)
        {
            Command = command;
            ErrorClass = errorClass;
            Description = description;
        }

        /// <summary>The command that failed, e.g. "block-commit".</summary>
        public string Command { get; }

        /// <summary>QEMU's error class, e.g. "GenericError".</summary>
        public string ErrorClass { get; }

        /// <summary>QEMU's own words ("desc"), control characters escaped (<see cref="GuestText"/>).</summary>
        public string Description { get; }

        /// <param name="peer">"Qmp" or "GuestAgent": the first part of the error id.</param>
        /// <param name="what">"QMP monitor" or "guest agent": how messages name the peer.</param>
        internal static QemuCommandException From(string peer, string what, string address, string command, string errorClass, string description)
        {
            (string suffix, FailureKind kind) = errorClass switch
            {
                "GenericError" => ("GenericError", FailureKind.InvalidOperation),
                "CommandNotFound" => ("CommandNotFound", FailureKind.NotSupported),
                "DeviceNotFound" => ("DeviceNotFound", FailureKind.ObjectNotFound),
                "DeviceNotActive" => ("DeviceNotActive", FailureKind.ResourceUnavailable),
                "KVMMissingCap" => ("KvmMissingCap", FailureKind.NotSupported),
                _ => ("CommandFailed", FailureKind.InvalidOperation),
            };
            // The description is the peer's own text: a guest's agent controls it.
            errorClass = GuestText.Escape(errorClass);
            description = GuestText.Escape(description);
            string message = $"The {what} at '{address}' refused '{command}': {description} ({errorClass}).";
            return new QemuCommandException(peer + suffix, kind, message, address, command, errorClass, description);
        }
    }
}
