using System;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;

namespace VmQuiesce.Core.Logon
{
    /// <summary>
    /// The only place a password leaves its SecureString: as UTF-8 bytes or a native UTF-16 buffer,
    /// each cleared by the caller's finally. Never as a managed string.
    /// </summary>
    internal static class SecretText
    {
        public static bool IsEmpty(SecureString? secret) => secret == null || secret.Length == 0;

        /// <summary>UTF-8 bytes of the secret; the caller must Array.Clear them when done.</summary>
        public static byte[] ToUtf8(SecureString secret)
        {
            IntPtr native = Marshal.SecureStringToGlobalAllocUnicode(secret);
            char[] chars = new char[secret.Length];
            try
            {
                Marshal.Copy(native, chars, 0, chars.Length);
                return Encoding.UTF8.GetBytes(chars);
            }
            finally
            {
                Array.Clear(chars, 0, chars.Length);
                Marshal.ZeroFreeGlobalAllocUnicode(native);
            }
        }
    }
}
