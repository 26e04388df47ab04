using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;
using VmQuiesce.Core;
using VmQuiesce.Core.Config;

namespace VmQuiesce.Commands
{
    /// <summary>Binding helpers the four *-VssWriterConfig cmdlets share: -Path to a file, -Setting to names and values.</summary>
    internal static class VssWriterConfigParameters
    {
        /// <summary>The vmvsswriter.cfg that <paramref name="path"/> (a folder or file, relative to the current location) names.</summary>
        public static string ResolveFile(PSCmdlet cmdlet, string? path)
        {
            if (path == null)
            {
                return VssWriterConfigLocation.FindDefault();
            }

            string fullPath = VmQuiesceCmdlet.FileSystemPath(cmdlet, path, "Path", "InvalidConfigPath");
            return VssWriterConfigLocation.Resolve(fullPath);
        }

        /// <summary>
        /// -Setting as name/value pairs: $null means "remove the setting", $true/$false become TRUE/FALSE
        /// (how VMware writes booleans), numbers use the invariant culture. Sorted by name, because a
        /// hashtable has no order and the same command should write the same file everywhere.
        /// </summary>
        public static List<KeyValuePair<string, string?>> Settings(Hashtable? setting)
        {
            var pairs = new List<KeyValuePair<string, string?>>();
            if (setting == null)
            {
                return pairs;
            }

            foreach (DictionaryEntry entry in setting)
            {
                string name = Text(entry.Key) ?? string.Empty;
                pairs.Add(new KeyValuePair<string, string?>(name, Text(entry.Value, name)));
            }

            pairs.Sort((a, b) => StringComparer.OrdinalIgnoreCase.Compare(a.Key, b.Key));
            return pairs;
        }

        private static string? Text(object? value, string? settingName = null)
        {
            object? bare = value is PSObject wrapped ? wrapped.BaseObject : value;
            return bare switch
            {
                null => null,
                IEnumerable when !(bare is string) => throw new VmQuiesceException("InvalidSettingValue", FailureKind.InvalidArgument,
                    $"The value of setting '{settingName}' is a list ({bare.GetType().Name}). Expected a single value: a string, number or boolean.", settingName),
                bool b => b ? "TRUE" : "FALSE",
                IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
                _ => bare.ToString(),
            };
        }
    }
}
