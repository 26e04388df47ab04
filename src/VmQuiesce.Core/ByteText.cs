using System.Globalization;

namespace VmQuiesce.Core
{
    /// <summary>Sizes in messages as people read them: "512 B", "97.7 KiB", "4 MiB".</summary>
    internal static class ByteText
    {
        private static readonly string[] Units = { "B", "KiB", "MiB", "GiB", "TiB" };

        public static string Of(long bytes)
        {
            double value = bytes;
            int unit = 0;
            while (value >= 1024 && unit < Units.Length - 1)
            {
                value /= 1024;
                unit++;
            }

            return value.ToString(unit == 0 ? "0" : "0.#", CultureInfo.InvariantCulture) + " " + Units[unit];
        }
    }
}
