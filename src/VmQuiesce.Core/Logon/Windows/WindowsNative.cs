using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>advapi32 (SCM, LSA, security), netapi32, authz and kernel32 declarations for the service-logon backend.</summary>
    [SupportedOSPlatform("windows")]
    internal static class WindowsNative
    {
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

        public const int AuthzRmFlagNoAudit = 0x1;
        public const uint MaximumAllowed = 0x02000000;

        public const int ErrorAccessDenied = 5;
        public const int ErrorInsufficientBuffer = 122;
        public const int ErrorServiceDoesNotExist = 1060;
        public const int ErrorServiceNotActive = 1062;
        public const int ErrorLogonFailure = 1326;
        public const int ErrorNoneMapped = 1332;
        public const int ErrorLogonTypeNotGranted = 1385;
        public const int NerrUserNotFound = 2221;

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
        public struct Luid
        {
            public uint LowPart;
            public int HighPart;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct AuthzAccessRequest
        {
            public uint DesiredAccess;
            public IntPtr PrincipalSelfSid;
            public IntPtr ObjectTypeList;
            public uint ObjectTypeListLength;
            public IntPtr OptionalArguments;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct AuthzAccessReply
        {
            public uint ResultListLength;
            public IntPtr GrantedAccessMask;
            public IntPtr SaclEvaluationResults;
            public IntPtr Error;
        }

        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        public struct Trustee
        {
            public IntPtr MultipleTrustee;
            public int MultipleTrusteeOperation;
            public int TrusteeForm;
            public int TrusteeType;
            public IntPtr Name;
        }

        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        public struct ExplicitAccess
        {
            public uint AccessPermissions;
            public int AccessMode;
            public uint Inheritance;
            public Trustee Trustee;
        }

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern IntPtr OpenSCManagerW(string? machineName, string? databaseName, uint desiredAccess);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern IntPtr OpenServiceW(IntPtr scManager, string serviceName, uint desiredAccess);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool GetServiceKeyNameW(IntPtr scManager, string displayName, StringBuilder? serviceName, ref int length);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool QueryServiceConfigW(IntPtr service, IntPtr config, int size, out int needed);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool ChangeServiceConfigW(IntPtr service, uint serviceType, uint startType, uint errorControl,
            string? binaryPathName, string? loadOrderGroup, IntPtr tagId, string? dependencies, string? serviceStartName, IntPtr password, string? displayName);

        [DllImport("advapi32.dll", SetLastError = true)]
        public static extern bool ControlService(IntPtr service, uint control, out ServiceStatus status);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool StartServiceW(IntPtr service, int argumentCount, IntPtr arguments);

        [DllImport("advapi32.dll", SetLastError = true)]
        public static extern bool QueryServiceStatus(IntPtr service, out ServiceStatus status);

        [DllImport("advapi32.dll", SetLastError = true)]
        public static extern bool CloseServiceHandle(IntPtr handle);

        [DllImport("advapi32.dll")]
        public static extern uint LsaOpenPolicy(IntPtr systemName, ref LsaObjectAttributes attributes, uint desiredAccess, out IntPtr policy);

        [DllImport("advapi32.dll")]
        public static extern uint LsaEnumerateAccountRights(IntPtr policy, byte[] accountSid, out IntPtr rights, out uint count);

        [DllImport("advapi32.dll")]
        public static extern uint LsaAddAccountRights(IntPtr policy, byte[] accountSid, LsaUnicodeString[] rights, uint count);

        [DllImport("advapi32.dll")]
        public static extern uint LsaNtStatusToWinError(uint status);

        [DllImport("advapi32.dll")]
        public static extern uint LsaFreeMemory(IntPtr buffer);

        [DllImport("advapi32.dll")]
        public static extern uint LsaClose(IntPtr policy);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool LogonUserW(string userName, string? domain, IntPtr password, int logonType, int logonProvider, out IntPtr token);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool LookupAccountNameW(string? systemName, string accountName, byte[]? sid, ref int sidLength,
            StringBuilder? domainName, ref int domainLength, out int use);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool LookupAccountSidW(string? systemName, byte[] sid, StringBuilder? name, ref int nameLength,
            StringBuilder? domainName, ref int domainLength, out int use);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool ConvertSidToStringSidW(byte[] sid, out IntPtr text);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool ConvertStringSidToSidW(string text, out IntPtr sid);

        [DllImport("advapi32.dll")]
        public static extern int GetLengthSid(IntPtr sid);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode)]
        public static extern uint GetNamedSecurityInfoW(string objectName, int objectType, uint securityInfo,
            out IntPtr owner, out IntPtr group, out IntPtr dacl, out IntPtr sacl, out IntPtr securityDescriptor);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode)]
        public static extern uint SetNamedSecurityInfoW(string objectName, int objectType, uint securityInfo,
            IntPtr owner, IntPtr group, IntPtr dacl, IntPtr sacl);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode)]
        public static extern uint SetEntriesInAclW(uint count, ExplicitAccess[] entries, IntPtr oldAcl, out IntPtr newAcl);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool ConvertStringSecurityDescriptorToSecurityDescriptorW(string sddl, uint revision, out IntPtr securityDescriptor, IntPtr size);

        [DllImport("advapi32.dll", SetLastError = true)]
        public static extern bool GetSecurityDescriptorDacl(IntPtr securityDescriptor, out bool present, out IntPtr dacl, out bool defaulted);

        [DllImport("netapi32.dll", CharSet = CharSet.Unicode)]
        public static extern int NetUserGetLocalGroups(string? serverName, string userName, int level, int flags,
            out IntPtr buffer, int preferredMaximumLength, out int entriesRead, out int totalEntries);

        [DllImport("netapi32.dll")]
        public static extern int NetApiBufferFree(IntPtr buffer);

        [DllImport("authz.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool AuthzInitializeResourceManager(int flags, IntPtr accessCheck, IntPtr computeDynamicGroups,
            IntPtr freeDynamicGroups, string? name, out IntPtr resourceManager);

        [DllImport("authz.dll", SetLastError = true)]
        public static extern bool AuthzInitializeContextFromSid(int flags, byte[] sid, IntPtr resourceManager, IntPtr expirationTime,
            Luid identifier, IntPtr dynamicGroupArgs, out IntPtr clientContext);

        [DllImport("authz.dll", SetLastError = true)]
        public static extern bool AuthzAccessCheck(int flags, IntPtr clientContext, ref AuthzAccessRequest request, IntPtr auditEvent,
            IntPtr securityDescriptor, IntPtr optionalSecurityDescriptors, int optionalCount, ref AuthzAccessReply reply, IntPtr accessCheckResults);

        [DllImport("authz.dll")]
        public static extern bool AuthzFreeContext(IntPtr clientContext);

        [DllImport("authz.dll")]
        public static extern bool AuthzFreeResourceManager(IntPtr resourceManager);

        [DllImport("kernel32.dll", SetLastError = true)]
        public static extern bool CloseHandle(IntPtr handle);

        [DllImport("kernel32.dll")]
        public static extern IntPtr LocalFree(IntPtr memory);

        /// <summary>The system's text for a Win32 error code, with the code.</summary>
        public static string Describe(int error) => $"{new System.ComponentModel.Win32Exception(error).Message} (error {error})";
    }
}
