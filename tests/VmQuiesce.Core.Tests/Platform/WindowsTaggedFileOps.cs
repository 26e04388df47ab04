using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Tests.Platform
{
    /// <summary>A repository's file operations as on Windows: reparse tags read through the given handle layer (on any OS, in memory).</summary>
    internal sealed class WindowsTaggedFileOps : RepositoryFileOps
    {
        private readonly IFolderHandles _tags;

        public WindowsTaggedFileOps(IFolderHandles tags) => _tags = tags;

        public override IFolderHandles? ReparseTags => _tags;
    }
}
