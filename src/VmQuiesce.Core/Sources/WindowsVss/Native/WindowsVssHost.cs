using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;

namespace VmQuiesce.Core.Sources.WindowsVss.Native
{
    /// <summary>The real machine behind <see cref="IVssHost"/>: token checks, COM security, vssapi.dll, volumes, the service manager.</summary>
    [SupportedOSPlatform("windows")]
    internal sealed class WindowsVssHost : IVssHost
    {
        private const int SecurityBuiltinDomainRid = 32;
        private const int DomainAliasRidAdmins = 544;
        private const int DomainAliasRidBackupOps = 551;
        private const int RpcCAuthnLevelPktPrivacy = 6;
        private const int RpcCImpLevelImpersonate = 3;
        private const int EoacDynamicCloaking = 0x40;
        private const int CoinitMultithreaded = 0;
        private const int RpcETooLate = unchecked((int)0x80010119);
        private const int ScManagerConnect = 0x0001;
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
                int result = CoInitializeSecurity(IntPtr.Zero, -1, IntPtr.Zero, IntPtr.Zero, RpcCAuthnLevelPktPrivacy, RpcCImpLevelImpersonate, IntPtr.Zero, EoacDynamicCloaking, IntPtr.Zero);
                if (result == RpcETooLate)
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
            if (!GetVolumePathNameW(path, mountPoint, mountPoint.Capacity))
            {
                throw VolumeNotFound(path, "GetVolumePathNameW");
            }

            var volumeName = new StringBuilder(MaxVolumeName);
            if (!GetVolumeNameForVolumeMountPointW(mountPoint.ToString(), volumeName, volumeName.Capacity))
            {
                throw VolumeNotFound(path, "GetVolumeNameForVolumeMountPointW");
            }

            return new VssVolume(mountPoint.ToString(), volumeName.ToString());
        }

        public string? FindServiceByDisplayName(string displayName)
        {
            IntPtr manager = OpenSCManagerW(null, null, ScManagerConnect);
            if (manager == IntPtr.Zero)
            {
                return null;
            }

            try
            {
                int size = 257;
                var name = new StringBuilder(size);
                return GetServiceKeyNameW(manager, displayName, name, ref size) ? name.ToString() : null;
            }
            finally
            {
                _ = CloseServiceHandle(manager);
            }
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
                _ = CoInitializeEx(IntPtr.Zero, CoinitMultithreaded);
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
            var ntAuthority = new SidIdentifierAuthority { Value5 = 5 };
            if (!AllocateAndInitializeSid(ref ntAuthority, 2, SecurityBuiltinDomainRid, rid, 0, 0, 0, 0, 0, 0, out IntPtr sid))
            {
                return false;
            }

            try
            {
                return CheckTokenMembership(IntPtr.Zero, sid, out bool member) && member;
            }
            finally
            {
                _ = FreeSid(sid);
            }
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct SidIdentifierAuthority
        {
            public byte Value0;
            public byte Value1;
            public byte Value2;
            public byte Value3;
            public byte Value4;
            public byte Value5;
        }

        [DllImport("advapi32.dll", ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool AllocateAndInitializeSid(ref SidIdentifierAuthority authority, byte subAuthorityCount,
            int subAuthority0, int subAuthority1, int subAuthority2, int subAuthority3, int subAuthority4, int subAuthority5, int subAuthority6, int subAuthority7, out IntPtr sid);

        [DllImport("advapi32.dll", ExactSpelling = true)]
        private static extern IntPtr FreeSid(IntPtr sid);

        [DllImport("advapi32.dll", ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool CheckTokenMembership(IntPtr token, IntPtr sid, [MarshalAs(UnmanagedType.Bool)] out bool isMember);

        [DllImport("ole32.dll", ExactSpelling = true)]
        private static extern int CoInitializeEx(IntPtr reserved, int coInit);

        [DllImport("ole32.dll", ExactSpelling = true)]
        private static extern int CoInitializeSecurity(IntPtr securityDescriptor, int authServiceCount, IntPtr authServices, IntPtr reserved1,
            int authenticationLevel, int impersonationLevel, IntPtr authList, int capabilities, IntPtr reserved3);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool GetVolumePathNameW(string fileName, StringBuilder volumePathName, int bufferLength);

        [DllImport("kernel32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool GetVolumeNameForVolumeMountPointW(string volumeMountPoint, StringBuilder volumeName, int bufferLength);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        private static extern IntPtr OpenSCManagerW(string? machineName, string? databaseName, int desiredAccess);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool GetServiceKeyNameW(IntPtr manager, string displayName, StringBuilder serviceName, ref int bufferSize);

        [DllImport("advapi32.dll", ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool CloseServiceHandle(IntPtr handle);
    }
}
