using System;
using System.Threading;
using System.Threading.Tasks;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// Work that waits (for a process, a socket, the disk) run on a thread of its own rather than the pool's: the
    /// callers block pool threads too, and a starved pool adds threads only slowly.
    /// </summary>
    internal static class OwnThread
    {
        public static Task<T> Start<T>(Func<T> work) => Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        public static Task Start(Action work) => Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        /// <summary>
        /// <paramref name="count"/> threads, each running <paramref name="work"/>. A loop: LINQ over a range is compiled at
        /// run time, as a backup's copy starts.
        /// </summary>
        public static Task[] StartEach(int count, Action work)
        {
            var started = new Task[count];
            for (int i = 0; i < count; i++)
            {
                started[i] = Start(work);
            }

            return started;
        }

        /// <summary>
        /// Waits until <paramref name="task"/> has ended, whatever its outcome, without throwing its failure (marked
        /// observed): for clean-up, where what went wrong is already being reported.
        /// </summary>
        public static void WaitEnded(Task task)
        {
            ((IAsyncResult)task).AsyncWaitHandle.WaitOne();
            _ = task.Exception;
        }
    }
}
