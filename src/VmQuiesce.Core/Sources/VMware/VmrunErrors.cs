using System;
using System.Globalization;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// The one place that turns vmrun's failure text into a stable error id and a FailureKind.
    /// </summary>
    /// <remarks>
    /// Where the texts come from (public scripts and tests that drive the real vmrun; VMware is not installed here):
    /// "Error: The virtual machine is not powered on: PATH" (exit -1, seen as 255 and 4294967295);
    /// "Error: Cannot open VM: PATH, The virtual machine cannot be found" (also ", Incorrect password");
    /// "Error: The file is already in use" (revertToSnapshot while the VM runs, exit 4294967295);
    /// "Unable to connect to host." and "Error: The operation is not supported for the specified parameters";
    /// "Error: A snapshot with the name already exists", reported with exit code 0, which is why an
    /// "Error:" line is a failure whatever the exit code. The VIX error texts vmrun prints after "Error: "
    /// ("Insufficient permissions in host operating system", "A snapshot operation is already in progress",
    /// "The name does not uniquely identify one snapshot", "A file by that name does not exist") come from
    /// VIX's public error-code list. The wording vmrun uses for a missing snapshot name was not found in any
    /// public source: "snapshot does not exist", "Invalid snapshot name" and VIX's text are all accepted.
    /// </remarks>
    internal static class VmrunErrors
    {
        private static readonly (string Fragment, string ErrorId, FailureKind Kind, string Remedy)[] Known =
        {
            // First: when vmrun cannot reach the host, the VIX text after it only explains why.
            ("Unable to connect to host", "VmrunConnectionFailed", FailureKind.ConnectionError, "Check the host URL, that the VMware service runs, and the user name and password."),
            ("is not powered on", "VmrunVmNotRunning", FailureKind.InvalidOperation, "Start the VM, or run the step that needs it powered off instead."),
            ("snapshot with the name already exists", "VmrunSnapshotExists", FailureKind.ResourceBusy, "Use another snapshot name, or delete the existing snapshot."),
            ("A file by that name already exists", "VmrunSnapshotExists", FailureKind.ResourceBusy, "Use another snapshot name, or delete the existing snapshot."),
            ("snapshot does not exist", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound, "List the VM's snapshots with 'vmrun listSnapshots' and use one of those names."),
            ("Invalid snapshot name", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound, "List the VM's snapshots with 'vmrun listSnapshots' and use one of those names."),
            ("A file by that name does not exist", "VmrunSnapshotNotFound", FailureKind.ObjectNotFound, "List the VM's snapshots with 'vmrun listSnapshots' and use one of those names."),
            ("does not uniquely identify one snapshot", "VmrunSnapshotAmbiguous", FailureKind.InvalidOperation, "Give the snapshot's full path (parent/child) or rename the duplicates."),
            ("snapshot operation is already in progress", "VmrunSnapshotBusy", FailureKind.ResourceBusy, "Wait for the other snapshot operation to finish, then try again."),
            ("Cannot open VM", "VmrunCannotOpenVm", FailureKind.ObjectNotFound, "Check the .vmx path (for VMware Server, the datastore path such as '[standard] vm/vm.vmx') and that the VM is registered."),
            ("file is already in use", "VmrunFileInUse", FailureKind.ResourceBusy, "Close the VM in the VMware user interface, or power it off, then try again."),
            ("Insufficient permissions", "VmrunPermissionDenied", FailureKind.PermissionDenied, "Run as an account with administrative rights over the VM and modify rights on its folder."),
            ("not supported for the specified parameters", "VmrunNotSupported", FailureKind.NotSupported, "Check the host type (-T): modern vmrun supports only ws, player and fusion."),
        };

        /// <summary>The error for a failed vmrun call; <paramref name="vmrunMessage"/> must already be redacted.</summary>
        public static VmQuiesceException Map(string vmrunMessage, int exitCode, string command, string target)
        {
            foreach ((string fragment, string errorId, FailureKind kind, string remedy) in Known)
            {
                if (vmrunMessage.IndexOf(fragment, StringComparison.OrdinalIgnoreCase) >= 0)
                {
                    return Failure(errorId, kind, vmrunMessage, exitCode, command, target, remedy);
                }
            }

            return Failure("VmrunFailed", FailureKind.InvalidOperation, vmrunMessage, exitCode, command, target,
                "Run the vmrun command shown in the verbose output by hand to see VMware's full message.");
        }

        private static VmQuiesceException Failure(string errorId, FailureKind kind, string vmrunMessage, int exitCode, string command, string target, string remedy) =>
            new VmQuiesceException(errorId, kind,
                string.Format(CultureInfo.InvariantCulture, "vmrun {0} for '{1}' failed (exit code {2}): {3}", command, target, exitCode,
                    // vmrun echoes snapshot names and paths that came from the VM folder: escaped, so they cannot drive the terminal.
                    vmrunMessage.Length == 0 ? "vmrun printed nothing." : GuestText.Escape(vmrunMessage)),
                target)
            {
                Remedy = remedy,
            };
    }
}
