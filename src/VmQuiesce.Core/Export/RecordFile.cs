using System;
using System.IO;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Logon;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// The state records of mounts and instant restores: JSON files in a folder only their owner enters, each written
    /// whole (temp file, then rename) so a process killed mid-write leaves the previous record, read back only when
    /// this user owns it and it carries the expected schema. Written and read as the host's checkpoint records are
    /// (<see cref="StateFiles"/>).
    /// </summary>
    internal static class RecordFile
    {
        public static void Save(string folder, string id, JsonObject json) =>
            StateFiles.WriteProtected(folder, PathOf(folder, id), JsonText.Serialize(json, indented: true),
                $"Run as root, or as a user who may write '{folder}' (another user's records live in its $XDG_RUNTIME_DIR).");

        public static string PathOf(string folder, string id) => Path.Combine(folder, id + ".json");

        /// <summary>
        /// The record in <paramref name="file"/> when it is a regular file of bounded size that this user owns and its
        /// schema is <paramref name="schema"/>; else null (a link, FIFO, huge or someone else's file is never read).
        /// </summary>
        public static JsonObject? TryRead(string file, string schema)
        {
            try
            {
                JsonObject json = JsonText.ParseObject(StateFiles.ReadOwn(file));
                return json.GetOptionalString("schema") == schema ? json : null;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is JsonFormatException)
            {
                return null;
            }
        }
    }
}
