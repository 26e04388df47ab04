using System;
using System.IO;

namespace VmQuiesce.Core.Tests.Config
{
    /// <summary>A fresh folder per test, removed afterwards (read-only attributes included).</summary>
    internal sealed class TempFolder : IDisposable
    {
        public TempFolder()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vmquiesce-config-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public string[] Names() => Array.ConvertAll(Directory.GetFiles(Path), f => System.IO.Path.GetFileName(f)!);

        public void Dispose()
        {
            foreach (string file in Directory.GetFiles(Path))
            {
                System.IO.File.SetAttributes(file, FileAttributes.Normal);
            }

            Directory.Delete(Path, true);
        }
    }
}
