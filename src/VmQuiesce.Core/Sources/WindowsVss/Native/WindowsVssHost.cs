using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Sources.WindowsVss.Native
{
    /// <summary>The real machine behind <see cref="IVssHost"/>: token checks, COM security, vssapi.dll, volumes, the service manager.</summary>
    [SupportedOSPlatform("windows")]
    internal sealed class WindowsVssHost : IVssHost
    {
        private const int SecurityBuiltinDomainRid = 32;
        private const int DomainAliasRidAdmins = 544;
        private const int DomainAliasRidBackupOps = 551;
        private const int MaxVolumeName = 50;

        private static readonly object SecurityGate = new object();
        private static bool _securityTried;
        private static string? _securityNote;

        [ThreadStatic]
        private static bool _comInitialized;

        public bool Is32BitProcessOn64BitWindows => Environment.Is64BitOperatingSystem && !Environment.Is64BitProcess;

        public bool HasBackupRights => IsMemberOfBuiltin(DomainAliasRidAdmins) || IsMemberOfBuiltin(DomainAliasRidBackupOps);

        public string? InitializeComSecurity()
        {
            // Process-wide and possible only once, before COM marshals anything: the first try decides.
            lock (SecurityGate)
            {
                if (_securityTried)
                {
                    return _securityNote;
                }

                _securityTried = true;
                EnsureComInitialized();
                int result = Ole32.CoInitializeSecurity(IntPtr.Zero, -1, IntPtr.Zero, IntPtr.Zero, Ole32.RpcCAuthnLevelPktPrivacy, Ole32.RpcCImpLevelImpersonate, IntPtr.Zero, Ole32.EoacDynamicCloaking, IntPtr.Zero);
                if (result == Ole32.RpcETooLate)
                {
                    _securityNote = "COM security was already set by this process before VmQuiesce loaded (RPC_E_TOO_LATE), so the requester runs with the host's settings rather than packet privacy with impersonation; if writers log event 8194 (access denied on IVssWriterCallback), run the backup from a fresh PowerShell.";
                }
                else if (result < 0)
                {
                    _securityNote = $"CoInitializeSecurity failed with {VssErrors.Format(result)}; the requester runs with the process's COM security settings.";
                }

                return _securityNote;
            }
        }

        public IVssBackupComponentsApi CreateBackupComponents()
        {
            EnsureComInitialized();
            return new VssBackupComponents(VssApiLibrary.CreateBackupComponents());
        }

        public VssVolume GetVolume(string path)
        {
            var mountPoint = new StringBuilder(Math.Max(path.Length + 2, 261));
            if (!Kernel32.GetVolumePathNameW(path, mountPoint, mountPoint.Capacity))
            {
                throw VolumeNotFound(path, "GetVolumePathNameW");
            }

            var volumeName = new StringBuilder(MaxVolumeName);
            if (!Kernel32.GetVolumeNameForVolumeMountPointW(mountPoint.ToString(), volumeName, volumeName.Capacity))
            {
                throw VolumeNotFound(path, "GetVolumeNameForVolumeMountPointW");
            }

            return new VssVolume(mountPoint.ToString(), volumeName.ToString());
        }

        public string? FindServiceByDisplayName(string displayName)
        {
            using SafeServiceHandle manager = Advapi32.OpenSCManagerW(null, null, Advapi32.ScManagerConnect);
            return manager.IsInvalid ? null : Advapi32.GetServiceKeyName(manager, displayName);
        }

        public IReadOnlyList<VssDiagnosticValue> ReadDiagnostics() =>
            Platform.WindowsRegistry.ReadLocalMachineBinaryValuesOfSubKeys(VssDiagnosticEvent.KeyPath, Platform.WindowsRegistry.View.Registry64)
                .Select(value => new VssDiagnosticValue(value.SubKey, value.Name, value.Data)).ToList();

        /// <summary>
        /// COM must be initialized on the calling thread (worker threads may not be). The apartment stays
        /// whatever the thread already has: RPC_E_CHANGED_MODE is fine, VSS works in both.
        /// </summary>
        private static void EnsureComInitialized()
        {
            if (!_comInitialized)
            {
                _ = Ole32.CoInitializeEx(IntPtr.Zero, Ole32.CoinitMultithreaded);
                _comInitialized = true;
            }
        }

        private static VmQuiesceException VolumeNotFound(string path, string call)
        {
            int error = Marshal.GetLastWin32Error();
            return new VmQuiesceException("VolumeNotFound", FailureKind.ObjectNotFound,
                $"Could not find the volume that holds '{path}': {call} failed with Windows error {error} ({new Win32Exception(error).Message}). A full path on a local volume was expected.", path);
        }

        /// <summary>CheckTokenMembership against BUILTIN\{rid}: false under a UAC-filtered (not elevated) token, as it should be.</summary>
        private static bool IsMemberOfBuiltin(int rid)
        {
            var ntAuthority = new Advapi32.SidIdentifierAuthority { Value5 = 5 };
            if (!Advapi32.AllocateAndInitializeSid(ref ntAuthority, 2, SecurityBuiltinDomainRid, rid, 0, 0, 0, 0, 0, 0, out IntPtr sid))
            {
                return false;
            }

            try
            {
                return Advapi32.CheckTokenMembership(IntPtr.Zero, sid, out bool member) && member;
            }
            finally
            {
                _ = Advapi32.FreeSid(sid);
            }
        }
    }
}
