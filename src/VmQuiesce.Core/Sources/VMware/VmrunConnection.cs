using System;
using System.Net;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// How vmrun is called: which vmrun, which product, and for VMware Server the host and the account.
    /// Validated on construction so that a bad value fails before any vmrun call.
    /// </summary>
    public sealed class VmrunConnection
    {
        /// <summary>The port VMware Server 2.0's web service listens on by default.</summary>
        public const int DefaultServerPort = 8333;

        /// <summary>Shown (as a warning) whenever a password is about to go to vmrun.</summary>
        public const string PasswordOnCommandLineWarning =
            "vmrun takes the VMware Server password on its command line (-p), where other users of this computer can see it " +
            "in process listings while vmrun runs. VmQuiesce never logs it; prefer a local host type (Workstation, Player, Fusion) " +
            "or a dedicated account with only the rights the backup needs.";

        public VmrunConnection(string vmrunPath, VmwareHostType hostType, string? serverHost = null, NetworkCredential? credential = null)
        {
            if (string.IsNullOrWhiteSpace(vmrunPath))
            {
                throw new VmQuiesceException("VmrunPathInvalid", FailureKind.InvalidArgument, "The vmrun path is empty; expected the full path of the vmrun program.", vmrunPath);
            }

            VmrunPath = vmrunPath;
            HostType = hostType;
            if (hostType == VmwareHostType.Server)
            {
                if (string.IsNullOrWhiteSpace(serverHost))
                {
                    throw new VmQuiesceException("VmrunHostRequired", FailureKind.InvalidArgument,
                        "VMware Server is driven remotely: a host (name, name:port or https://name:port/sdk) is required; none was given.", hostType);
                }

                if (credential == null || string.IsNullOrEmpty(credential.UserName))
                {
                    throw new VmQuiesceException("VmrunCredentialRequired", FailureKind.InvalidArgument,
                        $"VMware Server host '{serverHost}' needs a user name and password (a credential); none was given.", serverHost);
                }

                ServerUrl = ToServerUrl(serverHost!);
                Credential = credential;
            }
            else if (!string.IsNullOrEmpty(serverHost) || credential != null)
            {
                throw new VmQuiesceException("VmrunHostNotSupported", FailureKind.InvalidArgument,
                    $"A host and credential apply only to VMware Server (-T server); {hostType} runs VMs on this computer.", hostType);
            }
        }

        public string VmrunPath { get; }

        public VmwareHostType HostType { get; }

        /// <summary>https://HOST:8333/sdk for VMware Server, else null.</summary>
        public string? ServerUrl { get; }

        /// <summary>The VMware Server account; its password only ever goes to vmrun's argument list.</summary>
        public NetworkCredential? Credential { get; }

        /// <summary>Limit for each vmrun call; a call that takes longer is killed with its child processes.</summary>
        public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromMinutes(10);

        /// <summary>A host name, name:port, or a full https URL, as VMware Server's SDK endpoint.</summary>
        internal static string ToServerUrl(string host)
        {
            string text = host.Trim();
            foreach (char c in text)
            {
                if (char.IsWhiteSpace(c) || char.IsControl(c) || c == '"')
                {
                    throw new VmQuiesceException("VmrunHostInvalid", FailureKind.InvalidArgument,
                        $"The VMware Server host '{host}' contains a space, quote or control character; expected a host name, name:port or https://name:port/sdk.", host);
                }
            }

            if (text.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
            {
                if (!Uri.TryCreate(text, UriKind.Absolute, out Uri? _))
                {
                    throw new VmQuiesceException("VmrunHostInvalid", FailureKind.InvalidArgument, $"The VMware Server URL '{host}' is not a valid URL.", host);
                }

                return text;
            }

            bool hasPort = text.LastIndexOf(':') > text.LastIndexOf(']');
            return "https://" + text + (hasPort ? string.Empty : ":" + DefaultServerPort) + "/sdk";
        }
    }
}
