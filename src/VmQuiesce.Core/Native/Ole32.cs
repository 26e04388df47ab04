using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Native
{
    /// <summary>ole32.dll: COM initialization and process-wide COM security.</summary>
    [SupportedOSPlatform("windows")]
    internal static class Ole32
    {
        private const string Library = "ole32.dll";

        public const int CoinitMultithreaded = 0;
        public const int RpcCAuthnLevelPktPrivacy = 6;
        public const int RpcCImpLevelImpersonate = 3;
        public const int EoacDynamicCloaking = 0x40;
        public const int RpcETooLate = unchecked((int)0x80010119);

        [DllImport(Library, ExactSpelling = true)]
        public static extern int CoInitializeEx(IntPtr reserved, int coInit);

        [DllImport(Library, ExactSpelling = true)]
        public static extern int CoInitializeSecurity(IntPtr securityDescriptor, int authServiceCount, IntPtr authServices, IntPtr reserved1,
            int authenticationLevel, int impersonationLevel, IntPtr authList, int capabilities, IntPtr reserved3);
    }
}
