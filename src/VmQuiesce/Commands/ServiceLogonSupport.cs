using VmQuiesce.Core;
using VmQuiesce.Core.Logon;
using VmQuiesce.Core.Logon.Linux;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Commands
{
    /// <summary>What the three *-VssWriterServiceLogon cmdlets share: the backend for this OS.</summary>
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
    }
}
