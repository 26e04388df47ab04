using System;
using System.Globalization;

namespace VmQuiesce
{
    /// <summary>Human units for messages and progress (the format file has its own for views).</summary>
    internal static class Units
    {
        private static readonly string[] ByteUnits = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };

        public static string Bytes(double bytes)
        {
            int unit = 0;
            while (Math.Abs(bytes) >= 1024 && unit < ByteUnits.Length - 1)
            {
                bytes /= 1024;
                unit++;
            }

            return unit == 0
                ? bytes.ToString("0", CultureInfo.CurrentCulture) + " B"
                : bytes.ToString("0.0", CultureInfo.CurrentCulture) + " " + ByteUnits[unit];
        }
    }
}
