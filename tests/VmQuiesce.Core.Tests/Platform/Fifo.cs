using System;
using System.Threading.Tasks;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>
    /// FIFOs where VmQuiesce expects a regular file (Linux): made with mkfifo, the code under test run with a bound so that
    /// an open waiting for a writer fails the test instead of hanging the suite, and that waiting reader released after.
    /// </summary>
    internal static class Fifo
    {
        /// <summary>Far longer than any of these reads takes; an open waiting on a FIFO never ends.</summary>
        public static readonly TimeSpan Hang = TimeSpan.FromSeconds(20);

        public static void Make(string path) => HostCommand.RunChecked("mkfifo", new[] { path });

        /// <summary>
        /// What <paramref name="work"/> returns (or throws), within <see cref="Hang"/>; then readers waiting on
        /// <paramref name="fifo"/> are released (a link to a device there is opened and closed, which does no harm).
        /// </summary>
        public static T Within<T>(string fifo, Func<T> work)
        {
            Task<T> run = Task.Run(work);
            try
            {
                Assert.True(((IAsyncResult)run).AsyncWaitHandle.WaitOne(Hang), $"Still waiting on the FIFO '{fifo}' after {Hang.TotalSeconds} s.");
                return run.GetAwaiter().GetResult();
            }
            finally
            {
                Release(fifo);
            }
        }

        /// <summary>Opens the FIFO for writing without waiting, which lets a reader left blocked in open() go on.</summary>
        public static void Release(string fifo)
        {
            int fd = UnixFiles.OpenAt(Libc.AtFdCwd, fifo, Libc.OpenWriteOnly | Libc.OpenNonBlocking, 0);
            if (fd >= 0)
            {
                Libc.close(fd);
            }
        }
    }
}
