using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// A request the client sent and the server has not finished answering. Its reply is received by the
    /// client's one receive loop, which alone writes into the caller's buffer; a caller that cancels gets
    /// its task back at once, or, when the loop is writing into its buffer at that moment, as soon as that
    /// write ends, and never a byte written afterwards (the rest of the reply is read and dropped).
    /// </summary>
    internal abstract class NbdPendingRequest
    {
        private const int Waiting = 0;
        private const int Writing = 1;
        private const int Abandoned = 2;
        private const int AbandonAfterWrite = 3;
        private int _state;

        protected NbdPendingRequest(ushort command, long offset, uint length)
        {
            Command = command;
            Offset = offset;
            Length = length;
        }

        public ulong Handle { get; set; }

        public ushort Command { get; }

        public long Offset { get; }

        public uint Length { get; }

        public long End => Offset + Length;

        /// <summary>The first error the server reported for this request; the request fails with it when done.</summary>
        public NbdRequestException? Error { get; set; }

        /// <summary>Fails the connection when the reply takes longer than the request timeout.</summary>
        public CancellationTokenSource? Deadline { get; set; }

        /// <summary>The caller's cancellation, which abandons the request; let go once the request ends.</summary>
        public CancellationTokenRegistration Cancellation { get; set; }

        public string Describe() => $"{NbdProtocol.CommandName(Command)} of {Length} byte(s) at offset {Offset}";

        /// <summary>True when the receive loop may write into the caller's buffer now (the caller has not given up).</summary>
        public bool TryBeginWrite() => Interlocked.CompareExchange(ref _state, Writing, Waiting) == Waiting;

        public void EndWrite()
        {
            if (Interlocked.CompareExchange(ref _state, Waiting, Writing) == AbandonAfterWrite)
            {
                Volatile.Write(ref _state, Abandoned);
                SetCanceled();
            }
        }

        /// <summary>The caller's cancellation: the reply, when it comes, is dropped.</summary>
        public void Abandon()
        {
            while (true)
            {
                int state = Volatile.Read(ref _state);
                if (state == Waiting && Interlocked.CompareExchange(ref _state, Abandoned, Waiting) == Waiting)
                {
                    SetCanceled();
                    return;
                }

                if (state == Writing && Interlocked.CompareExchange(ref _state, AbandonAfterWrite, Writing) == Writing)
                {
                    return; // EndWrite cancels
                }

                if (state == Abandoned || state == AbandonAfterWrite)
                {
                    return;
                }
            }
        }

        /// <summary>Ends the request with <paramref name="error"/>, or with its result when null.</summary>
        public void Finish(Exception? error)
        {
            Deadline?.Dispose();
            Cancellation.Dispose();
            if (error != null)
            {
                SetException(error);
            }
            else if (Error != null)
            {
                SetException(Error);
            }
            else
            {
                SetResult();
            }
        }

        protected abstract void SetResult();

        protected abstract void SetException(Exception error);

        protected abstract void SetCanceled();
    }

    internal abstract class NbdPendingRequest<T> : NbdPendingRequest
    {
        private readonly TaskCompletionSource<T> _completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);

        protected NbdPendingRequest(ushort command, long offset, uint length)
            : base(command, offset, length)
        {
        }

        public Task<T> Task => _completion.Task;

        protected abstract T Result();

        protected override void SetResult() => _completion.TrySetResult(Result());

        protected override void SetException(Exception error) => _completion.TrySetException(error);

        protected override void SetCanceled() => _completion.TrySetCanceled();
    }

    /// <summary>NBD_CMD_READ into the caller's buffer; <see cref="Covered"/> checks that the content chunks tile the range.</summary>
    internal sealed class NbdReadRequest : NbdPendingRequest<bool>
    {
        public NbdReadRequest(long offset, byte[] buffer, int bufferOffset, int count)
            : base(NbdProtocol.CmdRead, offset, (uint)count)
        {
            Buffer = buffer;
            BufferOffset = bufferOffset;
        }

        public byte[] Buffer { get; }

        public int BufferOffset { get; }

        public NbdRangeSet Covered { get; } = new NbdRangeSet();

        protected override bool Result() => true;
    }

    /// <summary>NBD_CMD_BLOCK_STATUS; the extents of each context as received.</summary>
    internal sealed class NbdBlockStatusRequest : NbdPendingRequest<NbdBlockStatus>
    {
        public NbdBlockStatusRequest(long offset, uint length)
            : base(NbdProtocol.CmdBlockStatus, offset, length)
        {
        }

        public Dictionary<string, IReadOnlyList<NbdExtent>> Contexts { get; } = new Dictionary<string, IReadOnlyList<NbdExtent>>(StringComparer.Ordinal);

        protected override NbdBlockStatus Result()
        {
            long covered = Length;
            foreach (IReadOnlyList<NbdExtent> extents in Contexts.Values)
            {
                covered = Math.Min(covered, extents[extents.Count - 1].End - Offset);
            }

            return new NbdBlockStatus(Offset, Contexts, covered);
        }
    }

    /// <summary>
    /// Disjoint byte ranges, merged when they touch: which parts of a read the server has answered, so an
    /// overlapping chunk is caught. Chunks in order stay one range; a server that scatters a read into
    /// more than <see cref="MaxRanges"/> separate pieces is refused rather than tracked without bound.
    /// </summary>
    internal sealed class NbdRangeSet
    {
        public const int MaxRanges = 4096;

        // Arrays kept in order by hand: a List<long>'s search and insertion are compiled at run time, on the first read.
        private long[] _starts = new long[4];
        private long[] _ends = new long[4];
        private int _count;

        public long Total { get; private set; }

        /// <summary>Adds [start, start+length); false when it overlaps a range already added.</summary>
        public bool TryAdd(long start, long length)
        {
            long end = start + length;
            int index = FirstStartingAtOrAfter(start);
            if (index < _count && _starts[index] == start)
            {
                return false;
            }

            if ((index > 0 && _ends[index - 1] > start) || (index < _count && _starts[index] < end))
            {
                return false;
            }

            bool joinsPrevious = index > 0 && _ends[index - 1] == start;
            bool joinsNext = index < _count && _starts[index] == end;
            if (joinsPrevious && joinsNext)
            {
                _ends[index - 1] = _ends[index];
                RemoveAt(index);
            }
            else if (joinsPrevious)
            {
                _ends[index - 1] = end;
            }
            else if (joinsNext)
            {
                _starts[index] = start;
            }
            else
            {
                if (_count >= MaxRanges)
                {
                    throw new NbdProtocolViolation($"it scattered one read into more than {MaxRanges} separate pieces");
                }

                InsertAt(index, start, end);
            }

            Total += length;
            return true;
        }

        private int FirstStartingAtOrAfter(long start)
        {
            int low = 0;
            int high = _count;
            while (low < high)
            {
                int middle = (low + high) >> 1;
                if (_starts[middle] < start)
                {
                    low = middle + 1;
                }
                else
                {
                    high = middle;
                }
            }

            return low;
        }

        private void RemoveAt(int index)
        {
            Array.Copy(_starts, index + 1, _starts, index, _count - index - 1);
            Array.Copy(_ends, index + 1, _ends, index, _count - index - 1);
            _count--;
        }

        private void InsertAt(int index, long start, long end)
        {
            if (_count == _starts.Length)
            {
                _starts = Doubled(_starts);
                _ends = Doubled(_ends);
            }

            Array.Copy(_starts, index, _starts, index + 1, _count - index);
            Array.Copy(_ends, index, _ends, index + 1, _count - index);
            _starts[index] = start;
            _ends[index] = end;
            _count++;
        }

        private static long[] Doubled(long[] values)
        {
            var doubled = new long[values.Length * 2];
            Array.Copy(values, doubled, values.Length);
            return doubled;
        }
    }
}
