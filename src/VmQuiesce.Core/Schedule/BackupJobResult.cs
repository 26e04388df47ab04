using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Schedule
{
    /// <summary>One target of a job run that did not end in a restore point at the required consistency.</summary>
    public sealed class BackupJobFailure
    {
        public BackupJobFailure(string target, string errorId, string message)
        {
            Target = target;
            ErrorId = errorId;
            Message = message;
        }

        /// <summary>The VM's name, or the target as the schedule gives it when no VM was found for it.</summary>
        public string Target { get; }

        public string ErrorId { get; }

        public string Message { get; }

        /// <summary>The one line a scheduler's log shows for this VM.</summary>
        public override string ToString() => $"FAILED {Target}: {ErrorId}: {Message.Replace("\r", " ").Replace("\n", " ")}";
    }

    /// <summary>
    /// What one run of a backup job did, and the exit code the scheduler sees: <see cref="BackupSchedule.ExitSuccess"/>
    /// only when every VM got a restore point at the required consistency and the retention policy (if any)
    /// succeeded; <see cref="BackupSchedule.ExitVmFailed"/> when a VM did not; <see cref="BackupSchedule.ExitRetentionFailed"/>
    /// when only retention failed; <see cref="BackupSchedule.ExitCopyFailed"/> when only the copy step failed.
    /// </summary>
    public sealed class BackupJobResult
    {
        private readonly List<string> _log = new List<string>();

        public BackupJobResult(string name, DateTime startTime)
        {
            Name = name;
            StartTime = startTime;
        }

        public string Name { get; }

        /// <summary>Local time.</summary>
        public DateTime StartTime { get; }

        /// <summary>Local time.</summary>
        public DateTime EndTime { get; private set; }

        public List<RestorePoint> RestorePoints { get; } = new List<RestorePoint>();

        public List<BackupJobFailure> Failures { get; } = new List<BackupJobFailure>();

        /// <summary>Null without a retention policy, or when it did not run.</summary>
        public bool? RetentionSucceeded { get; private set; }

        public string? RetentionError { get; private set; }

        /// <summary>Null without a copy step, or when it did not run (no new restore point).</summary>
        public bool? CopySucceeded { get; private set; }

        public string? CopyError { get; private set; }

        /// <summary>The log file this run wrote, or null.</summary>
        public string? LogPath { get; private set; }

        public int ExitCode => Failures.Count > 0 ? BackupSchedule.ExitVmFailed
            : RetentionSucceeded == false ? BackupSchedule.ExitRetentionFailed
            : CopySucceeded == false ? BackupSchedule.ExitCopyFailed
            : BackupSchedule.ExitSuccess;

        public IReadOnlyList<string> LogLines => _log;

        public void Log(string line) => _log.Add(DateTime.Now.ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture) + " " + line);

        public void AddPoint(RestorePoint point)
        {
            RestorePoints.Add(point);
            Log($"OK {point.VmName}: restore point {point.Id}, {point.Consistency} consistency, {point.Size} bytes ({point.StoredBytes} new)." + ChangeTrackingText(point));
        }

        /// <summary>" Read: disk0 Incremental, disk1 Full (NoCheckpoint) verified." for a change-tracked point; else empty.</summary>
        private static string ChangeTrackingText(RestorePoint point) => point.ChangeTracking == null ? string.Empty :
            " Read: " + string.Join(", ", point.Files.Select(file => file.ChangeTrackingValue).OfType<ChangeTrackingRecord>()
                .Select(record => $"{record.Disk} {record}" + (record.Verified ? " verified" : string.Empty))) + ".";

        public BackupJobFailure AddFailure(string target, string errorId, string message)
        {
            var failure = new BackupJobFailure(target, errorId, message);
            Failures.Add(failure);
            Log(failure.ToString());
            return failure;
        }

        public void SetRetention(bool succeeded, string detail)
        {
            RetentionSucceeded = succeeded;
            RetentionError = succeeded ? null : detail;
            Log((succeeded ? "Retention: " : "FAILED retention: ") + detail);
        }

        public void SetCopy(bool succeeded, string detail)
        {
            CopySucceeded = succeeded;
            CopyError = succeeded ? null : detail;
            Log((succeeded ? "Copy: " : "FAILED copy: ") + detail);
        }

        /// <summary>Ends the run: the last log line names the exit code.</summary>
        public void Finish()
        {
            EndTime = DateTime.Now;
            Log($"Done: {RestorePoints.Count} restore point(s), {Failures.Count} VM(s) failed; exit code {ExitCode}.");
        }

        /// <summary>
        /// Writes the log as &lt;folder&gt;/&lt;name&gt;-&lt;start&gt;.log, readable only by the job's account (it names
        /// VMs and paths), never replacing another run's log, and never through a link another user made on the way
        /// (the folder is reached as <see cref="TrustedFolder.OpenForNewFiles"/> reaches it).
        /// </summary>
        public void WriteLog(string folder)
        {
            string name = $"{Name}-{StartTime.ToUniversalTime().ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}.log";
            string path = Path.Combine(folder, name);
            try
            {
                // Made private as it is created (Linux and macOS: 0600, exclusively, not through a link), not after.
                using (TrustedFolder logs = TrustedFolder.OpenForNewFiles(folder))
                using (CreatedFile file = logs.CreateNew(name, direct: false))
                {
                    byte[] text = new UTF8Encoding(false).GetBytes(string.Join("\n", _log) + "\n");
                    file.Stream.Write(text, 0, text.Length);
                }

                LogPath = path;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new VmQuiesceException("JobLogWriteFailed", FailureKind.WriteError, $"Cannot write the job's log file '{path}': {e.Message}", path, e);
            }
        }
    }
}
