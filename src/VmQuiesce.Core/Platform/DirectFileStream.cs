using System;
using System.Collections.Concurrent;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// A new file written past the page cache (Linux O_DIRECT): bytes go from an aligned staging buffer
    /// straight to the disk. A backup then neither copies every byte into the page cache (where fresh pages
    /// are the dearest part of a write, and dearer still in a VM whose freed memory went back to the
    /// host) nor evicts what the host's running VMs have cached. Write-only; it may seek forward to a block
    /// boundary (leaving a hole), so only the end of the file may be unaligned. <see cref="Flush"/> writes the
    /// tail (padded to a block, then truncated to the real length) and makes the file durable.
    /// </summary>
    internal sealed class DirectFileStream : Stream
    {
        /// <summary>O_DIRECT wants buffer, offset and length aligned to the logical block: 4096 covers 512 too.</summary>
        internal const int Alignment = 4096;

        /// <summary>Bytes per write call: large enough that the disk, not the call, sets the pace.</summary>
        internal const int StagingLength = 1 << 20;


        /// <summary>Staging buffers kept for reuse; more are made while many files are open at once, then freed.</summary>
        private const int PooledBuffers = 4;

        private static readonly ConcurrentBag<StagingBuffer> s_staging = new ConcurrentBag<StagingBuffer>();

        private readonly string _path;
        private int _fd;
        private StagingBuffer? _buffer;
        /// <summary>Bytes in the staging buffer, which start at file offset <see cref="_stagedAt"/>.</summary>
        private int _staged;
        private long _stagedAt;
        private long _position;
        private long _length;

        /// <summary>Where the last block written ends: past <see cref="_length"/> by the padding until truncated.</summary>
        private long _writtenEnd;

        private DirectFileStream(int fd, string path)
        {
            _fd = fd;
            _path = path;
        }

        public override bool CanRead => false;

        public override bool CanSeek => _fd >= 0;

        public override bool CanWrite => _fd >= 0;

        public override long Length => _length;

        /// <summary>Settable forward only, to a multiple of <see cref="Alignment"/>; what is skipped reads as zeros.</summary>
        public override long Position
        {
            get => _position;
            set
            {
                if (value < _position || value % Alignment != 0)
                {
                    throw new ArgumentOutOfRangeException(nameof(value), value, $"A direct-write file seeks only forward, to a multiple of {Alignment} bytes (now at {_position}).");
                }

                WriteStagedPadded();
                _position = value;
                _stagedAt = value;
            }
        }

        /// <summary>
        /// Creates <paramref name="path"/>, which must not exist, for direct writing; null when this is not
        /// Linux or its file system does not support O_DIRECT (the caller then writes through the page cache).
        /// </summary>
        public static DirectFileStream? TryCreateNew(string path)
        {
            // 64-bit only: off_t is then 64 bits in pwrite and ftruncate.
            if (!HostPlatform.IsLinux || !Environment.Is64BitProcess)
            {
                return null;
            }

            int flags = Libc.OpenWriteOnly | Libc.OpenCreate | Libc.OpenExclusive | Libc.OpenCloseOnExec | Libc.OpenDirect;
            int fd = Libc.open(path, flags, RegularFile.OwnerOnly);
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno == Libc.EINVAL) // this file system does not do O_DIRECT
                {
                    return null;
                }

                throw Failure("create", path, errno);
            }

            return new DirectFileStream(fd, path);
        }

        /// <summary>A direct-write stream over <paramref name="fd"/>, a new file opened with O_DIRECT; it closes the descriptor.</summary>
        internal static DirectFileStream FromDescriptor(int fd, string path) => new DirectFileStream(fd, path);

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (_fd < 0)
            {
                throw new ObjectDisposedException(nameof(DirectFileStream));
            }

            _buffer ??= s_staging.TryTake(out StagingBuffer? pooled) ? pooled : new StagingBuffer();
            while (count > 0)
            {
                int take = Math.Min(count, StagingLength - _staged);
                Marshal.Copy(buffer, offset, _buffer.Aligned + _staged, take);
                _staged += take;
                _position += take;
                _length = Math.Max(_length, _position);
                offset += take;
                count -= take;
                if (_staged == StagingLength)
                {
                    WriteStagedPadded();
                    _stagedAt = _position;
                }
            }
        }

        /// <summary>Writes what is still staged, truncates the block padding away and syncs the data to disk.</summary>
        public override void Flush()
        {
            if (_fd < 0)
            {
                throw new ObjectDisposedException(nameof(DirectFileStream));
            }

            WriteStagedPadded();
            if (_writtenEnd != _length)
            {
                Truncate(_length);
            }

            ReleaseBuffer();
            if (Libc.fdatasync(_fd) != 0)
            {
                throw Failure("sync", _path, Marshal.GetLastWin32Error());
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        /// <summary>Sets the file's length, to extend it with a hole or cut off the padding of its last block.</summary>
        public override void SetLength(long value)
        {
            WriteStagedPadded();
            Truncate(value);
            _length = value;
        }

        protected override void Dispose(bool disposing)
        {
            ReleaseBuffer();
            if (_fd >= 0)
            {
                Libc.close(_fd);
                _fd = -1;
            }

            base.Dispose(disposing);
        }


        private static unsafe void ZeroPadding(IntPtr start, int length)
        {
            byte* bytes = (byte*)start;
            for (int i = 0; i < length; i++)
            {
                bytes[i] = 0;
            }
        }

        /// <summary>Carries the errno as its HResult, as .NET's own IOExceptions do on Unix, so callers can tell a full disk.</summary>
        private static IOException Failure(string what, string path, int errno) =>
            new IOException($"Could not {what} '{path}' for direct writing: {new Win32Exception(errno).Message}.", errno);

        /// <summary>Writes the staged bytes, their last block padded with zeros, and empties the staging buffer.</summary>
        private void WriteStagedPadded()
        {
            if (_staged == 0)
            {
                return;
            }

            int length = (_staged + Alignment - 1) / Alignment * Alignment;
            ZeroPadding(_buffer!.Aligned + _staged, length - _staged);
            int done = 0;
            while (done < length)
            {
                long result = (long)Libc.pwrite(_fd, _buffer.Aligned + done, (UIntPtr)(uint)(length - done), _stagedAt + done);
                if (result < 0)
                {
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == Libc.EINTR)
                    {
                        continue;
                    }

                    throw Failure("write", _path, errno);
                }

                done += (int)result;
            }

            _staged = 0;
            _writtenEnd = Math.Max(_writtenEnd, _stagedAt + length);
        }

        private void Truncate(long length)
        {
            if (Libc.ftruncate(_fd, length) != 0)
            {
                throw Failure("truncate", _path, Marshal.GetLastWin32Error());
            }

            _writtenEnd = length;
        }

        private void ReleaseBuffer()
        {
            if (_buffer == null)
            {
                return;
            }

            if (s_staging.Count < PooledBuffers)
            {
                s_staging.Add(_buffer);
            }
            else
            {
                _buffer.Free();
            }

            _buffer = null;
        }

        /// <summary>Native memory aligned for O_DIRECT.</summary>
        private sealed class StagingBuffer
        {
            private readonly IntPtr _raw;

            public StagingBuffer()
            {
                _raw = Marshal.AllocHGlobal(StagingLength + Alignment);
                Aligned = new IntPtr((_raw.ToInt64() + Alignment - 1) / Alignment * Alignment);
            }

            public IntPtr Aligned { get; }

            public void Free() => Marshal.FreeHGlobal(_raw);
        }
    }
}
