using System;
using System.Globalization;

namespace VmQuiesce
{
    /// <summary>
    /// Human units for messages, progress and the views in VmQuiesce.Format.ps1xml (which call
    /// [VmQuiesce.Units]::Bytes(...) so every view formats sizes, rates and durations the same way).
    /// </summary>
    public static class Units
    {
        private static readonly string[] ByteUnits = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };

        /// <summary>1536 -> "1.5 KiB"; below 1 KiB in bytes ("512 B").</summary>
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

        /// <summary>A transfer rate: "412.3 MiB/s".</summary>
        public static string Rate(double bytesPerSecond) => Bytes(bytesPerSecond) + "/s";

        /// <summary>A moment in local time, ISO 8601 whatever the culture: "2026-11-24 18:44:18" (never "11/24/26 6:44 PM").</summary>
        public static string Time(DateTime time) => time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

        /// <summary>"2h 05m", "3m 07s", "0.5s" for a number of seconds (what output objects' Duration holds).</summary>
        public static string Duration(double seconds) => Duration(TimeSpan.FromSeconds(seconds));

        private static string Duration(TimeSpan duration) =>
            duration.TotalHours >= 1 ? string.Format(CultureInfo.CurrentCulture, "{0}h {1:00}m", (int)Math.Floor(duration.TotalHours), duration.Minutes)
            : duration.TotalMinutes >= 1 ? string.Format(CultureInfo.CurrentCulture, "{0}m {1:00}s", duration.Minutes, duration.Seconds)
            : duration.TotalSeconds.ToString("0.0", CultureInfo.CurrentCulture) + "s";
    }
}
