using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace VmQuiesce.Core.Native
{
    /// <summary>oleaut32.dll: BSTRs.</summary>
    [SupportedOSPlatform("windows")]
    internal static class OleAut32
    {
        [DllImport("oleaut32.dll", ExactSpelling = true)]
        public static extern void SysFreeString(IntPtr bstr);
    }
}
