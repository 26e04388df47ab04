using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Reads string values under HKEY_LOCAL_MACHINE through advapi32 directly: netstandard2.0 has no
    /// registry API, and the Microsoft.Win32.Registry package would have to ship beside the module.
    /// </summary>
    [SupportedOSPlatform("windows")]
    internal static class WindowsRegistry
    {
        private const int ErrorSuccess = 0;
        private const int ErrorFileNotFound = 2;
        private const int ErrorMoreData = 234;
        private const int KeyQueryValue = 0x0001;
        private const int RegSz = 1;
        private const int RegExpandSz = 2;
        // Sign-extended on 64-bit, as the Windows headers define it ((HKEY)(ULONG_PTR)(LONG)0x80000002).
        private static readonly IntPtr HKeyLocalMachine = new IntPtr(unchecked((int)0x80000002));

        /// <summary>Which registry view to read on 64-bit Windows (the 32-bit one is Wow6432Node).</summary>
        public enum View
        {
            Registry64 = 0x0100,
            Registry32 = 0x0200,
        }

        /// <summary>
        /// The REG_SZ or REG_EXPAND_SZ (expanded) value, or null when the key or value does not exist
        /// or holds another type. Other failures (such as access denied) throw with the Win32 code.
        /// </summary>
        public static string? ReadLocalMachineString(string subKey, string valueName, View view)
        {
            int status = RegOpenKeyExW(HKeyLocalMachine, subKey, 0, KeyQueryValue | (int)view, out IntPtr key);
            if (status == ErrorFileNotFound)
            {
                return null;
            }

            ThrowOnError(status, subKey);
            try
            {
                int size = 256;
                while (true)
                {
                    var buffer = new byte[size];
                    status = RegQueryValueExW(key, valueName, IntPtr.Zero, out int type, buffer, ref size);
                    if (status == ErrorMoreData)
                    {
                        continue;
                    }

                    if (status == ErrorFileNotFound)
                    {
                        return null;
                    }

                    ThrowOnError(status, subKey + "\\" + valueName);
                    if (type != RegSz && type != RegExpandSz)
                    {
                        return null;
                    }

                    string value = Encoding.Unicode.GetString(buffer, 0, Math.Min(size, buffer.Length)).TrimEnd('\0');
                    return type == RegExpandSz ? Environment.ExpandEnvironmentVariables(value) : value;
                }
            }
            finally
            {
                _ = RegCloseKey(key);
            }
        }

        private static void ThrowOnError(int status, string what)
        {
            if (status != ErrorSuccess)
            {
                throw new VmQuiesceException("RegistryReadFailed", FailureKind.ReadError,
                    $"Could not read HKLM\\{what}: Win32 error {status}.", what, new System.ComponentModel.Win32Exception(status));
            }
        }

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
        private static extern int RegOpenKeyExW(IntPtr hKey, string lpSubKey, int ulOptions, int samDesired, out IntPtr phkResult);

        [DllImport("advapi32.dll", CharSet = CharSet.Unicode, ExactSpelling = true)]
        private static extern int RegQueryValueExW(IntPtr hKey, string lpValueName, IntPtr lpReserved, out int lpType, byte[] lpData, ref int lpcbData);

        [DllImport("advapi32.dll", ExactSpelling = true)]
        private static extern int RegCloseKey(IntPtr hKey);
    }
}
