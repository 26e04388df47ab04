using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Sources.WindowsVss.Native
{
    /// <summary>
    /// Raw COM calls: objects are held as IntPtr and their vtable slots called through function pointers,
    /// because VSS's sub-objects answer QueryInterface with E_NOTIMPL and break runtime-callable wrappers.
    /// </summary>
    [SupportedOSPlatform("windows")]
    internal static unsafe class Com
    {
        private const int IUnknownRelease = 2;

        public static void* Slot(IntPtr instance, int index) => (*(void***)instance)[index];

        public static void Release(IntPtr instance)
        {
            if (instance != IntPtr.Zero)
            {
                _ = ((delegate* unmanaged[Stdcall]<IntPtr, uint>)Slot(instance, IUnknownRelease))(instance);
            }
        }

        public static void Check(int hresult, string method)
        {
            if (hresult < 0)
            {
                throw new VssCallException(method, hresult);
            }
        }

        /// <summary>Reads a BSTR the callee allocated and frees it (SysFreeString).</summary>
        public static string? TakeBstr(IntPtr bstr)
        {
            if (bstr == IntPtr.Zero)
            {
                return null;
            }

            try
            {
                return Marshal.PtrToStringBSTR(bstr);
            }
            finally
            {
                OleAut32.SysFreeString(bstr);
            }
        }

        /// <summary>Reads a BSTR that a structure owns (freed with the structure).</summary>
        public static string? PeekBstr(IntPtr bstr) => bstr == IntPtr.Zero ? null : Marshal.PtrToStringBSTR(bstr);

        public static string? PeekString(IntPtr wideString) => wideString == IntPtr.Zero ? null : Marshal.PtrToStringUni(wideString);
    }
}
