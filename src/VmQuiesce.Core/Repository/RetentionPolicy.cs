using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace VmQuiesce.Core.Repository
{
    /// <summary>
    /// Which restore points of one VM to keep, with restic's semantics: each rule is applied on its own to
    /// the VM's points, newest first, and a point is kept when any rule keeps it.
    /// KeepLast n keeps the n newest points. KeepDaily n keeps the newest point of each of the n most
    /// recent days that have points; KeepWeekly the same per ISO week (Monday to Sunday), KeepMonthly per
    /// calendar month. Days, weeks and months are taken in <see cref="TimeZone"/> (local time by default).
    /// </summary>
    public sealed class RetentionPolicy
    {
        public int KeepLast { get; init; }

        public int KeepDaily { get; init; }

        public int KeepWeekly { get; init; }

        public int KeepMonthly { get; init; }

        public TimeZoneInfo TimeZone { get; init; } = TimeZoneInfo.Local;

        /// <summary>A policy with no rule would remove everything: callers reject it.</summary>
        public bool IsEmpty => KeepLast <= 0 && KeepDaily <= 0 && KeepWeekly <= 0 && KeepMonthly <= 0;

        public override string ToString()
        {
            var rules = new List<string>();
            if (KeepLast > 0) { rules.Add($"KeepLast {KeepLast}"); }
            if (KeepDaily > 0) { rules.Add($"KeepDaily {KeepDaily}"); }
            if (KeepWeekly > 0) { rules.Add($"KeepWeekly {KeepWeekly}"); }
            if (KeepMonthly > 0) { rules.Add($"KeepMonthly {KeepMonthly}"); }
            return string.Join(", ", rules);
        }

        /// <summary>The points of <paramref name="points"/> this policy keeps; apply it to one VM's points at a time.</summary>
        public ISet<RestorePoint> SelectKept(IEnumerable<RestorePoint> points)
        {
            var newestFirst = points.OrderByDescending(point => point.StartTime).ThenByDescending(point => point.Id, StringComparer.Ordinal).ToList();
            var kept = new HashSet<RestorePoint>();
            foreach (RestorePoint point in newestFirst.Take(Math.Max(0, KeepLast)))
            {
                kept.Add(point);
            }

            KeepNewestPerBucket(newestFirst, KeepDaily, local => local.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), kept);
            KeepNewestPerBucket(newestFirst, KeepWeekly, IsoWeek, kept);
            KeepNewestPerBucket(newestFirst, KeepMonthly, local => local.ToString("yyyy-MM", CultureInfo.InvariantCulture), kept);
            return kept;
        }

        private void KeepNewestPerBucket(IReadOnlyList<RestorePoint> newestFirst, int count, Func<DateTime, string> bucketOf, HashSet<RestorePoint> kept)
        {
            string? lastBucket = null;
            int buckets = 0;
            foreach (RestorePoint point in newestFirst)
            {
                if (buckets >= count)
                {
                    return;
                }

                string bucket = bucketOf(TimeZoneInfo.ConvertTimeFromUtc(point.StartTime, TimeZone));
                if (bucket != lastBucket)
                {
                    kept.Add(point);
                    lastBucket = bucket;
                    buckets++;
                }
            }
        }

        private static string IsoWeek(DateTime local)
        {
            // ISO 8601: the week belongs to the year of its Thursday.
            DateTime thursday = local.Date.AddDays(3 - (((int)local.DayOfWeek + 6) % 7));
            int week = ((thursday.DayOfYear - 1) / 7) + 1;
            return thursday.Year.ToString(CultureInfo.InvariantCulture) + "-W" + week.ToString("00", CultureInfo.InvariantCulture);
        }
    }
}
