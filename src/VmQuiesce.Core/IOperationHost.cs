using System;

namespace VmQuiesce.Core
{
    /// <summary>
    /// The one way an operation of the core talks to whoever runs it: warnings, verbose lines, progress, and
    /// ShouldProcess questions before a change. Failures are exceptions, never messages. Called from any thread,
    /// several at once: a cmdlet's host hands each call to its pipeline thread, which alone writes to the pipeline.
    /// </summary>
    public interface IOperationHost
    {
        /// <summary>Something the user must see: a lower consistency accepted, a leftover that could not be released.</summary>
        void WriteWarning(string message);

        /// <summary>A step, for -Verbose.</summary>
        void WriteVerbose(string message);

        void WriteProgress(TransferProgress progress);

        /// <summary>
        /// Whether to go ahead with <paramref name="action"/> on <paramref name="target"/> (-WhatIf, -Confirm);
        /// blocks until answered. Called right before each change, after the read-only checks.
        /// </summary>
        bool ShouldProcess(string target, string action);
    }

    /// <summary>An <see cref="IOperationHost"/> made of optional delegates: for scripts, tests, and callers that listen to little.</summary>
    public sealed class OperationHost : IOperationHost
    {
        private readonly Action<string>? _warn;
        private readonly Action<string>? _verbose;
        private readonly Action<TransferProgress>? _progress;
        private readonly Func<string, string, bool>? _shouldProcess;

        /// <param name="shouldProcess">Answers ShouldProcess; without it every action goes ahead, as with -Confirm:$false.</param>
        public OperationHost(Action<string>? warn = null, Action<string>? verbose = null, Action<TransferProgress>? progress = null, Func<string, string, bool>? shouldProcess = null)
        {
            _warn = warn;
            _verbose = verbose;
            _progress = progress;
            _shouldProcess = shouldProcess;
        }

        /// <summary>Listens to nothing and lets every action go ahead.</summary>
        public static IOperationHost None { get; } = new OperationHost();

        public void WriteWarning(string message) => _warn?.Invoke(message);

        public void WriteVerbose(string message) => _verbose?.Invoke(message);

        public void WriteProgress(TransferProgress progress) => _progress?.Invoke(progress);

        public bool ShouldProcess(string target, string action) => _shouldProcess?.Invoke(target, action) ?? true;
    }
}
