using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VmQuiesce.Core.Native
{
    /// <summary>advapi32.dll: the Service Control Manager, LSA, logon, SIDs, security descriptors and the registry.</summary>
    [SupportedOSPlatform("windows")]
    internal static class Advapi32
    {
        private const string Library = "advapi32.dll";

        public const uint ScManagerConnect = 0x0001;
        public const uint ServiceQueryConfig = 0x0001;
        public const uint ServiceChangeConfig = 0x0002;
        public const uint ServiceQueryStatus = 0x0004;
        public const uint ServiceStart = 0x0010;
        public const uint ServiceStop = 0x0020;
        public const uint ServiceNoChange = 0xFFFFFFFF;
        public const uint ServiceControlStop = 0x1;

        public const uint PolicyLookupNames = 0x800;
        public const uint PolicyCreateAccount = 0x10;
        public const uint StatusObjectNameNotFound = 0xC0000034;

        public const int Logon32LogonService = 5;
        public const int Logon32ProviderDefault = 0;

        public const int SeFileObject = 1;
        public const uint OwnerSecurityInformation = 0x1;
        public const uint GroupSecurityInformation = 0x2;
        public const uint DaclSecurityInformation = 0x4;
        public const uint ProtectedDaclSecurityInformation = 0x80000000;

        public const int KeyQueryValue = 0x0001;
        public const int KeyEnumerateSubKeys = 0x0008;

        [StructLayout(LayoutKind.Sequential)]
        public struct ServiceStatus
        {
            public uint ServiceType;
            public uint CurrentState;
            public uint ControlsAccepted;
            public uint Win32ExitCode;
            public uint ServiceSpecificExitCode;
            public uint CheckPoint;
            public uint WaitHint;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct QueryServiceConfig
        {
            public uint ServiceType;
            public uint StartType;
            public uint ErrorControl;
            public IntPtr BinaryPathName;
            public IntPtr LoadOrderGroup;
            public uint TagId;
            public IntPtr Dependencies;
            public IntPtr ServiceStartName;
            public IntPtr DisplayName;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct LsaObjectAttributes
        {
            public int Length;
            public IntPtr RootDirectory;
            public IntPtr ObjectName;
            public uint Attributes;
            public IntPtr SecurityDescriptor;
            public IntPtr SecurityQualityOfService;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct LsaUnicodeString
        {
            public ushort Length;
            public ushort MaximumLength;
            public IntPtr Buffer;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct SidIdentifierAuthority
        {
            public byte Value0;
            public byte Value1;
            public byte Value2;
            public byte Value3;
            public byte Value4;
            public byte Value5;
        }

        /// <summary>
        /// The key name of the service whose display name is <paramref name="displayName"/>, or null when no
        /// service has it. Asks for the length first: key names have no fixed limit the SCM promises.
        /// </summary>
        public static string? GetServiceKeyName(SafeServiceHandle manager, string displayName)
        {
            int length = 0;
            GetServiceKeyNameW(manager, displayName, null, ref length);
            if (Marshal.GetLastWin32Error() != Win32Error.InsufficientBuffer)
            {
                return null;
            }

            length++;
            var keyName = new StringBuilder(length);
            return GetServiceKeyNameW(manager, displayName, keyName, ref length) ? keyName.ToString() : null;
        }

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeServiceHandle OpenSCManagerW(string? machineName, string? databaseName, uint desiredAccess);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeServiceHandle OpenServiceW(SafeServiceHandle manager, string serviceName, uint desiredAccess);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool GetServiceKeyNameW(SafeServiceHandle manager, string displayName, StringBuilder? serviceName, ref int length);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool QueryServiceConfigW(SafeServiceHandle service, IntPtr config, int size, out int needed);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool ChangeServiceConfigW(SafeServiceHandle service, uint serviceType, uint startType, uint errorControl,
            string? binaryPathName, string? loadOrderGroup, IntPtr tagId, string? dependencies, string? serviceStartName, IntPtr password, string? displayName);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool ControlService(SafeServiceHandle service, uint control, out ServiceStatus status);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool StartServiceW(SafeServiceHandle service, int argumentCount, IntPtr arguments);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool QueryServiceStatus(SafeServiceHandle service, out ServiceStatus status);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseServiceHandle(IntPtr handle);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaOpenPolicy(IntPtr systemName, ref LsaObjectAttributes attributes, uint desiredAccess, out IntPtr policy);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaEnumerateAccountRights(IntPtr policy, byte[] accountSid, out IntPtr rights, out uint count);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaAddAccountRights(IntPtr policy, byte[] accountSid, LsaUnicodeString[] rights, uint count);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaNtStatusToWinError(uint status);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaFreeMemory(IntPtr buffer);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint LsaClose(IntPtr policy);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool LogonUserW(string userName, string? domain, IntPtr password, int logonType, int logonProvider, out IntPtr token);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool LookupAccountNameW(string? systemName, string accountName, byte[]? sid, ref int sidLength,
            StringBuilder? domainName, ref int domainLength, out int use);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool LookupAccountSidW(string? systemName, byte[] sid, StringBuilder? name, ref int nameLength,
            StringBuilder? domainName, ref int domainLength, out int use);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool ConvertSidToStringSidW(byte[] sid, out IntPtr text);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool ConvertStringSidToSidW(string text, out IntPtr sid);

        [DllImport(Library, ExactSpelling = true)]
        public static extern int GetLengthSid(IntPtr sid);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool AllocateAndInitializeSid(ref SidIdentifierAuthority authority, byte subAuthorityCount,
            int subAuthority0, int subAuthority1, int subAuthority2, int subAuthority3, int subAuthority4, int subAuthority5, int subAuthority6, int subAuthority7, out IntPtr sid);

        [DllImport(Library, ExactSpelling = true)]
        public static extern IntPtr FreeSid(IntPtr sid);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CheckTokenMembership(IntPtr token, IntPtr sid, [MarshalAs(UnmanagedType.Bool)] out bool isMember);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern uint GetNamedSecurityInfoW(string objectName, int objectType, uint securityInfo,
            out IntPtr owner, out IntPtr group, out IntPtr dacl, out IntPtr sacl, out IntPtr securityDescriptor);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint GetSecurityInfo(SafeFileHandle handle, int objectType, uint securityInfo,
            out IntPtr owner, out IntPtr group, out IntPtr dacl, out IntPtr sacl, out IntPtr securityDescriptor);

        [DllImport(Library, ExactSpelling = true)]
        public static extern uint SetSecurityInfo(SafeFileHandle handle, int objectType, uint securityInfo, IntPtr owner, IntPtr group, IntPtr dacl, IntPtr sacl);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int RegOpenKeyExW(IntPtr hKey, string lpSubKey, int ulOptions, int samDesired, out IntPtr phkResult);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int RegQueryValueExW(IntPtr hKey, string lpValueName, IntPtr lpReserved, out int lpType, byte[] lpData, ref int lpcbData);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int RegEnumKeyExW(IntPtr hKey, int dwIndex, StringBuilder lpName, ref int lpcchName, IntPtr lpReserved, IntPtr lpClass, IntPtr lpcchClass, IntPtr lpftLastWriteTime);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int RegEnumValueW(IntPtr hKey, int dwIndex, StringBuilder lpValueName, ref int lpcchValueName, IntPtr lpReserved, out int lpType, byte[] lpData, ref int lpcbData);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern int RegQueryInfoKeyW(IntPtr hKey, StringBuilder? lpClass, IntPtr lpcchClass, IntPtr lpReserved, IntPtr lpcSubKeys, IntPtr lpcbMaxSubKeyLen,
            IntPtr lpcbMaxClassLen, out int lpcValues, out int lpcbMaxValueNameLen, out int lpcbMaxValueLen, IntPtr lpcbSecurityDescriptor, IntPtr lpftLastWriteTime);

        [DllImport(Library, ExactSpelling = true)]
        public static extern int RegCloseKey(IntPtr hKey);
    }

    /// <summary>A Service Control Manager or service handle, closed with CloseServiceHandle.</summary>
    [SupportedOSPlatform("windows")]
    internal sealed class SafeServiceHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public SafeServiceHandle()
            : base(true)
        {
        }

        protected override bool ReleaseHandle() => Advapi32.CloseServiceHandle(handle);
    }
}
