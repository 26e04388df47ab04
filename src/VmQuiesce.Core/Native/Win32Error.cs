using System.ComponentModel;

namespace VmQuiesce.Core.Native
{
    /// <summary>Win32 error codes the module acts on, and their text.</summary>
    internal static class Win32Error
    {
        public const int Success = 0;
        public const int InvalidFunction = 1;
        public const int FileNotFound = 2;
        public const int AccessDenied = 5;
        public const int PathNotFound = 3;
        public const int SharingViolation = 32;
        public const int NotSupported = 50;
        public const int InvalidParameter = 87;
        public const int InsufficientBuffer = 122;
        public const int MoreData = 234;
        public const int NoMoreItems = 259;
        public const int ServiceDoesNotExist = 1060;
        public const int ServiceNotActive = 1062;
        public const int LogonFailure = 1326;
        public const int NoneMapped = 1332;
        public const int LogonTypeNotGranted = 1385;

        /// <summary>The system's text for a Win32 error code, with the code.</summary>
        public static string Describe(int error) => $"{new Win32Exception(error).Message} (error {error})";
    }
}
