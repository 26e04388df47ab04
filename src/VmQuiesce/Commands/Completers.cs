using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Runtime.ExceptionServices;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Restore;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// What every VmQuiesce completer shares: match candidates against what was typed (a prefix, as a wildcard),
    /// quote the results that need it, never let a failure of the lookup reach the user's prompt, and never let
    /// the lookup hang it: Ctrl+C does not reach a completer, and a repository on an unreachable share or a stuck
    /// process would otherwise hold the prompt for good.
    /// </summary>
    public abstract class VmQuiesceCompleter : IArgumentCompleter
    {
        /// <summary>How long a Tab waits for a lookup: what was found by then is offered, as PowerShell's own completers of remote things do.</summary>
        public static readonly TimeSpan LookupBound = TimeSpan.FromSeconds(2);

        private static readonly char[] NeedsQuotes = { ' ', '\t', '\'', '"', '$', '`', ';', '(', ')', '{', '}', '@', '&', '|', '#', ',', '<', '>' };

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string word = (wordToComplete ?? string.Empty).Trim('\'', '"');
            var pattern = new WildcardPattern(WildcardPattern.Escape(word) + "*", WildcardOptions.IgnoreCase);
            try
            {
                return BoundedLookup.Run(Lookup(parameterName, word, fakeBoundParameters ?? new Hashtable()), LookupBound)
                    .Where(candidate => !string.IsNullOrEmpty(candidate) && pattern.IsMatch(candidate))
                    .Distinct(StringComparer.Ordinal)
                    .OrderBy(candidate => candidate, StringComparer.OrdinalIgnoreCase)
                    .Select(candidate => new CompletionResult(Quote(candidate), candidate, ResultType, candidate))
                    .ToList();
            }
            catch (Exception e) when (e is VmQuiesceException || e is IOException || e is UnauthorizedAccessException || e is InvalidOperationException)
            {
                return Enumerable.Empty<CompletionResult>();
            }
        }

        protected virtual CompletionResultType ResultType => CompletionResultType.ParameterValue;

        /// <summary>
        /// How to find every value that could complete the parameter (filtering and quoting happen in the base). This
        /// runs on the prompt's thread and may ask PowerShell (paths typed on the line); the lookup it returns does the
        /// I/O, on a thread of its own within <see cref="LookupBound"/>, and is read one value at a time: it should be
        /// lazy, so that what it found by then is offered and it reads no further once cancelled.
        /// </summary>
        protected abstract Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters);

        internal static string Quote(string value) =>
            value.IndexOfAny(NeedsQuotes) >= 0 ? "'" + CodeGeneration.EscapeSingleQuotedStringContent(value) + "'" : value;

        /// <summary>A path typed earlier on the command line (relative to the current location, PSDrives allowed).</summary>
        protected static string? BoundPath(IDictionary fakeBoundParameters, string parameterName)
        {
            object? value = fakeBoundParameters.Contains(parameterName) ? fakeBoundParameters[parameterName] : null;
            if (value is object[] array)
            {
                value = array.FirstOrDefault();
            }

            string? path = value is PSObject wrapped ? wrapped.BaseObject as string : value as string;
            return string.IsNullOrEmpty(path) ? null : ResolvePath(path!);
        }

        /// <summary>Resolves against PowerShell's current location, which is not the process's working directory.</summary>
        protected static string ResolvePath(string path)
        {
            using var powerShell = PowerShell.Create(RunspaceMode.CurrentRunspace);
            powerShell.AddScript("param($path) $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($path)").AddArgument(path);
            return powerShell.Invoke<string>().FirstOrDefault() ?? Path.GetFullPath(path);
        }

        /// <summary>
        /// A lookup read on a background thread of its own, one value at a time: the prompt takes what it found within the
        /// bound, and from then on the lookup is cancelled and read no further. A read that blocks (an open on a share that
        /// does not answer) cannot be interrupted; that one read is all that outlives the Tab, and a background thread keeps
        /// no process from ending.
        /// </summary>
        private sealed class BoundedLookup
        {
            private readonly List<string> _found = new List<string>();
            private readonly CancellationTokenSource _cancel = new CancellationTokenSource();
            private bool _ended;
            private bool _abandoned;
            private ExceptionDispatchInfo? _failure;

            public static List<string> Run(Func<CancellationToken, IEnumerable<string>> lookup, TimeSpan bound)
            {
                var run = new BoundedLookup();
                new Thread(() => run.Read(lookup)) { IsBackground = true, Name = "VmQuiesce completion" }.Start();
                return run.Take(bound);
            }

            private void Read(Func<CancellationToken, IEnumerable<string>> lookup)
            {
                try
                {
                    foreach (string candidate in lookup(_cancel.Token))
                    {
                        lock (_found)
                        {
                            if (_abandoned)
                            {
                                return;
                            }

                            _found.Add(candidate);
                        }
                    }
                }
                catch (Exception e)
                {
                    lock (_found)
                    {
                        _failure = ExceptionDispatchInfo.Capture(e);
                    }
                }
                finally
                {
                    lock (_found)
                    {
                        _ended = true;
                        Monitor.PulseAll(_found);
                    }
                }
            }

            private List<string> Take(TimeSpan bound)
            {
                var waited = Stopwatch.StartNew();
                lock (_found)
                {
                    for (TimeSpan left = bound; !_ended && left > TimeSpan.Zero; left = bound - waited.Elapsed)
                    {
                        Monitor.Wait(_found, left);
                    }

                    if (_ended)
                    {
                        _failure?.Throw();
                        return _found;
                    }

                    // Stops a tool the lookup runs, and the reading of further values.
                    _abandoned = true;
                    _cancel.Cancel();
                    return new List<string>(_found);
                }
            }
        }
    }

    /// <summary>Running QEMU VMs on this host: names for -Name, sockets for -QmpSocket and -AgentSocket.</summary>
    public sealed class RunningVmCompleter : VmQuiesceCompleter
    {
        protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters) => cancel =>
        {
            if (!HostPlatform.IsLinux)
            {
                return Enumerable.Empty<string>();
            }

            IReadOnlyList<QemuProcess> running = QemuDiscovery.FindRunning(QemuProcessTrust.FromEnvironment(), null, cancel);
            return parameterName switch
            {
                "QmpSocket" => running.Select(vm => vm.QmpSocket),
                "AgentSocket" => running.Select(vm => vm.AgentSocket ?? string.Empty),
                _ => running.Select(vm => vm.Name),
            };
        };
    }

    /// <summary>Restore points in the -Repository already typed: ids for -Id, VM names for -VmName.</summary>
    public sealed class RestorePointCompleter : VmQuiesceCompleter
    {
        /// <summary>Where a folder repository keeps its manifests, points/&lt;id&gt;.json (about_VmQuiesce_Repository).</summary>
        private const string PointsFolderName = "points";

        protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            string? repositoryPath = BoundPath(fakeBoundParameters, "Repository");
            return cancel => repositoryPath == null ? Enumerable.Empty<string>() : Candidates(repositoryPath, parameterName, cancel);
        }

        private static IEnumerable<string> Candidates(string repositoryPath, string parameterName, CancellationToken cancel)
        {
            if (!Directory.Exists(repositoryPath))
            {
                return Enumerable.Empty<string>();
            }

            if (parameterName == "VmName")
            {
                // One manifest at a time: what was read within the bound is offered, and reading stops there.
                return BackupRepository.Open(repositoryPath).ReadRestorePoints(cancel).Select(point => point.VmName);
            }

            // An id is its manifest's name: a Tab lists one folder instead of reading and opening every manifest, which in
            // a repository of many points or large VMs took seconds to minutes. The base sorts; ids start with their UTC time.
            string points = Path.Combine(repositoryPath, PointsFolderName);
            return !Directory.Exists(points) || Links.IsLink(points) ? Enumerable.Empty<string>()
                : Directory.EnumerateFiles(points, "*.json").Select(Path.GetFileNameWithoutExtension).OfType<string>().Where(BackupRepository.IsValidId);
        }
    }

    /// <summary>Internal snapshot names of the disk images given with -Path.</summary>
    public sealed class SnapshotNameCompleter : VmQuiesceCompleter
    {
        protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            string? image = BoundPath(fakeBoundParameters, "Path");
            return cancel => image == null || !File.Exists(image) ? Enumerable.Empty<string>() : VmSnapshotCatalog.ForImage(image, cancel).Select(snapshot => snapshot.Name);
        }
    }

    /// <summary>Service names: Windows services (Get-Service), or systemd units in -UnitDirectory or the standard unit folders.</summary>
    public sealed class ServiceNameCompleter : VmQuiesceCompleter
    {
        private static readonly string[] SystemdUnitFolders = { "/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system" };

        protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            if (HostPlatform.IsWindows)
            {
                // Get-Service runs in this runspace, so on the prompt's thread; it asks the local service manager only.
                using var powerShell = PowerShell.Create(RunspaceMode.CurrentRunspace);
                powerShell.AddCommand("Microsoft.PowerShell.Management\\Get-Service").AddParameter("ErrorAction", ActionPreference.Ignore);
                List<string> services = powerShell.Invoke().Select(service => service.Properties["Name"]?.Value as string ?? string.Empty).ToList();
                return _ => services;
            }

            string? unitDirectory = BoundPath(fakeBoundParameters, "UnitDirectory");
            IEnumerable<string> folders = unitDirectory != null ? new[] { unitDirectory } : SystemdUnitFolders;
            return _ => folders.Where(Directory.Exists)
                .SelectMany(folder => Directory.EnumerateFiles(folder, "*.service"))
                .Select(Path.GetFileName)
                .OfType<string>()
                .Where(name => !name.Contains("@"));
        }
    }

    /// <summary>Folders for -Repository: a repository is a folder, so files are not offered.</summary>
    public sealed class RepositoryPathCompleter : VmQuiesceCompleter
    {
        protected override CompletionResultType ResultType => CompletionResultType.ProviderContainer;

        protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            // Keep what the user typed as the prefix (relative stays relative); list the folder it points into.
            int split = word.LastIndexOfAny(new[] { '/', '\\' });
            string typedParent = split >= 0 ? word.Substring(0, split + 1) : string.Empty;
            string parent = ResolvePath(typedParent.Length == 0 ? "." : typedParent);
            return _ => !Directory.Exists(parent) ? Enumerable.Empty<string>()
                : Directory.EnumerateDirectories(parent).Select(folder => typedParent + Path.GetFileName(folder));
        }
    }
}
