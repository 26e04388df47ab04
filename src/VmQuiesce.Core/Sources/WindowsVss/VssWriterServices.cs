using System;
using System.Collections.Generic;

namespace VmQuiesce.Core.Sources.WindowsVss
{
    /// <summary>
    /// Which Windows service hosts a writer: VSS has no API for it, so well-known writers come from a table
    /// and others are looked up by display name ("X" or "X Service", as VMware names its writer's service).
    /// </summary>
    internal static class VssWriterServices
    {
        private static readonly Dictionary<string, string> WellKnown = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["ASR Writer"] = "VSS",
            ["BITS Writer"] = "BITS",
            ["Certificate Authority"] = "CertSvc",
            ["COM+ REGDB Writer"] = "VSS",
            ["DFS Replication service writer"] = "DFSR",
            ["Dhcp Jet Writer"] = "DHCPServer",
            ["FRS Writer"] = "NtFrs",
            ["IIS Config Writer"] = "AppHostSvc",
            ["IIS Metabase Writer"] = "IISADMIN",
            ["Microsoft Exchange Writer"] = "MSExchangeIS",
            ["Microsoft Exchange Replica Writer"] = "MSExchangeRepl",
            ["Microsoft Hyper-V VSS Writer"] = "vmms",
            ["MSSearch Service Writer"] = "WSearch",
            ["NTDS"] = "NTDS",
            ["Registry Writer"] = "VSS",
            ["Shadow Copy Optimization Writer"] = "VSS",
            ["SqlServerWriter"] = "SQLWriter",
            ["System Writer"] = "CryptSvc",
            ["Task Scheduler Writer"] = "Schedule",
            ["TermServLicensing"] = "TermServLicensing",
            ["VSS Metadata Store Writer"] = "VSS",
            ["WIDWriter"] = "WIDWriter",
            ["WMI Writer"] = "Winmgmt",
        };

        /// <summary>The hosting service's short name, or null when neither the table nor the lookup knows it.</summary>
        public static string? Find(string writerName, Func<string, string?> findServiceByDisplayName)
        {
            if (WellKnown.TryGetValue(writerName, out string? service))
            {
                return service;
            }

            return findServiceByDisplayName(writerName + " Service") ?? findServiceByDisplayName(writerName);
        }
    }
}
