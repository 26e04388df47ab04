using System;
using System.IO;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>A short-named temporary folder (unix socket paths are limited to 107 bytes).</summary>
    public sealed class TempFolder : IDisposable
    {
        public TempFolder()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vmq-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // A socket still being closed: the OS cleans /tmp.
            }
        }
    }
}
