using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Commands
{
    /// <summary>What the three *-VssWriterServiceLogon cmdlets share: the backend for this OS and the ShouldProcess gate.</summary>
    internal static class ServiceLogonSupport
    {
        public static ServiceLogonManager CreateManager(string? unitDirectory, string? stateDirectory) =>
            new ServiceLogonManager(CreateBackend(unitDirectory), new PasswordVerifierStore(stateDirectory ?? PasswordVerifierStore.DefaultFolder));

        private static IServiceLogonBackend CreateBackend(string? unitDirectory)
        {
            if (HostPlatform.IsWindows)
            {
                if (unitDirectory != null)
                {
                    throw new VmQuiesceException("UnitDirectoryNotSupported", FailureKind.InvalidArgument,
                        "-UnitDirectory applies to systemd units on Linux; Windows services live in the Service Control Manager.", unitDirectory);
                }

                return new WindowsLogonBackend();
            }

            if (HostPlatform.IsLinux)
            {
                return new SystemdLogonBackend(unitDirectory);
            }

            throw new VmQuiesceException("PlatformNotSupported", FailureKind.NotSupported,
                $"Service logon setup supports Windows (Service Control Manager) and Linux (systemd), not {HostPlatform.Name}.", HostPlatform.Name);
        }

        /// <summary>Lets the core ask ShouldProcess and write warnings and verbose lines through the cmdlet.</summary>
        internal sealed class CmdletGate : ILogonChangeGate
        {
            private readonly Cmdlet _cmdlet;

            public CmdletGate(Cmdlet cmdlet) => _cmdlet = cmdlet;

            public bool ShouldProcess(string target, string action) => _cmdlet.ShouldProcess(target, action);

            public void WriteWarning(string message) => _cmdlet.WriteWarning(message);

            public void WriteVerbose(string message) => _cmdlet.WriteVerbose(message);
        }
    }
}
