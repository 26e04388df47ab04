using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Native
{
    /// <summary>authz.dll: another account's effective access to an object.</summary>
    [SupportedOSPlatform("windows")]
    internal static class Authz
    {
        private const string Library = "authz.dll";

        public const int AuthzRmFlagNoAudit = 0x1;
        public const uint MaximumAllowed = 0x02000000;

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

        [DllImport(Library, CharSet = CharSet.Unicode, SetLastError = true)]
        public static extern bool AuthzInitializeResourceManager(int flags, IntPtr accessCheck, IntPtr computeDynamicGroups,
            IntPtr freeDynamicGroups, string? name, out IntPtr resourceManager);

        [DllImport(Library, SetLastError = true)]
        public static extern bool AuthzInitializeContextFromSid(int flags, byte[] sid, IntPtr resourceManager, IntPtr expirationTime,
            Luid identifier, IntPtr dynamicGroupArgs, out IntPtr clientContext);

        [DllImport(Library, SetLastError = true)]
        public static extern bool AuthzAccessCheck(int flags, IntPtr clientContext, ref AuthzAccessRequest request, IntPtr auditEvent,
            IntPtr securityDescriptor, IntPtr optionalSecurityDescriptors, int optionalCount, ref AuthzAccessReply reply, IntPtr accessCheckResults);

        [DllImport(Library)]
        public static extern bool AuthzFreeContext(IntPtr clientContext);

        [DllImport(Library)]
        public static extern bool AuthzFreeResourceManager(IntPtr resourceManager);
    }
}
