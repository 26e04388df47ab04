using System;

namespace VmQuiesce.Core
{
    /// <summary>Bytes a backup, restore or verification has moved so far; the rate and the time left follow from them.</summary>
    public class TransferProgress
    {
        public TransferProgress(string status, long bytesDone, long bytesTotal, TimeSpan elapsed)
        {
            Status = status;
            BytesDone = bytesDone;
            BytesTotal = bytesTotal;
            Elapsed = elapsed;
        }

        /// <summary>What is happening now, in words (a backup's or restore's phase, e.g. "Copying" or "Writing").</summary>
        public string Status { get; }

        public long BytesDone { get; }

        public long BytesTotal { get; }

        public TimeSpan Elapsed { get; }

        public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesDone / Elapsed.TotalSeconds : 0;

        public TimeSpan? TimeLeft => BytesPerSecond > 0 && BytesTotal >= BytesDone ? TimeSpan.FromSeconds((BytesTotal - BytesDone) / BytesPerSecond) : (TimeSpan?)null;
    }
}
