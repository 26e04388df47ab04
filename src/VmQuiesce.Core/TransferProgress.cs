using System;

namespace VmQuiesce.Core
{
    /// <summary>Bytes a backup or restore has moved so far; the rate and the time left follow from them.</summary>
    public abstract class TransferProgress
    {
        protected TransferProgress(string phase, long bytesDone, long bytesTotal, TimeSpan elapsed)
        {
            Phase = phase;
            BytesDone = bytesDone;
            BytesTotal = bytesTotal;
            Elapsed = elapsed;
        }

        /// <summary>What is happening now, e.g. "Copying" or "Writing".</summary>
        public string Phase { get; }

        public long BytesDone { get; }

        public long BytesTotal { get; }

        public TimeSpan Elapsed { get; }

        public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesDone / Elapsed.TotalSeconds : 0;

        public TimeSpan? TimeLeft => BytesPerSecond > 0 && BytesTotal >= BytesDone ? TimeSpan.FromSeconds((BytesTotal - BytesDone) / BytesPerSecond) : (TimeSpan?)null;
    }
}
