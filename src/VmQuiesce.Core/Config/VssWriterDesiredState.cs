using System;
using System.Collections.Generic;
using System.Linq;

namespace VmQuiesce.Core.Config
{
    /// <summary>
    /// What Set- and Test-VssWriterConfig ask for. Everything is validated when it is built, so a bad
    /// name or value fails before any file is touched. OverwriteSnapshots compares by meaning (a
    /// missing setting is FALSE); other settings compare exactly, and a null value means "absent".
    /// </summary>
    public sealed class VssWriterDesiredState
    {
        private readonly List<KeyValuePair<string, string?>> _settings;

        public VssWriterDesiredState(bool? overwriteSnapshots, IEnumerable<KeyValuePair<string, string?>>? settings)
        {
            _settings = (settings ?? Enumerable.Empty<KeyValuePair<string, string?>>()).ToList();
            OverwriteSnapshots = overwriteSnapshots;
            if (overwriteSnapshots == null && _settings.Count == 0)
            {
                throw new VmQuiesceException("NothingToConfigure", FailureKind.InvalidArgument,
                    "Nothing to configure: expected -OverwriteSnapshots, -Setting or both.", null);
            }

            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (KeyValuePair<string, string?> setting in _settings)
            {
                VmwareConfigSyntax.ValidateName(setting.Key, setting.Key);
                if (setting.Value != null)
                {
                    VmwareConfigSyntax.ValidateValue(setting.Key, setting.Value, setting.Key);
                }

                if (!names.Add(setting.Key))
                {
                    throw new VmQuiesceException("DuplicateSetting", FailureKind.InvalidArgument,
                        $"The setting '{setting.Key}' is given more than once (names are case-insensitive). Expected each name once.", setting.Key);
                }

                if (overwriteSnapshots != null && string.Equals(setting.Key, VssWriterConfig.OverwriteSnapshotsName, StringComparison.OrdinalIgnoreCase))
                {
                    throw new VmQuiesceException("ConflictingSetting", FailureKind.InvalidArgument,
                        $"'{VssWriterConfig.OverwriteSnapshotsName}' is given both by -OverwriteSnapshots and in -Setting. Expected one of them.", setting.Key);
                }
            }
        }

        public bool? OverwriteSnapshots { get; }

        public IReadOnlyList<KeyValuePair<string, string?>> Settings => _settings;

        /// <summary>True when applying this to <paramref name="current"/> (null: no file) turns overwriting snapshots on.</summary>
        public bool TurnsOnOverwriteSnapshots(VmwareConfigDocument? current)
        {
            bool wasOn = VssWriterConfig.IsTrue(current?.GetValue(VssWriterConfig.OverwriteSnapshotsName));
            bool willBeOn = OverwriteSnapshots ?? wasOn;
            foreach (KeyValuePair<string, string?> setting in _settings)
            {
                if (string.Equals(setting.Key, VssWriterConfig.OverwriteSnapshotsName, StringComparison.OrdinalIgnoreCase))
                {
                    willBeOn = VssWriterConfig.IsTrue(setting.Value);
                }
            }

            return willBeOn && !wasOn;
        }

        /// <summary>Every difference between <paramref name="current"/> (null: no file) and this state.</summary>
        public IReadOnlyList<VssWriterConfigDifference> Compare(string path, VmwareConfigDocument? current)
        {
            var differences = new List<VssWriterConfigDifference>();
            if (OverwriteSnapshots is bool desired)
            {
                string? actual = current?.GetValue(VssWriterConfig.OverwriteSnapshotsName);
                if (VssWriterConfig.IsTrue(actual) != desired)
                {
                    differences.Add(new VssWriterConfigDifference(path, VssWriterConfig.OverwriteSnapshotsName, Canonical(desired), actual));
                }
            }

            foreach (KeyValuePair<string, string?> setting in _settings)
            {
                string? actual = current?.GetValue(setting.Key);
                if (!string.Equals(actual, setting.Value, StringComparison.Ordinal))
                {
                    differences.Add(new VssWriterConfigDifference(path, setting.Key, setting.Value, actual));
                }
            }

            return differences;
        }

        /// <summary>Changes <paramref name="document"/> to this state; returns false when it already was.</summary>
        public bool ApplyTo(VmwareConfigDocument document)
        {
            bool changed = false;
            if (OverwriteSnapshots is bool desired &&
                VssWriterConfig.IsTrue(document.GetValue(VssWriterConfig.OverwriteSnapshotsName)) != desired)
            {
                changed |= document.SetValue(VssWriterConfig.OverwriteSnapshotsName, Canonical(desired));
            }

            foreach (KeyValuePair<string, string?> setting in _settings)
            {
                changed |= setting.Value == null ? document.Remove(setting.Key) : document.SetValue(setting.Key, setting.Value);
            }

            return changed;
        }

        private static string Canonical(bool value) => value ? "TRUE" : "FALSE";
    }
}
