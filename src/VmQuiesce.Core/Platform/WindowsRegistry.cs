using System;
using System.Collections.Generic;
using System.Runtime.Versioning;
using System.Text;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Reads values under HKEY_LOCAL_MACHINE through advapi32 directly: netstandard2.0 has no
    /// registry API, and the Microsoft.Win32.Registry package would have to ship beside the module.
    /// </summary>
    [SupportedOSPlatform("windows")]
    internal static class WindowsRegistry
    {
        private const int RegSz = 1;
        private const int RegExpandSz = 2;
        private const int RegBinary = 3;
        private const int MaxKeyNameLength = 255;
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
            if (!TryOpen(HKeyLocalMachine, subKey, Advapi32.KeyQueryValue, view, subKey, out IntPtr key))
            {
                return null;
            }

            try
            {
                int size = 256;
                while (true)
                {
                    var buffer = new byte[size];
                    int status = Advapi32.RegQueryValueExW(key, valueName, IntPtr.Zero, out int type, buffer, ref size);
                    if (status == Win32Error.MoreData)
                    {
                        continue;
                    }

                    if (status == Win32Error.FileNotFound)
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
                _ = Advapi32.RegCloseKey(key);
            }
        }

        /// <summary>
        /// The REG_BINARY values of every direct subkey of HKLM\<paramref name="subKey"/>, empty when the key
        /// does not exist. Values written while this reads may be missed or seen twice, never torn.
        /// </summary>
        public static IReadOnlyList<(string SubKey, string Name, byte[] Data)> ReadLocalMachineBinaryValuesOfSubKeys(string subKey, View view)
        {
            var values = new List<(string, string, byte[])>();
            if (!TryOpen(HKeyLocalMachine, subKey, Advapi32.KeyEnumerateSubKeys, view, subKey, out IntPtr key))
            {
                return values;
            }

            try
            {
                var name = new StringBuilder(MaxKeyNameLength + 1);
                for (int index = 0; ; index++)
                {
                    int length = name.Capacity;
                    int status = Advapi32.RegEnumKeyExW(key, index, name, ref length, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero);
                    if (status == Win32Error.NoMoreItems)
                    {
                        return values;
                    }

                    ThrowOnError(status, subKey);
                    string child = name.ToString(0, length);
                    AddBinaryValues(key, child, subKey + "\\" + child, view, values);
                }
            }
            finally
            {
                _ = Advapi32.RegCloseKey(key);
            }
        }

        private static void AddBinaryValues(IntPtr parent, string child, string path, View view, List<(string, string, byte[])> values)
        {
            if (!TryOpen(parent, child, Advapi32.KeyQueryValue, view, path, out IntPtr key))
            {
                return;
            }

            try
            {
                int status = Advapi32.RegQueryInfoKeyW(key, null, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero,
                    out int _, out int longestName, out int longestData, IntPtr.Zero, IntPtr.Zero);
                ThrowOnError(status, path);
                var name = new StringBuilder(longestName + 1);
                var data = new byte[Math.Max(longestData, 1)];
                for (int index = 0; ; index++)
                {
                    int nameLength = name.Capacity;
                    int dataLength = data.Length;
                    status = Advapi32.RegEnumValueW(key, index, name, ref nameLength, IntPtr.Zero, out int type, data, ref dataLength);
                    if (status == Win32Error.MoreData)
                    {
                        // A longer value was written meanwhile: make room and read this index again.
                        name.Capacity = Math.Max(name.Capacity, nameLength + 1) * 2;
                        data = new byte[Math.Max(data.Length, dataLength) * 2];
                        index--;
                        continue;
                    }

                    if (status == Win32Error.NoMoreItems)
                    {
                        return;
                    }

                    ThrowOnError(status, path);
                    if (type == RegBinary)
                    {
                        var copy = new byte[dataLength];
                        Array.Copy(data, copy, dataLength);
                        values.Add((child, name.ToString(0, nameLength), copy));
                    }
                }
            }
            finally
            {
                _ = Advapi32.RegCloseKey(key);
            }
        }

        /// <summary>
        /// Opens <paramref name="subKey"/> under <paramref name="parent"/> in <paramref name="view"/> (WOW64 does not
        /// remember the view on a parent's handle, so every open asks for it); false when it does not exist.
        /// </summary>
        private static bool TryOpen(IntPtr parent, string subKey, int access, View view, string path, out IntPtr key)
        {
            int status = Advapi32.RegOpenKeyExW(parent, subKey, 0, access | (int)view, out key);
            if (status == Win32Error.FileNotFound)
            {
                return false;
            }

            ThrowOnError(status, path);
            return true;
        }

        private static void ThrowOnError(int status, string what)
        {
            if (status != Win32Error.Success)
            {
                throw new VmQuiesceException("RegistryReadFailed", FailureKind.ReadError,
                    $"Could not read HKLM\\{what}: Win32 error {status}.", what, new System.ComponentModel.Win32Exception(status));
            }
        }
    }
}
