using System;
using System.IO;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// The state records of mounts and instant restores: JSON files in a folder only their owner enters, each written
    /// whole (temp file, then rename) so a process killed mid-write leaves the previous record, read back only when
    /// this user owns it and it carries the expected schema.
    /// </summary>
    internal static class RecordFile
    {
        public static void Save(string folder, string id, JsonObject json)
        {
            if (!Directory.Exists(folder))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
                if (Libc.mkdir(folder, Convert.ToUInt32("700", 8)) != 0 && !Directory.Exists(folder))
                {
                    throw new IOException($"Cannot create the folder '{folder}' for state records.");
                }
            }

            string file = PathOf(folder, id);
            string temp = file + ".tmp";
            File.WriteAllText(temp, JsonText.Serialize(json, indented: true));
            if (File.Exists(file))
            {
                File.Replace(temp, file, null);
            }
            else
            {
                File.Move(temp, file);
            }
        }

        public static string PathOf(string folder, string id) => Path.Combine(folder, id + ".json");

        /// <summary>The record in <paramref name="file"/> when this user owns it and its schema is <paramref name="schema"/>; else null.</summary>
        public static JsonObject? TryRead(string file, string schema)
        {
            try
            {
                if (UnixFiles.Stat(file).Uid != Libc.geteuid())
                {
                    return null;
                }

                JsonObject json = JsonText.ParseObject(File.ReadAllText(file));
                return json.GetOptionalString("schema") == schema ? json : null;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is JsonFormatException)
            {
                return null;
            }
        }
    }
}
