using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
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
    /// quote the results that need it, and never let a failure of the lookup reach the user's prompt.
    /// </summary>
    public abstract class VmQuiesceCompleter : IArgumentCompleter
    {
        private static readonly char[] NeedsQuotes = { ' ', '\t', '\'', '"', '$', '`', ';', '(', ')', '{', '}', '@', '&', '|', '#', ',', '<', '>' };

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string word = (wordToComplete ?? string.Empty).Trim('\'', '"');
            var pattern = new WildcardPattern(WildcardPattern.Escape(word) + "*", WildcardOptions.IgnoreCase);
            try
            {
                return Candidates(parameterName, word, fakeBoundParameters ?? new Hashtable())
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

        /// <summary>Every value that could complete the parameter (filtering and quoting happen in the base).</summary>
        protected abstract IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters);

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
    }

    /// <summary>Running QEMU VMs on this host: names for -Name, sockets for -QmpSocket and -AgentSocket.</summary>
    public sealed class RunningVmCompleter : VmQuiesceCompleter
    {
        protected override IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            if (!HostPlatform.IsLinux)
            {
                return Enumerable.Empty<string>();
            }

            IReadOnlyList<QemuProcess> running = QemuDiscovery.FindRunning();
            return parameterName switch
            {
                "QmpSocket" => running.Select(vm => vm.QmpSocket),
                "AgentSocket" => running.Select(vm => vm.AgentSocket ?? string.Empty),
                _ => running.Select(vm => vm.Name),
            };
        }
    }

    /// <summary>Restore points in the -Repository already typed: ids for -Id, VM names for -VmName.</summary>
    public sealed class RestorePointCompleter : VmQuiesceCompleter
    {
        /// <summary>Where a folder repository keeps its manifests, points/&lt;id&gt;.json (about_VmQuiesce_Repository).</summary>
        private const string PointsFolderName = "points";

        protected override IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            string? repositoryPath = BoundPath(fakeBoundParameters, "Repository");
            if (repositoryPath == null || !Directory.Exists(repositoryPath))
            {
                return Enumerable.Empty<string>();
            }

            if (parameterName == "VmName")
            {
                return BackupRepository.Open(repositoryPath).ListRestorePoints(_ => { }).Select(point => point.VmName);
            }

            // An id is its manifest's name: a Tab lists one folder instead of reading and opening every manifest, which in
            // a repository of many points or large VMs took seconds to minutes. The base sorts; ids start with their UTC time.
            string points = Path.Combine(repositoryPath, PointsFolderName);
            return !Directory.Exists(points) || (File.GetAttributes(points) & FileAttributes.ReparsePoint) != 0 ? Enumerable.Empty<string>()
                : Directory.EnumerateFiles(points, "*.json").Select(Path.GetFileNameWithoutExtension).OfType<string>().Where(BackupRepository.IsValidId).ToList();
        }
    }

    /// <summary>Internal snapshot names of the disk images given with -Path.</summary>
    public sealed class SnapshotNameCompleter : VmQuiesceCompleter
    {
        protected override IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            string? image = BoundPath(fakeBoundParameters, "Path");
            if (image == null || !File.Exists(image))
            {
                return Enumerable.Empty<string>();
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            return VmSnapshotCatalog.ForImage(image, timeout.Token).Select(snapshot => snapshot.Name);
        }
    }

    /// <summary>Service names: Windows services (Get-Service), or systemd units in -UnitDirectory or the standard unit folders.</summary>
    public sealed class ServiceNameCompleter : VmQuiesceCompleter
    {
        private static readonly string[] SystemdUnitFolders = { "/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system" };

        protected override IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            if (HostPlatform.IsWindows)
            {
                using var powerShell = PowerShell.Create(RunspaceMode.CurrentRunspace);
                powerShell.AddCommand("Microsoft.PowerShell.Management\\Get-Service").AddParameter("ErrorAction", ActionPreference.Ignore);
                return powerShell.Invoke().Select(service => service.Properties["Name"]?.Value as string ?? string.Empty).ToList();
            }

            string? unitDirectory = BoundPath(fakeBoundParameters, "UnitDirectory");
            IEnumerable<string> folders = unitDirectory != null ? new[] { unitDirectory } : SystemdUnitFolders;
            return folders.Where(Directory.Exists)
                .SelectMany(folder => Directory.EnumerateFiles(folder, "*.service"))
                .Select(Path.GetFileName)
                .OfType<string>()
                .Where(name => !name.Contains("@"))
                .ToList();
        }
    }

    /// <summary>Folders for -Repository: a repository is a folder, so files are not offered.</summary>
    public sealed class RepositoryPathCompleter : VmQuiesceCompleter
    {
        protected override CompletionResultType ResultType => CompletionResultType.ProviderContainer;

        protected override IEnumerable<string> Candidates(string parameterName, string word, IDictionary fakeBoundParameters)
        {
            // Keep what the user typed as the prefix (relative stays relative); list the folder it points into.
            int split = word.LastIndexOfAny(new[] { '/', '\\' });
            string typedParent = split >= 0 ? word.Substring(0, split + 1) : string.Empty;
            string parent = ResolvePath(typedParent.Length == 0 ? "." : typedParent);
            if (!Directory.Exists(parent))
            {
                return Enumerable.Empty<string>();
            }

            return Directory.EnumerateDirectories(parent).Select(folder => typedParent + Path.GetFileName(folder)).ToList();
        }
    }
}
