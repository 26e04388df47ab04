using System;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>The VMware product vmrun drives: its <c>-T</c> value.</summary>
    public enum VmwareHostType
    {
        /// <summary>VMware Workstation (<c>-T ws</c>), local.</summary>
        Workstation,

        /// <summary>VMware Player / Workstation Player (<c>-T player</c>), local.</summary>
        Player,

        /// <summary>VMware Fusion on macOS (<c>-T fusion</c>), local.</summary>
        Fusion,

        /// <summary>VMware Server 2.0 (<c>-T server</c>): remote, with a host URL, user and password; one snapshot per VM.</summary>
        Server,
    }

    internal static class VmwareHostTypes
    {
        public static string ToVmrunType(this VmwareHostType type) => type switch
        {
            VmwareHostType.Workstation => "ws",
            VmwareHostType.Player => "player",
            VmwareHostType.Fusion => "fusion",
            VmwareHostType.Server => "server",
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown VMware host type."),
        };
    }
}
