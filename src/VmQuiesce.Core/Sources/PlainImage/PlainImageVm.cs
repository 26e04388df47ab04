using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VmQuiesce.Core.Sources.PlainImage
{
    /// <summary>A VM that is a set of plain image files nothing writes while they are copied: a stopped VM's disks, or any image.</summary>
    public sealed class PlainImageVm : BackupVm
    {
        /// <param name="paths">The image files; each is stored under its file name and restored to its full path.</param>
        public PlainImageVm(string name, string[] paths)
            : base(name, paths.Length > 0 ? Path.GetDirectoryName(Path.GetFullPath(paths[0])) ?? string.Empty : string.Empty)
        {
            Paths = paths.Select(path => Path.GetFullPath(path)).ToList();
        }

        public override string Kind => PlainImageSource.SourceKind;

        public IReadOnlyList<string> Paths { get; }

        protected override IBackupSource CreateSource(IOperationHost host) => new PlainImageSource(Name, Paths, host);

        protected override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string> { ["Files"] = string.Join(", ", Paths) };
    }
}
